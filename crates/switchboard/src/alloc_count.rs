//! A counting allocator for profiling builds only (`cargo build --features count-alloc`;
//! `scripts/profile.sh` uses it). It wraps the system allocator and counts every allocation
//! (and reallocation) and the bytes asked for, so that a benchmark can report allocations
//! per relayed message and per join. `/metrics` shows the two counts as
//! `switchboard_alloc_calls_total` and `switchboard_alloc_bytes_total` in such a build; a
//! normal build has neither the wrapper nor the metrics.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counted. Install with `#[global_allocator]`.
#[derive(Debug)]
pub struct Counting;

impl Counting {
    fn count(size: usize) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract; the
// counters are plain atomics and never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: the caller's `layout` contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) since the process started.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Bytes asked for by those allocations.
pub fn bytes() -> u64 {
    BYTES.load(Ordering::Relaxed)
}
