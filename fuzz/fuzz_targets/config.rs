#![no_main]
//! Fuzz target: `klosetfs::fuzzing::config` (arbitrary bytes as stored config bytes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::config(data);
});
