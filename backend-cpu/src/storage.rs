//! Tensor buffers: live-memory accounting (for the flat-memory tests and the tensor
//! high-water mark of `protocell train --json`) and a size-keyed pool of freed buffers.
//!
//! A training step allocates the same buffer sizes every step; recycling them avoids a
//! `memset` and, for large buffers, the page faults of a fresh `mmap` on every op. The pool
//! holds at most [`POOL_CAP_BYTES`]; buffers below [`POOL_MIN_LEN`] elements go straight
//! back to the allocator.
use protocell_core::backend::MemoryStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static LIVE_TENSORS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static POOLED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Largest total size of pooled (free) buffers.
pub const POOL_CAP_BYTES: usize = 512 << 20;
/// Smallest buffer (in elements) worth pooling.
pub const POOL_MIN_LEN: usize = 1024;

static POOL: Mutex<Option<HashMap<usize, Vec<Vec<f32>>>>> = Mutex::new(None);

fn recycle(v: Vec<f32>) {
    let n = v.len();
    if n < POOL_MIN_LEN || v.capacity() != n {
        return;
    }
    let bytes = n * 4;
    if POOLED_BYTES.load(Ordering::Relaxed) + bytes > POOL_CAP_BYTES {
        return;
    }
    if let Ok(mut g) = POOL.lock() {
        g.get_or_insert_with(HashMap::new).entry(n).or_default().push(v);
        POOLED_BYTES.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A buffer of `n` elements with unspecified (but initialised) contents: for kernels that
/// overwrite every element.
pub(crate) fn alloc(n: usize) -> Vec<f32> {
    if n >= POOL_MIN_LEN {
        if let Ok(mut g) = POOL.lock() {
            if let Some(v) = g.as_mut().and_then(|m| m.get_mut(&n)).and_then(Vec::pop) {
                POOLED_BYTES.fetch_sub(n * 4, Ordering::Relaxed);
                return v;
            }
        }
    }
    vec![0.0; n]
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
