#![no_main]
//! Fuzz target: `klosetfs::fuzzing::pack_header` (arbitrary bytes as stored pack_header bytes).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::pack_header(data);
});
