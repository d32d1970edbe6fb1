#![no_main]
//! Fuzz target: `klosetfs::fuzzing::tree` (arbitrary bytes as stored tree bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::tree(data);
});
