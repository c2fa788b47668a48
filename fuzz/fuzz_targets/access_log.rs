//! Fuzz target: `narward_formats::fuzzing::access_log` (S3 server access log lines).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    narward_formats::fuzzing::access_log(data);
});
