//! Tensor buffers: live-memory accounting (for the flat-memory tests and the tensor
//! high-water mark of `protocell train --json`) and a size-keyed pool of freed buffers.
//!
//! A training step allocates the same buffer sizes every step; recycling them avoids a
//! `memset` and, for large buffers, the page faults of a fresh `mmap` on every op. Buffers
//! are allocated with a capacity rounded up to a size class (powers of two split in four,
//! so at most 25 % slack), which lets tensors of nearby sizes (a growing generation
//! context, say) share buffers. The pool holds at most [`POOL_CAP_BYTES`]; buffers below
//! [`POOL_MIN_LEN`] elements go straight back to the allocator.
use protocell_core::backend::MemoryStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static LIVE_TENSORS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static POOLED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Largest total size of pooled (free) buffers.
pub const POOL_CAP_BYTES: usize = 256 << 20;
/// Smallest buffer (in elements) worth pooling.
pub const POOL_MIN_LEN: usize = 1024;

static POOL: Mutex<Option<HashMap<usize, Vec<Vec<f32>>>>> = Mutex::new(None);

/// Capacity class of a buffer of `n` elements: `2^k · {1, 1.25, 1.5, 1.75}`, the smallest ≥ `n`.
fn size_class(n: usize) -> usize {
    if n <= 4 {
        return n;
    }
    let top = usize::BITS - 1 - n.leading_zeros(); // 2^top ≤ n < 2^(top+1)
    let quarter = 1usize << (top - 2);
    n.div_ceil(quarter) * quarter
}

fn recycle(v: Vec<f32>) {
    let cap = v.capacity();
    if v.len() < POOL_MIN_LEN || cap != size_class(cap) {
        return;
    }
    let bytes = cap * 4;
    if POOLED_BYTES.load(Ordering::Relaxed) + bytes > POOL_CAP_BYTES {
        return;
    }
    if let Ok(mut g) = POOL.lock() {
        g.get_or_insert_with(HashMap::new).entry(cap).or_default().push(v);
        POOLED_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A buffer of `n` elements with unspecified (but initialised) contents: for kernels that
/// overwrite every element.
pub(crate) fn alloc(n: usize) -> Vec<f32> {
    if n < POOL_MIN_LEN {
        return vec![0.0; n];
    }
    let class = size_class(n);
    let pooled = POOL.lock().ok().and_then(|mut g| g.as_mut().and_then(|m| m.get_mut(&class)).and_then(Vec::pop));
    let mut v = match pooled {
        Some(v) => {
            POOLED_BYTES.fetch_sub(class * 4, Ordering::Relaxed);
            v
        }
        None => Vec::with_capacity(class),
    };
    // a recycled buffer keeps its old (initialised) contents: shrinking writes nothing, and
    // growing initialises only the new tail; the kernels overwrite every element
    if v.len() >= n {
        v.truncate(n);
    } else {
        v.resize(n, 0.0);
    }
    v
}

/// A zero-filled buffer of `n` elements.
pub(crate) fn alloc_zeroed(n: usize) -> Vec<f32> {
    let mut v = alloc(n);
    v.fill(0.0);
    v
}

/// An owned `f32` buffer that counts itself in the live-memory statistics.
pub(crate) struct Buf(Vec<f32>);

impl Buf {
    pub(crate) fn new(v: Vec<f32>) -> Self {
        let bytes = v.len() * 4;
        LIVE_TENSORS.fetch_add(1, Ordering::Relaxed);
        let now = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
        Buf(v)
    }
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.0
    }
    /// Moves the vector out; it leaves the statistics until it is wrapped in a new `Buf`.
    pub(crate) fn into_vec(mut self) -> Vec<f32> {
        let v = std::mem::take(&mut self.0);
        LIVE_BYTES.fetch_sub(v.len() * 4, Ordering::Relaxed);
        v
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        LIVE_TENSORS.fetch_sub(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(self.0.len() * 4, Ordering::Relaxed);
        recycle(std::mem::take(&mut self.0));
    }
}

/// Live tensors, live bytes and peak bytes of all CPU tensors in this process.
pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        live_tensors: LIVE_TENSORS.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
        pooled_bytes: POOLED_BYTES.load(Ordering::Relaxed),
    }
}

/// Resets the peak to the current live bytes.
pub fn reset_peak() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Returns every pooled buffer to the system allocator.
pub fn trim_pool() {
    if let Ok(mut g) = POOL.lock() {
        *g = None;
        POOLED_BYTES.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_bound_slack() {
        for n in [5usize, 7, 8, 9, 1000, 1024, 1025, 4097, 123_457, 1 << 20] {
            let c = size_class(n);
            assert!(c >= n && (c as f64) <= n as f64 * 1.25 + 1.0, "{n} -> {c}");
            assert_eq!(size_class(c), c, "class of a class is itself ({n} -> {c})");
        }
    }
}
