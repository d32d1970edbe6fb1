#![no_main]
//! Fuzz target: `klosetfs::fuzzing::snapshot` (arbitrary bytes as stored snapshot bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::snapshot(data);
});
