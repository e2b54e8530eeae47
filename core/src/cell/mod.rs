//! Cells: the EPGL colony of the CellToken model (seed 000) and its mucus rewiring.
//!
//! A token carries a colony of `N` blocks; block `i` has a state `hᵢ = (E, P, G, L)` —
//! energy, pressure, growth, link — and the colony a non-negative "mucus" matrix `W`
//! (`N×N`, zero diagonal) that routes neighbour signals. One inner step maps
//! `(h, W) → (h′, W′)` synchronously (see [`scalar`] for the exact equations); `K` steps
//! with shared coefficients form one colony update, fused on a backend by [`CellOps`].
//!
//! Three modes (`cellular.md` §6):
//! * [`CellMode::AsCoded`] — the seed code exactly: `W⁰ = 0` and a rewiring distance that is
//!   identically zero (a transpose bug), so the mucus path is inert; hard clamps to `[0, 1]`.
//! * [`CellMode::AsDescribed`] — the seed paper's equations: `W⁰ = 0.1` off the diagonal and
//!   a true pairwise distance; hard clamps.
//! * [`CellMode::Sound`] (the default) — as described, plus smooth bounds instead of hard
//!   clamps (gradients never die), sign-constrained coefficients (the model passes them
//!   through softplus), an optional step size `dt`, a bounded row normalisation, and a
//!   per-block stimulus that carries token information.
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

mod autodiff;
pub mod colony;
pub mod composite;
pub mod grid;
pub mod kernel;
pub mod scalar;

/// Which equations the colony follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CellMode {
    /// The seed code, bugs included (inert mucus; needed for parity).
    AsCoded,
    /// The seed paper's equations.
    AsDescribed,
    /// The sound version (smooth bounds, live mucus, sign-constrained coefficients).
    #[default]
    Sound,
}

/// Number of learnable colony coefficients: `[α_E, α_P, α_G, α_L, β_P, β_G, β_L, ω_g, ω_d]`.
pub const N_COEFFS: usize = 9;

/// The seed's initial coefficient values, in [`N_COEFFS`] order.
pub const SEED_COEFFS: [f32; N_COEFFS] = [0.3, 0.5, 0.4, 0.4, 0.3, 0.2, 0.3, 0.05, 0.02];

/// Entropy-driven lifespan pruning of blocks.
///
/// Every block starts with lifespan 1; after each inner step it loses
/// `rate·(1 − H(p)/ln 4)` where `p = (h + 10⁻⁶)/Σ(h + 10⁻⁶)` over its four channels: a block
/// whose state has collapsed onto one channel (low entropy, "settled") ages fastest. A block
/// whose lifespan falls to `threshold` or below dies: its state and its mucus row and
/// column are zero from then on. The decision is a gate, not differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pruning {
    /// Lifespan lost per step by a block of zero entropy.
    pub rate: f32,
    /// Blocks at or below this lifespan are dead.
    pub threshold: f32,
}

/// Everything the colony update needs besides tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColonySpec {
    /// Equations.
    pub mode: CellMode,
    /// Inner steps `K`.
    pub steps: usize,
    /// Step size (1 in the seed modes).
    pub dt: f32,
    /// `ε` of the row normalisation `Wᵢⱼ / (Σₖ Wᵢₖ + ε)`.
    pub row_eps: f32,
    /// Sharpness `k` of the smooth bound `(softplus(kx) − softplus(k(x−1)))/k` (sound mode).
    pub sharpness: f32,
    /// Optional lifespan pruning.
    pub pruning: Option<Pruning>,
}

impl ColonySpec {
    /// The spec of `mode` with the seed's constants (`ε = 10⁻⁸`, `dt = 1`) in the seed modes and
    /// `ε = 10⁻³`, sharpness 10 in the sound mode.
    pub fn new(mode: CellMode, steps: usize) -> Self {
        Self {
            mode,
            steps,
            dt: 1.0,
            row_eps: if mode == CellMode::Sound { 1e-3 } else { 1e-8 },
            sharpness: 10.0,
            pruning: None,
        }
    }

    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.steps > 1000 {
            return Err(Error::Config(alloc::format!("inner steps {} must be in 1..=1000", self.steps)));
        }
        if !(self.dt > 0.0 && self.dt <= 10.0) {
            return Err(Error::Config(alloc::format!("dt {} must be in (0, 10]", self.dt)));
        }
        if self.mode != CellMode::Sound && self.dt != 1.0 {
            return Err(Error::Config("dt other than 1 needs the sound cell mode".into()));
        }
        if !(self.row_eps > 0.0 && self.row_eps < 1.0) {
            return Err(Error::Config(alloc::format!("row_eps {} must be in (0, 1)", self.row_eps)));
        }
        if !(self.sharpness >= 1.0 && self.sharpness <= 1000.0) {
            return Err(Error::Config(alloc::format!("sharpness {} must be in [1, 1000]", self.sharpness)));
        }
        if let Some(p) = self.pruning {
            if !(p.rate >= 0.0 && p.rate <= 1.0 && p.threshold >= 0.0 && p.threshold < 1.0) {
                return Err(Error::Config(alloc::format!(
                    "pruning rate {} must be in [0, 1] and threshold {} in [0, 1)",
                    p.rate,
                    p.threshold
                )));
            }
        }
        Ok(())
    }
}

type T<B> = <B as Backend>::Tensor;

/// Outputs of a colony update: final states `[T, N, 4]`, final mucus `[T, N, N]`, and the
/// alive mask `[T, N]` (all ones without pruning).
pub type ColonyOut<B> = (T<B>, T<B>, T<B>);

/// Gradients of a colony update: `(dh⁰, dW⁰, dstim, dcoeffs)`.
pub type ColonyGrads<B> = (T<B>, T<B>, T<B>, T<B>);

/// The cell op family: the fused colony kernels, all `K` inner steps of every token in one
/// pass, forward and backward. Defaults compose primitive ops ([`composite`], also the test
/// oracle); backends override them with kernels that call the scalar functions of [`scalar`]
/// (a backend without a kernel of its own writes `impl CellOps<MyBackend> for MyBackend {}`).
/// `Autodiff<B>` forwards both to `B` and records the fused backward.
///
/// Shapes: `h0: [T, N, 4]`, `w0: [T, N, N]`, `stim: [T, N]` (one stimulus per block),
/// `coeffs: [9]` (effective values, after any reparameterisation).
pub trait CellOps<B: Backend> {
    /// Names of the ops of this family (the autodiff forwarding test checks each).
    const OPS: &'static [&'static str] = &["colony_fwd", "colony_bwd"];
    /// `K` inner steps; returns `(h_K, W_K, alive)`.
    fn colony_fwd(h0: T<B>, w0: T<B>, stim: T<B>, coeffs: T<B>, spec: &ColonySpec) -> Result<ColonyOut<B>> {
        composite::colony_fwd::<B>(h0, w0, stim, coeffs, spec)
    }
    /// Vector-Jacobian product of [`CellOps::colony_fwd`] for output gradients `(dh_K, dW_K)`.
    #[allow(clippy::too_many_arguments)]
    fn colony_bwd(
        h0: T<B>,
        w0: T<B>,
        stim: T<B>,
        coeffs: T<B>,
        spec: &ColonySpec,
        dh: T<B>,
        dw: T<B>,
    ) -> Result<ColonyGrads<B>> {
        composite::colony_bwd::<B>(h0, w0, stim, coeffs, spec, dh, dw)
    }
}

/// `K` inner steps of a cell colony per token, through the backend's fused kernel:
/// `h0: [T, N, 4]`, `w0: [T, N, N]`, `stim: [T, N]`, `coeffs: [9]`; returns
/// `(h_K, W_K, alive: [T, N])` (see [`scalar`] for the equations).
pub fn colony<B: Backend + CellOps<B>>(
    h0: &Tensor<B>,
    w0: &Tensor<B>,
    stim: &Tensor<B>,
    coeffs: &Tensor<B>,
    spec: &ColonySpec,
) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    spec.validate()?;
    composite::check_shapes::<B>(h0.prim(), w0.prim(), stim.prim(), coeffs.prim())?;
    let (h, w, a) =
        B::colony_fwd(h0.prim().clone(), w0.prim().clone(), stim.prim().clone(), coeffs.prim().clone(), spec)?;
    Ok((Tensor::from_prim(h), Tensor::from_prim(w), Tensor::from_prim(a)))
}
