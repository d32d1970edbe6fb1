#![no_main]
//! Fuzz target: `klosetfs::fuzzing::keyfile` (arbitrary bytes as stored keyfile bytes).
use klosetfs_fuzz as _; // the capped allocator
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    klosetfs::fuzzing::keyfile(data);
});
