//! Fuzz target: `narward_formats::fuzzing::root_list` (root lists and fallback-paths.nix).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    narward_formats::fuzzing::root_list(data);
});
