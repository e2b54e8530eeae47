//! The seed's 2-D "skin brain" (`epgl_grid.py`, `cellular.md` §4.1): EPGL state on an
//! `n×n` grid coupled to its 8 neighbours, with apoptosis, written with backend tensor ops
//! so that it runs on any backend.
//!
//! State `h: [4, n, n]` (channels E, P, G, L). One synchronous step with stimulus `s: [n, n]`:
//! the neighbour mean `h̄` is a 3×3 stencil with weights 0.1 at the corners, 0.15 at the
//! edges and 0 at the centre (they sum to 1), with replicate padding; then
//!
//! * `E′ = E + 0.3s − 0.4P − 0.2G`
//! * `P′ = P + 0.5s + 0.3(P̄ − P) − 0.2E`
//! * `G′ = G + 0.4E(1 − P) + 0.2(Ḡ − G) − 0.3P`
//! * `L′ = L + 0.4(½Ē + ½Ḡ) + 0.3(L̄ − L) − 0.3P`
//!
//! each clamped to `[0, 1]`; apoptosis: where `E′ < 0.05` and `P′ > θ` every channel of
//! that cell is set to 0.
use crate::backend::{Backend, Binary, Dist};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::Tensor;
use alloc::vec::Vec;

/// Settings of a grid run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridConfig {
    /// Side `n` of the grid.
    pub size: usize,
    /// Apoptosis pressure threshold θ (the seed's demo uses 0.85).
    pub theta: f32,
    /// Seed of the stimulus noise.
    pub seed: u64,
}

impl GridConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        if self.size < 8 || self.size > 4096 {
            return Err(Error::Config(alloc::format!("grid size {} must be in 8..=4096", self.size)));
        }
        if !(0.0..=1.0).contains(&self.theta) {
            return Err(Error::Config(alloc::format!("theta {} must be in [0, 1]", self.theta)));
        }
        Ok(())
    }
}

/// An EPGL grid.
#[derive(Debug, Clone)]
pub struct Grid<B: Backend> {
    cfg: GridConfig,
    /// State `[4, n, n]`.
    pub h: Tensor<B>,
    food: Tensor<B>,
    toxin: Tensor<B>,
}

fn region(n: usize, lo: usize, hi: usize) -> Vec<f32> {
    (0..n * n).map(|i| if (lo..hi).contains(&(i / n)) && (lo..hi).contains(&(i % n)) { 1.0 } else { 0.0 }).collect()
}

impl<B: Backend> Grid<B> {
    /// All zero except a 3×3 stem cell in the centre with `E = G = L = 0.8`, `P = 0`.
    pub fn new(cfg: GridConfig, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.size;
        let mut h = alloc::vec![0.0f32; 4 * n * n];
        let c = n / 2;
        for ch in [0usize, 2, 3] {
            for y in c - 1..=c + 1 {
                for x in c - 1..=c + 1 {
                    h[ch * n * n + y * n + x] = 0.8;
                }
            }
        }
        Ok(Self {
            cfg,
            h: Tensor::from_f32(&h, &[4, n, n], dev)?,
            // the seed's regions on a 50-cell grid are rows/cols 5..15 (food) and 35..45 (toxin)
            food: Tensor::from_f32(&region(n, n / 10, 3 * n / 10), &[n, n], dev)?,
            toxin: Tensor::from_f32(&region(n, 7 * n / 10, 9 * n / 10), &[n, n], dev)?,
        })
    }

    /// The demo's stimulus at frame `t`: `0.8·U(0,1)` on the food square during frames with
    /// `t mod 20 < 10`, plus `0.4·U(0,1)` on the toxin square every frame.
    pub fn stimulus(&self, t: u64) -> Result<Tensor<B>> {
        let n = self.cfg.size;
        let dev = self.h.device();
        let noise =
            Tensor::<B>::random(Dist::Uniform { lo: 0.0, hi: 1.0 }, RngKey::new(self.cfg.seed).fold(t), &[n, n], &dev)?;
        let mut s = self.toxin.mul_scalar(0.4)?;
        if t % 20 < 10 {
            s = s.add(&self.food.mul_scalar(0.8)?)?;
        }
        noise.mul(&s)
    }

    /// 3×3 neighbour mean with replicate padding.
    pub fn neighbour_mean(&self) -> Result<Tensor<B>> {
        let n = self.cfg.size;
        let h = &self.h;
        let rows = Tensor::cat(&[h.narrow(1, 0, 1)?, h.clone(), h.narrow(1, n - 1, 1)?], 1)?;
        let p = Tensor::cat(&[rows.narrow(2, 0, 1)?, rows.clone(), rows.narrow(2, n - 1, 1)?], 2)?;
        let mut acc: Option<Tensor<B>> = None;
        for dy in 0..3 {
            for dx in 0..3 {
                let w = match (dy, dx) {
                    (1, 1) => continue,
                    (1, _) | (_, 1) => 0.15,
                    _ => 0.1,
                };
                let t = p.narrow(1, dy, n)?.narrow(2, dx, n)?.mul_scalar(w)?;
                acc = Some(match acc {
                    Some(a) => a.add(&t)?,
                    None => t,
                });
            }
        }
        Ok(acc.expect("eight neighbours"))
    }

    /// One synchronous step with stimulus `s: [n, n]`; returns the number of cells that died.
    pub fn step(&mut self, s: &Tensor<B>) -> Result<usize> {
        let n = self.cfg.size;
        let nb = self.neighbour_mean()?;
        let ch = |x: &Tensor<B>, i: usize| x.narrow(0, i, 1);
        let (e, p, g, l) = (ch(&self.h, 0)?, ch(&self.h, 1)?, ch(&self.h, 2)?, ch(&self.h, 3)?);
        let (ne, np, ng, nl) = (ch(&nb, 0)?, ch(&nb, 1)?, ch(&nb, 2)?, ch(&nb, 3)?);
        let s = s.reshape(&[1, n, n])?;
        let e1 = e.add(&s.mul_scalar(0.3)?)?.sub(&p.mul_scalar(0.4)?)?.sub(&g.mul_scalar(0.2)?)?.clamp(0.0, 1.0)?;
        let p1 = p
            .add(&s.mul_scalar(0.5)?)?
            .add(&np.sub(&p)?.mul_scalar(0.3)?)?
            .sub(&e.mul_scalar(0.2)?)?
            .clamp(0.0, 1.0)?;
        let g1 = g
            .add(&e.mul(&p.affine(-1.0, 1.0)?)?.mul_scalar(0.4)?)?
            .add(&ng.sub(&g)?.mul_scalar(0.2)?)?
            .sub(&p.mul_scalar(0.3)?)?
            .clamp(0.0, 1.0)?;
        let l1 = l
            .add(&ne.add(&ng)?.mul_scalar(0.2)?)?
            .add(&nl.sub(&l)?.mul_scalar(0.3)?)?
            .sub(&p.mul_scalar(0.3)?)?
            .clamp(0.0, 1.0)?;
        // apoptosis: E′ < 0.05 and P′ > θ
        let dev = self.h.device();
        let low_e = Tensor::<B>::scalar(0.05, &dev)?.binary(Binary::Gt, &e1)?;
        let high_p = p1.binary(Binary::Gt, &Tensor::<B>::scalar(self.cfg.theta, &dev)?)?;
        let dead = low_e.mul(&high_p)?;
        let died = dead.sum_all()?.to_scalar()? as usize;
        let keep = dead.affine(-1.0, 1.0)?;
        self.h = Tensor::cat(&[e1, p1, g1, l1], 0)?.mul(&keep)?;
        Ok(died)
    }

    /// Mean pressure `P` over the food square and over the toxin square.
    pub fn region_pressure(&self) -> Result<[f32; 2]> {
        let n = self.cfg.size;
        let p = self.h.narrow(0, 1, 1)?.reshape(&[n, n])?;
        let mean_in = |mask: &Tensor<B>| -> Result<f32> {
            Ok(p.mul(mask)?.sum_all()?.to_scalar()? / mask.sum_all()?.to_scalar()?.max(1.0))
        };
        Ok([mean_in(&self.food)?, mean_in(&self.toxin)?])
    }

    /// Mean of each channel over the grid.
    pub fn channel_means(&self) -> Result<[f32; 4]> {
        let n = self.cfg.size;
        let m = self.h.reshape(&[4, n * n])?.mean(1)?.to_vec()?;
        Ok([m[0], m[1], m[2], m[3]])
    }
}
