//! Fused neural-network operations: the `NnOps` extension slot of every backend.
use super::{composite, Backend};
use crate::error::Result;

type T<B> = <B as Backend>::Tensor;

/// Host-side constants of one AdamW update, computed once per step in f64
/// (the decay factors are not recomputed per element on the device).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε, added to `√v̂`.
    pub eps: f32,
    /// `1 − lr·λ`, the decoupled weight-decay factor.
    pub decay: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    pub inv_sqrt_bc2: f32,
    /// Factor applied to the gradient first (global-norm clipping folded into the update).
    pub grad_scale: f32,
}

impl AdamWStep {
    /// Constants for step `t ≥ 1` with learning rate `lr` and weight decay `wd`.
    pub fn new(lr: f64, beta1: f64, beta2: f64, eps: f64, wd: f64, t: u64) -> Self {
        // t as f64 is exact up to 2⁵³ and only rounds above it, where βᵗ is 0 anyway
        let t = t.max(1) as f64;
        let bc1 = 1.0 - libm::pow(beta1, t);
        let bc2 = 1.0 - libm::pow(beta2, t);
        Self {
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            eps: eps as f32,
            decay: (1.0 - lr * wd) as f32,
            step_size: (lr / bc1) as f32,
            inv_sqrt_bc2: (1.0 / libm::sqrt(bc2)) as f32,
            grad_scale: 1.0,
        }
    }

    /// The same step with the gradient multiplied by `s` first.
    pub fn with_grad_scale(self, s: f32) -> Self {
        Self { grad_scale: s, ..self }
    }
}

/// Dropout on attention probabilities: each probability is kept with probability `1 − p` and
/// scaled by `1/(1 − p)`; the mask is the Philox stream of `key` (see
/// [`composite::attention_dropout_mask`] for the element order every backend follows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnDropout {
    /// Drop probability in `[0, 1)`.
    pub p: f32,
    /// Random stream of the mask.
    pub key: crate::rng::RngKey,
}

/// Settings of a packed self-attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnSpec {
    /// Causal mask (query `i` sees keys `j ≤ i`).
    pub causal: bool,
    /// Score scale, usually `1/√Dh`.
    pub scale: f32,
    /// Optional dropout on the probabilities (training only).
    pub dropout: Option<AttnDropout>,
}

/// Fused NN kernels with forward and backward. Every method has a default built from
/// primitive ops ([`composite`]); backends override them with kernels of their own, and
/// the conformance suite checks the overrides against these defaults.
pub trait NnOps<B: Backend> {
    /// Names of the ops of this family (the autodiff forwarding test checks each).
    const OPS: &'static [&'static str] = &[
        "layer_norm_fwd",
        "layer_norm_bwd",
        "rms_norm_fwd",
        "rms_norm_bwd",
        "attention_fwd",
        "attention_bwd",
        "self_attention_fwd",
        "self_attention_bwd",
        "cross_entropy_fwd",
        "cross_entropy_bwd",
        "linear",
        "sum_squares",
        "adamw_step",
    ];
    /// LayerNorm over the last axis; see [`composite::layer_norm_fwd`]. Returns `(y, mean, rstd)`.
    fn layer_norm_fwd(x: T<B>, gamma: T<B>, beta: T<B>, eps: f32) -> Result<(T<B>, T<B>, T<B>)> {
        composite::layer_norm_fwd::<B>(x, gamma, beta, eps)
    }
    /// LayerNorm backward; see [`composite::layer_norm_bwd`]. Returns `(dx, dgamma, dbeta)`.
    fn layer_norm_bwd(x: T<B>, gamma: T<B>, mean: T<B>, rstd: T<B>, dy: T<B>) -> Result<(T<B>, T<B>, T<B>)> {
        composite::layer_norm_bwd::<B>(x, gamma, mean, rstd, dy)
    }
    /// RMSNorm over the last axis; see [`composite::rms_norm_fwd`]. Returns `(y, rstd)`.
    fn rms_norm_fwd(x: T<B>, gamma: T<B>, eps: f32) -> Result<(T<B>, T<B>)> {
        composite::rms_norm_fwd::<B>(x, gamma, eps)
    }
    /// RMSNorm backward; see [`composite::rms_norm_bwd`]. Returns `(dx, dgamma)`.
    fn rms_norm_bwd(x: T<B>, gamma: T<B>, rstd: T<B>, dy: T<B>) -> Result<(T<B>, T<B>)> {
        composite::rms_norm_bwd::<B>(x, gamma, rstd, dy)
    }
    /// Scaled dot-product attention; see [`composite::attention_fwd`]. Returns `(o, lse)`.
    fn attention_fwd(q: T<B>, k: T<B>, v: T<B>, causal: bool, scale: f32) -> Result<(T<B>, T<B>)> {
        composite::attention_fwd::<B>(q, k, v, causal, scale)
    }
    /// Attention backward; see [`composite::attention_bwd`]. Returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        q: T<B>,
        k: T<B>,
        v: T<B>,
        o: T<B>,
        lse: T<B>,
        dout: T<B>,
        causal: bool,
        scale: f32,
    ) -> Result<(T<B>, T<B>, T<B>)> {
        composite::attention_bwd::<B>(q, k, v, o, lse, dout, causal, scale)
    }
    /// Packed self-attention; see [`composite::self_attention_fwd`]. Returns `(o, lse)`.
    fn self_attention_fwd(qkv: T<B>, spec: &AttnSpec) -> Result<(T<B>, T<B>)> {
        composite::self_attention_fwd::<B>(qkv, spec)
    }
    /// Packed self-attention backward; see [`composite::self_attention_bwd`]. Returns `dqkv`.
    fn self_attention_bwd(qkv: T<B>, o: T<B>, lse: T<B>, dout: T<B>, spec: &AttnSpec) -> Result<T<B>> {
        composite::self_attention_bwd::<B>(qkv, o, lse, dout, spec)
    }
    /// Mean cross-entropy of `logits: [N, V]` against `targets: [N]`; returns `(loss: [], lse: [N, 1])`.
    fn cross_entropy_fwd(logits: T<B>, targets: B::Ids) -> Result<(T<B>, T<B>)> {
        composite::cross_entropy_fwd::<B>(logits, targets)
    }
    /// Cross-entropy backward; `dloss: []`. Returns `dlogits: [N, V]`.
    fn cross_entropy_bwd(logits: T<B>, targets: B::Ids, lse: T<B>, dloss: T<B>) -> Result<T<B>> {
        composite::cross_entropy_bwd::<B>(logits, targets, lse, dloss)
    }
    /// Linear layer `x·wᵀ + b`; see [`composite::linear`]. The backward pass is two matrix
    /// products and a row sum, recorded by the autodiff backend.
    fn linear(x: T<B>, w: T<B>, b: Option<T<B>>) -> Result<T<B>> {
        composite::linear::<B>(x, w, b)
    }
    /// `Σ x²` over all elements, as a rank-0 tensor (gradient norms).
    fn sum_squares(x: T<B>) -> Result<T<B>> {
        composite::sum_squares::<B>(x)
    }
    /// One AdamW update of a parameter and its moments; returns `(param, m, v)`.
    fn adamw_step(p: T<B>, g: T<B>, m: T<B>, v: T<B>, h: &AdamWStep) -> Result<(T<B>, T<B>, T<B>)> {
        composite::adamw_step::<B>(p, g, m, v, h)
    }
}
