//! Random fills: element `i` is `rng::sample(dist, key, i)`, whatever the chunking; each
//! Philox block is computed once and spread over the elements that share it.
use super::{par_chunks, CHUNK};
use protocell_core::rng::{bernoulli_threshold, bernoulli_word, box_muller, u32_to_unit, Dist, RngKey};

/// Blocks computed per batch by [`philox_batch`].
const LANES: usize = 16;

simd! {
    /// Philox4x32-10 of blocks `first..first + 16` of `key`, computed lane-parallel (the same
    /// function as `RngKey::block`, laid out so that the loop vectorises).
    fn philox_batch(key: &RngKey, first: u64, out: &mut [[u32; 4]; LANES]) {
        const M0: u64 = 0xD251_1F53;
        const M1: u64 = 0xCD9E_8D57;
        let (mut c0, mut c1) = ([0u32; LANES], [0u32; LANES]);
        for l in 0..LANES {
            let b = first + l as u64;
            c0[l] = b as u32;
            c1[l] = (b >> 32) as u32;
        }
        let mut c2 = [key.offset as u32; LANES];
        let mut c3 = [(key.offset >> 32) as u32; LANES];
        let (mut k0, mut k1) = (key.seed as u32, (key.seed >> 32) as u32);
        for round in 0..10 {
            if round > 0 {
                k0 = k0.wrapping_add(0x9E37_79B9);
                k1 = k1.wrapping_add(0xBB67_AE85);
            }
            for l in 0..LANES {
                let p0 = M0 * c0[l] as u64;
                let p1 = M1 * c2[l] as u64;
                let n0 = ((p1 >> 32) as u32) ^ c1[l] ^ k0;
                let n2 = ((p0 >> 32) as u32) ^ c3[l] ^ k1;
                c1[l] = p1 as u32;
                c3[l] = p0 as u32;
                c0[l] = n0;
                c2[l] = n2;
            }
        }
        for l in 0..LANES {
            out[l] = [c0[l], c1[l], c2[l], c3[l]];
        }
    }
}

/// The values of one Philox block under `dist`, in element order (`K` of them).
#[inline(always)]
fn expand<const K: usize>(block: &[u32; 4], value: impl Fn(&[u32; 4], usize) -> f32) -> [f32; K] {
    let mut v = [0.0f32; K];
    for (slot, x) in v.iter_mut().enumerate() {
        *x = value(block, slot);
    }
    v
}

/// Writes elements `start..start + out.len()` of a stream with `K` elements per block; whole
/// blocks in the middle are expanded at once, partial blocks at the ends are clipped.
#[inline(always)]
fn fill_blocks<const K: usize>(key: &RngKey, start: u64, out: &mut [f32], value: impl Fn(&[u32; 4], usize) -> f32) {
    let k = K as u64;
    let end = start + out.len() as u64;
    let mut idx = start;
    let mut batch = [[0u32; 4]; LANES];
    let mut batch_first = u64::MAX;
    while idx < end {
        let b = idx / k;
        if !(batch_first..batch_first.saturating_add(LANES as u64)).contains(&b) {
            batch_first = b;
            philox_batch(key, b, &mut batch);
        }
        let vals: [f32; K] = expand(&batch[(b - batch_first) as usize], &value);
        let lo = (idx - b * k) as usize;
        let hi = ((end - b * k) as usize).min(K);
        let at = (idx - start) as usize;
        if lo == 0 && hi == K {
            // a whole block: a fixed-size copy the compiler keeps in registers
            let dst: &mut [f32; K] = (&mut out[at..at + K]).try_into().expect("K elements");
            *dst = vals;
        } else {
            for (o, &v) in out[at..at + hi - lo].iter_mut().zip(&vals[lo..hi]) {
                *o = v;
            }
        }
        idx = (b + 1) * k;
    }
}

/// Fills `out` with elements `start..start + out.len()` of the stream.
pub(crate) fn fill_range(dist: Dist, key: &RngKey, start: u64, out: &mut [f32]) {
    match dist {
        Dist::Uniform { lo, hi } => fill_blocks::<4>(key, start, out, |b, s| lo + (hi - lo) * u32_to_unit(b[s])),
        Dist::Bernoulli { p } => {
            let t = bernoulli_threshold(p);
            fill_blocks::<8>(key, start, out, |b, s| bernoulli_word(b, s as u64, t) as u8 as f32)
        }
        Dist::Normal { mean, std } => {
            fill_blocks::<2>(key, start, out, |b, s| mean + std * box_muller(b[2 * s], b[2 * s + 1]))
        }
    }
}

pub(crate) fn fill(dist: Dist, key: RngKey, n: usize) -> Vec<f32> {
    let mut out = crate::storage::alloc(n);
    par_chunks(&mut out, CHUNK, |start, c| fill_range(dist, &key, start as u64, c));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocell_core::rng::sample;

    #[test]
    fn batched_philox_equals_the_reference() {
        for key in [RngKey { seed: 0, offset: 0 }, RngKey { seed: u64::MAX, offset: 0x1234_5678_9abc }] {
            for first in [0u64, 5, (1 << 32) - 3] {
                let mut out = [[0u32; 4]; LANES];
                philox_batch(&key, first, &mut out);
                for (l, b) in out.iter().enumerate() {
                    assert_eq!(*b, key.block(first + l as u64));
                }
            }
        }
    }

    #[test]
    fn blockwise_fill_equals_the_elementwise_definition() {
        let key = RngKey { seed: 9, offset: 4 };
        for dist in
            [Dist::Uniform { lo: -1.0, hi: 2.0 }, Dist::Bernoulli { p: 0.37 }, Dist::Normal { mean: 0.5, std: 2.0 }]
        {
            for start in [0u64, 1, 3, 7, 13, 1000] {
                let mut out = vec![0.0f32; 301];
                fill_range(dist, &key, start, &mut out);
                for (j, &v) in out.iter().enumerate() {
                    assert_eq!(
                        v.to_bits(),
                        sample(dist, &key, start + j as u64).to_bits(),
                        "{dist:?} at {}",
                        start + j as u64
                    );
                }
            }
        }
    }
}
