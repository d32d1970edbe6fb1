#![no_main]
//! Fuzz target: `klosetfs::fuzzing::index` (arbitrary bytes as stored index bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::index(data);
});
