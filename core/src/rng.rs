//! Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
//!
//! Every random tensor in protocell is a pure function of a [`RngKey`] and the
//! element's flat index, so the CPU, wgpu and CUDA backends produce the same stream
//! and a run can be replayed from its seed and step alone:
//!
//! * block `b` of a key is `philox4x32_10(ctr = [b_lo, b_hi, offset_lo, offset_hi], key = [seed_lo, seed_hi])`;
//! * uniform element `i` uses lane `i % 4` of block `i / 4`;
//! * Bernoulli element `i` uses the 16-bit word `i % 8` of block `i / 8` (lane `(i%8)/2`,
//!   low half first) and is 1 when the word is below `round(p·2¹⁶)` (probability resolution
//!   2⁻¹⁶, eight draws per block: dropout masks are the hot consumer);
//! * normal element `i` uses lanes `2(i%2)` and `2(i%2)+1` of block `i / 2`
//!   (Box–Muller, cosine branch).
use serde::{Deserialize, Serialize};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: maps a 128-bit counter and a 64-bit key to 128 random bits.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Identifies one random stream: a seed plus an offset that separates uses of the same seed
/// (one offset per training step and per call site, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct RngKey {
    /// The user's seed.
    pub seed: u64,
    /// Sub-stream selector.
    pub offset: u64,
}

impl RngKey {
    /// A key for `seed` at offset 0.
    pub const fn new(seed: u64) -> Self {
        Self { seed, offset: 0 }
    }

    /// A derived key for sub-stream `n` (mixes `n` into the offset with a Weyl step so
    /// nearby `n` give unrelated streams).
    pub fn fold(self, n: u64) -> Self {
        let mix = splitmix64(self.offset ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self { seed: self.seed, offset: mix }
    }

    /// 128 random bits of block `block`.
    #[inline]
    pub fn block(&self, block: u64) -> [u32; 4] {
        philox4x32_10(
            [block as u32, (block >> 32) as u32, self.offset as u32, (self.offset >> 32) as u32],
            [self.seed as u32, (self.seed >> 32) as u32],
        )
    }
}

/// SplitMix64 finaliser, used to derive sub-keys.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 32 random bits to a uniform `f32` in `[0, 1)` (24 significant bits).
#[inline]
pub fn u32_to_unit(x: u32) -> f32 {
    (x >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Maps 32 random bits to a uniform `f32` in `(0, 1]` (never zero; safe for `ln`).
#[inline]
pub fn u32_to_unit_open0(x: u32) -> f32 {
    ((x >> 8) + 1) as f32 * (1.0 / 16_777_216.0)
}

/// Distribution of a random tensor fill.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Dist {
    /// Uniform on `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
    /// Gaussian with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// 1.0 with probability `p`, else 0.0.
    Bernoulli {
        /// Probability of a one.
        p: f32,
    },
}

/// Value of element `index` of a tensor filled from `dist` with `key` (the rule every backend mirrors).
#[inline]
pub fn sample(dist: Dist, key: &RngKey, index: u64) -> f32 {
    match dist {
        Dist::Uniform { lo, hi } => {
            let r = key.block(index / 4)[(index % 4) as usize];
            lo + (hi - lo) * u32_to_unit(r)
        }
        Dist::Bernoulli { p } => bernoulli_word(&key.block(index / 8), index, bernoulli_threshold(p)) as u8 as f32,
        Dist::Normal { mean, std } => {
            let b = key.block(index / 2);
            let lane = 2 * (index % 2) as usize;
            mean + std * box_muller(b[lane], b[lane + 1])
        }
    }
}

/// Integer threshold of a Bernoulli(`p`) draw on 16-bit words: `round(p·2¹⁶)`.
#[inline]
pub fn bernoulli_threshold(p: f32) -> u32 {
    libm::roundf(p.clamp(0.0, 1.0) * 65_536.0) as u32
}

/// Bernoulli draw of element `index` from its block (`index / 8`): word `index % 8` < `threshold`.
#[inline]
pub fn bernoulli_word(block: &[u32; 4], index: u64, threshold: u32) -> bool {
    let w = (block[((index % 8) / 2) as usize] >> (16 * (index % 2))) & 0xFFFF;
    w < threshold
}

/// Standard normal from two random words: `sqrt(-2 ln u1) * cos(2π u2)`, `u1 ∈ (0,1]`.
#[inline]
pub fn box_muller(a: u32, b: u32) -> f32 {
    let u1 = u32_to_unit_open0(a);
    let u2 = u32_to_unit(b);
    libm::sqrtf(-2.0 * libm::logf(u1)) * libm::cosf(core::f32::consts::TAU * u2)
}

/// A sequential host-side stream over one key (data sampling, token sampling, init).
#[derive(Debug, Clone)]
pub struct Philox {
    key: RngKey,
    block: u64,
    buf: [u32; 4],
    pos: usize,
}

impl Philox {
    /// Stream positioned at the start of `key`.
    pub fn new(key: RngKey) -> Self {
        Self { key, block: 0, buf: [0; 4], pos: 4 }
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == 4 {
            self.buf = self.key.block(self.block);
            self.block += 1;
            self.pos = 0;
        }
        let r = self.buf[self.pos];
        self.pos += 1;
        r
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        ((self.next_u32() as u64) << 32) | self.next_u32() as u64
    }

    /// Uniform `f32` in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        u32_to_unit(self.next_u32())
    }

    /// Uniform `f64` in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal sample.
    pub fn next_normal(&mut self) -> f32 {
        let a = self.next_u32();
        let b = self.next_u32();
        box_muller(a, b)
    }

    /// Uniform integer in `0..n` (Lemire's nearly-divisionless method, unbiased). `n > 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        loop {
            let x = self.next_u64();
            let m = (x as u128) * (n as u128);
            let lo = m as u64;
            if lo >= n || lo >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of the Random123 reference implementation (kat_vectors).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normal_moments() {
        let key = RngKey::new(7);
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for i in 0..n {
            let x = sample(Dist::Normal { mean: 0.0, std: 1.0 }, &key, i) as f64;
            s += x;
            s2 += x * x;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn below_is_in_range_and_covers() {
        let mut r = Philox::new(RngKey::new(3));
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.below(7) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn fold_separates_streams() {
        let k = RngKey::new(1);
        assert_ne!(k.fold(1).block(0), k.fold(2).block(0));
        assert_eq!(k.fold(5).block(3), k.fold(5).block(3));
    }
}
