//! A free-standing EPGL colony: the cell dynamics without a language model around them, for
//! programs that only want the dynamics (the C ABI's colony handle, simulations, tests).
//!
//! A colony of `N` blocks holds a state `h: [N, 4]` (E, P, G, L per block, each in `[0, 1]`)
//! and a mucus matrix `W: [N, N]` (non-negative, zero diagonal). [`Colony::step`] applies the
//! `K` inner steps of [`super::scalar`] with a per-block drive `s: [N]` held fixed across
//! them, through the backend's fused [`super::CellOps::colony_fwd`]:
//! `(h, W) ← colony_K(h, W, s; c)`, where `c` are the nine effective coefficients
//! `[α_E, α_P, α_G, α_L, β_P, β_G, β_L, ω_g, ω_d]`.
use super::{scalar, CellMode, ColonySpec, N_COEFFS, SEED_COEFFS};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Largest colony accepted (`W` holds `N²` values).
pub const MAX_BLOCKS: usize = 4096;

/// Settings of a colony. As JSON: `{"blocks": 6, "mode": "sound", "inner_steps": 5}`; every
/// field but `blocks` has a default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColonyConfig {
    /// Blocks `N` (1..=4096).
    pub blocks: usize,
    /// Equations.
    #[serde(default)]
    pub mode: CellMode,
    /// Inner steps `K` per [`Colony::step`] call.
    #[serde(default = "default_steps")]
    pub inner_steps: usize,
    /// Step size (sound mode only; 1 in the seed modes).
    #[serde(default = "default_dt")]
    pub dt: f32,
    /// Effective coefficients (the seed's initial values by default). In the sound mode they
    /// must be non-negative: the mode constrains their signs.
    #[serde(default = "default_coeffs")]
    pub coeffs: [f32; N_COEFFS],
    /// Initial value of every state channel (the seed's `h⁰ ≈ σ(0) = 0.5`).
    #[serde(default = "default_init")]
    pub init: f32,
}

fn default_steps() -> usize {
    5
}
fn default_dt() -> f32 {
    1.0
}
fn default_coeffs() -> [f32; N_COEFFS] {
    SEED_COEFFS
}
fn default_init() -> f32 {
    0.5
}

impl ColonyConfig {
    /// A colony of `blocks` blocks with every other setting at its default.
    pub fn new(blocks: usize) -> Self {
        Self {
            blocks,
            mode: CellMode::default(),
            inner_steps: default_steps(),
            dt: default_dt(),
            coeffs: default_coeffs(),
            init: default_init(),
        }
    }

    /// The colony spec (mode constants, `K`, `dt`).
    pub fn spec(&self) -> ColonySpec {
        ColonySpec { dt: self.dt, ..ColonySpec::new(self.mode, self.inner_steps) }
    }

    /// Rejects out-of-range values with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.blocks == 0 || self.blocks > MAX_BLOCKS {
            return Err(Error::Config(format!("colony blocks {} must be in 1..={MAX_BLOCKS}", self.blocks)));
        }
        self.spec().validate()?;
        if let Some((i, c)) = self.coeffs.iter().enumerate().find(|(_, c)| !c.is_finite() || c.abs() > 100.0) {
            return Err(Error::Config(format!("colony coefficient {i} is {c}; it must be finite with |c| ≤ 100")));
        }
        if self.mode == CellMode::Sound {
            if let Some((i, c)) = self.coeffs.iter().enumerate().find(|(_, &c)| c < 0.0) {
                return Err(Error::Config(format!(
                    "colony coefficient {i} is {c}; the sound mode needs non-negative coefficients"
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.init) {
            return Err(Error::Config(format!("colony init {} must be in [0, 1]", self.init)));
        }
        Ok(())
    }
}

/// An EPGL colony on backend `B`.
#[derive(Debug, Clone)]
pub struct Colony<B: Backend> {
    cfg: ColonyConfig,
    spec: ColonySpec,
    /// State `[1, N, 4]`.
    h: Tensor<B>,
    /// Mucus `[1, N, N]`.
    w: Tensor<B>,
    coeffs: Tensor<B>,
    steps_done: u64,
}

impl<B: Backend + super::CellOps<B>> Colony<B> {
    /// A colony with every state channel at `cfg.init` and the mode's initial mucus
    /// (zero as coded, 0.1 off the diagonal otherwise).
    pub fn new(cfg: ColonyConfig, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.blocks;
        let h = alloc::vec![cfg.init; 4 * n];
        let w = scalar::initial_mucus(cfg.mode, n);
        Ok(Self {
            spec: cfg.spec(),
            h: Tensor::from_f32(&h, &[1, n, 4], dev)?,
            w: Tensor::from_f32(&w, &[1, n, n], dev)?,
            coeffs: Tensor::from_f32(&cfg.coeffs, &[N_COEFFS], dev)?,
            cfg,
            steps_done: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ColonyConfig {
        &self.cfg
    }

    /// Blocks `N`.
    pub fn blocks(&self) -> usize {
        self.cfg.blocks
    }

    /// Completed [`Colony::step`] calls.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// `K` inner steps with the per-block drive `s: [N]` (finite values), held fixed
    /// across the `K` steps.
    pub fn step(&mut self, drive: &[f32]) -> Result<()> {
        let n = self.cfg.blocks;
        if drive.len() != n {
            return Err(Error::InvalidArgument(format!("drive has {} values; the colony has {n} blocks", drive.len())));
        }
        if let Some(i) = drive.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("drive value {i} is {}", drive[i])));
        }
        let s = Tensor::from_f32(drive, &[1, n], &self.h.device())?;
        let (h, w, _alive) = super::colony(&self.h, &self.w, &s, &self.coeffs, &self.spec)?;
        self.h = h;
        self.w = w;
        self.steps_done += 1;
        Ok(())
    }

    /// State, row-major `[N, 4]` (E, P, G, L of block 0 first).
    pub fn state(&self) -> Result<Vec<f32>> {
        self.h.to_vec()
    }

    /// Mucus matrix, row-major `[N, N]`.
    pub fn mucus(&self) -> Result<Vec<f32>> {
        self.w.to_vec()
    }

    /// Replaces the state; every value must be in `[0, 1]`.
    pub fn set_state(&mut self, h: &[f32]) -> Result<()> {
        let n = self.cfg.blocks;
        if h.len() != 4 * n {
            return Err(Error::InvalidArgument(format!("state has {} values; expected {} (N × 4)", h.len(), 4 * n)));
        }
        if let Some(i) = h.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::InvalidArgument(format!("state value {i} is {}; states lie in [0, 1]", h[i])));
        }
        self.h = Tensor::from_f32(h, &[1, n, 4], &self.h.device())?;
        Ok(())
    }

    /// Replaces the mucus matrix; it must be finite, non-negative, with a zero diagonal.
    pub fn set_mucus(&mut self, w: &[f32]) -> Result<()> {
        let n = self.cfg.blocks;
        if w.len() != n * n {
            return Err(Error::InvalidArgument(format!("mucus has {} values; expected {} (N × N)", w.len(), n * n)));
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::InvalidArgument(format!("mucus value {i} is {}; it must be finite and ≥ 0", w[i])));
        }
        if let Some(i) = (0..n).find(|&i| w[i * n + i] != 0.0) {
            return Err(Error::InvalidArgument(format!("mucus diagonal entry {i} is {}; it must be 0", w[i * n + i])));
        }
        self.w = Tensor::from_f32(w, &[1, n, n], &self.h.device())?;
        Ok(())
    }
}
