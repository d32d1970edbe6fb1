#![no_main]
//! Fuzz target: `klosetfs::fuzzing::blob` (arbitrary bytes as stored blob bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::blob(data);
});
