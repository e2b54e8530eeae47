//! Random fills: element `i` is `rng::sample(dist, key, i)`, whatever the chunking.
use super::{par_chunks, CHUNK};
use protocell_core::rng::{sample, Dist, RngKey};

pub(crate) fn fill(dist: Dist, key: RngKey, n: usize) -> Vec<f32> {
    let mut out = crate::storage::alloc(n);
    par_chunks(&mut out, CHUNK, |start, c| {
        for (i, v) in c.iter_mut().enumerate() {
            *v = sample(dist, &key, (start + i) as u64);
        }
    });
    out
}
