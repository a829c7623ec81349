//! Memory accounting: a global allocator wrapper that counts the bytes the process
//! has allocated, as Redis's zmalloc does. `used_memory` is this counter, so it tracks
//! real heap use of everything (keys, buffers, indexes), not an estimate. Each
//! allocation counts as the size class jemalloc serves it from (a 11-byte key takes
//! 16 bytes), as zmalloc counts malloc_usable_size.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// jemalloc's size class for a request of `n` bytes (x86-64 and aarch64 defaults:
/// 16-byte quantum, four classes per doubling above 128 bytes).
pub const fn size_class(n: usize) -> usize {
    if n <= 8 {
        return 8;
    }
    if n <= 128 {
        return (n + 15) & !15;
    }
    let lg = usize::BITS - 1 - (n - 1).leading_zeros(); // floor(log2(n - 1))
    let spacing = 1usize << (lg - 2);
    (n + spacing - 1) & !(spacing - 1)
}

/// Install with `#[global_allocator] static A: CountingAlloc<Inner> = CountingAlloc(Inner);`
pub struct CountingAlloc<A>(pub A);

unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            ALLOCATED.fetch_add(size_class(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            ALLOCATED.fetch_add(size_class(layout.size()), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        ALLOCATED.fetch_sub(size_class(layout.size()), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            let (old, new) = (size_class(layout.size()), size_class(new_size));
            if new >= old {
                ALLOCATED.fetch_add(new - old, Ordering::Relaxed);
            } else {
                ALLOCATED.fetch_sub(old - new, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Bytes currently allocated through the counting allocator (0 if it is not installed).
pub fn used_memory() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Redis's bytesToHuman: `1.50K`, `2.00M`, ...
pub fn bytes_to_human(n: u64) -> String {
    let n = n as f64;
    const UNITS: [(f64, &str); 5] = [
        (1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0, "P"),
        (1024.0 * 1024.0 * 1024.0 * 1024.0, "T"),
        (1024.0 * 1024.0 * 1024.0, "G"),
        (1024.0 * 1024.0, "M"),
        (1024.0, "K"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            return format!("{:.2}{unit}", n / size);
        }
    }
    format!("{}B", n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_env = "msvc"))]
    #[test]
    fn size_classes_match_jemalloc() {
        use std::alloc::GlobalAlloc;
        let je = tikv_jemallocator::Jemalloc;
        let mut sizes: Vec<usize> = (1..=4096).collect();
        sizes.extend((1..200).map(|i| i * 4093));
        sizes.extend([1 << 20, (1 << 20) + 1, 3 << 21, 10_000_000]);
        for n in sizes {
            let layout = Layout::from_size_align(n, 8).unwrap();
            unsafe {
                let p = je.alloc(layout);
                let usable = tikv_jemallocator::usable_size(p);
                je.dealloc(p, layout);
                assert_eq!(size_class(n), usable, "request of {n} bytes");
            }
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes_to_human(1023), "1023B");
        assert_eq!(bytes_to_human(1536), "1.50K");
        assert_eq!(bytes_to_human(3 * 1024 * 1024), "3.00M");
    }
}
