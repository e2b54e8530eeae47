//! Tensor buffers with live-memory accounting (used by the flat-memory tests and by
//! `protocell train --json` to report the tensor high-water mark).
use protocell_core::backend::MemoryStats;
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE_TENSORS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

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
    }
}

/// Live tensors, live bytes and peak bytes of all CPU tensors in this process.
pub fn memory_stats() -> MemoryStats {
    MemoryStats {
        live_tensors: LIVE_TENSORS.load(Ordering::Relaxed),
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
    }
}

/// Resets the peak to the current live bytes.
pub fn reset_peak() {
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
}
