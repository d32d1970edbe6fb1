#![no_main]
//! Fuzz target: `klosetfs::fuzzing::keyfile` (arbitrary bytes as stored keyfile bytes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::keyfile(data);
});
