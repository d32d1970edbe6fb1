#![no_main]
//! Fuzz target: `klosetfs::fuzzing::pack_header` (arbitrary bytes as stored pack_header bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::pack_header(data);
});
