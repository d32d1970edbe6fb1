//! What every fuzz target links: an allocator that aborts on any single
//! allocation over [`CAP`]. A decoder that sizes a buffer from what the bytes
//! claim instead of what they hold is a crash libFuzzer keeps, the job
//! `-malloc_limit_mb` does under a sanitizer; the targets build without one
//! (`scripts/fuzz.sh`: the crate has no `unsafe`, so AddressSanitizer found
//! nothing the checks of safe Rust do not, and doubled the build).
//!
//! The only `unsafe` of the fuzz crate: `GlobalAlloc` is an unsafe trait.
//! Each method forwards to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest allocation a decoder may make (as `-malloc_limit_mb=512`).
pub const CAP: usize = 512 << 20;

pub struct Capped;

#[cold]
fn too_big(size: usize) -> ! {
    // Formatting a number and writing to the unbuffered stderr allocate
    // nothing; abort is the crash libFuzzer records with its input.
    eprintln!("==fuzz: an allocation of {size} bytes (over {CAP}): the decoder trusted a length");
    std::process::abort()
}

// SAFETY: every method checks the size and then calls `System` with the
// caller's own arguments, so `System`'s guarantees are this allocator's.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            too_big(layout.size());
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > CAP {
            too_big(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > CAP {
            too_big(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;
