#![no_main]
//! Fuzz target: `klosetfs::fuzzing::blob` (arbitrary bytes as stored blob bytes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::blob(data);
});
