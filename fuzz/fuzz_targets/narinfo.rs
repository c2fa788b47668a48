//! Fuzz target: `narward_formats::fuzzing::narinfo` (parse, then round-trip checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    narward_formats::fuzzing::narinfo(data);
});
