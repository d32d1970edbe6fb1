#![no_main]
//! Fuzz target: `klosetfs::fuzzing::journal` (arbitrary bytes as stored journal bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::journal(data);
});
