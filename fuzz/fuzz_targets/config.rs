#![no_main]
//! Fuzz target: `klosetfs::fuzzing::config` (arbitrary bytes as stored config bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::config(data);
});
