//! The postsynaptic dual-timescale linear layer (`synapse.md` §2, made sound).
//!
//! ```text
//! y₀ = x W_slowᵀ + g · x W_fastᵀ + b                     g = fast_gate (the seed's calcium·energy)
//! y₁ = y₀ ⊙ (1 + f + s)                                  f, s: fast and consolidated gains [out]
//! y  = y₁ + (y₁ U) V                                     U: [out, R], V: [R, out] — low rank, never out×out
//! ```
//!
//! **Who owns which tensor.** Gradients own `W_slow`, `b`, `U`, `V` (parameters). The Hebbian
//! rule owns `W_fast`, the gains `f` and `s`, the eligibility traces `u`, `v`, the fixed random
//! projections `P_in`, `P_out` and the plasticity state (CaMKII, PP1, BDNF, the |δ|
//! accumulator) — buffers the optimiser never sees. Nothing is written by both (the seed's
//! Hebbian writes into `W_slow`, `W_fast`, `f`, `s`, which backprop also trains, are its
//! defect §9.6; here consolidation goes into the Hebbian-owned gain `s`).
//!
//! **When the Hebbian rule writes.** Only in a training step: the forward pass computes the new
//! buffer values from this pass's `x` and `y` (detached) and *stages* them; the trainer commits
//! them after the optimiser step has succeeded (and drops them if the step failed). So the
//! writes of step `n` are in effect from step `n + 1`, and evaluation or generation (which
//! stage nothing) leave every weight as it was.
//!
//! **Update order** (one write per forward, over the `N` tokens of the call):
//! 1. traces `u ← δ u + 0.05 xᵀ(y P_out)/N`, `v ← δ v + 0.05 (x P_in)ᵀ y/N` (δ = `post_trace_decay`);
//! 2. postsynaptic calcium `ca = [mean_n |y|]₀¹⁰` per output;
//!    `K ← [K + κ·[ca > θ_K](1 − K)]₀¹`, `P ← P_τ P + (1 − P_τ)[ca < θ_P]`,
//!    `BDNF ← [b_τ BDNF + (1 − b_τ) acc]₀^{b_max}` (with the accumulator of the previous write);
//! 3. `Δ = g·u v` (`[in, out]`, rank R): `W_fast ← d_f W_fast + η_f Δᵀ`, then scaled back to
//!    `‖W_fast‖_F ≤ fast_weight_max_norm`;
//! 4. `δ = mean over inputs of u v` (`[out]`; one reduction for every shape, unlike the seed's
//!    diagonal-or-mean, §9.9): `f ← [d_f f + η_f δ]_{−b}^{b}`, `acc ← [0.985 acc + 0.015|δ|]₀¹⁰`,
//!    `s ← [s + η_s (1 + γ·BDNF) δ G]_{−b}^{b}` with the consolidation gate
//!    `G = σ(K − ½) − 0.3` (the seed's gate; a write that is not finite is skipped) and
//!    `b = post_gain_bound`.
//!
//! The two bounds are not the seed's: its writes are unbounded, and the loop they close
//! (larger outputs → larger traces → larger fast weights and gains → larger outputs) diverges
//! to infinity within a few hundred training steps at a learning rate of 3·10⁻³.
use super::SynapticConfig;
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::{Buffer, ForwardCtx, Init, Param};
use crate::rng::RngKey;
use crate::tensor::Tensor;

/// The Hebbian state of one [`SynapticLinear`] (all buffers).
#[derive(Debug, Clone)]
pub struct HebbState<B: Backend> {
    /// Fast weights `[out, in]`.
    pub w_fast: Buffer<B>,
    /// Eligibility trace `u: [in, R]`.
    pub trace_u: Buffer<B>,
    /// Eligibility trace `v: [R, out]`.
    pub trace_v: Buffer<B>,
    /// Fixed random projection `P_in: [in, R]` (`N(0, 1)/√in`).
    pub proj_in: Buffer<B>,
    /// Fixed random projection `P_out: [out, R]` (`N(0, 1)/√out`).
    pub proj_out: Buffer<B>,
    /// CaMKII activation per output `[out]`.
    pub camkii: Buffer<B>,
    /// PP1 activation per output `[out]`.
    pub pp1: Buffer<B>,
    /// BDNF level per output `[out]`.
    pub bdnf: Buffer<B>,
    /// |δ| accumulator per output `[out]`.
    pub acc: Buffer<B>,
    /// Fast gain `f: [out]`.
    pub fast_gain: Buffer<B>,
    /// Consolidated gain `s: [out]`.
    pub slow_gain: Buffer<B>,
}

crate::module!(HebbState { w_fast, trace_u, trace_v, proj_in, proj_out, camkii, pp1, bdnf, acc, fast_gain, slow_gain });

/// The rates of the Hebbian rule (from [`SynapticConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HebbRates {
    /// Gate of the fast weights in the forward pass.
    pub gate: f32,
    /// Trace decay.
    pub trace_decay: f32,
    /// Fast-weight and fast-gain decay.
    pub fast_decay: f32,
    /// Fast-weight and fast-gain learning rate.
    pub fast_lr: f32,
    /// Consolidation rate.
    pub slow_lr: f32,
    /// CaMKII rate.
    pub camkii_up: f32,
    /// PP1 persistence.
    pub pp1_tau: f32,
    /// CaMKII threshold.
    pub camkii_thr: f32,
    /// PP1 threshold.
    pub pp1_thr: f32,
    /// BDNF persistence.
    pub bdnf_tau: f32,
    /// BDNF scaling of consolidation.
    pub bdnf_scale: f32,
    /// BDNF ceiling.
    pub bdnf_max: f32,
    /// Ceiling of `‖W_fast‖_F`.
    pub fast_max_norm: f32,
    /// Bound of the gains.
    pub gain_bound: f32,
}

impl HebbRates {
    /// The rates of `cfg`.
    pub fn new(cfg: &SynapticConfig) -> Self {
        Self {
            gate: cfg.fast_gate as f32,
            trace_decay: cfg.post_trace_decay as f32,
            fast_decay: cfg.post_fast_decay as f32,
            fast_lr: cfg.post_fast_lr as f32,
            slow_lr: cfg.post_slow_lr as f32,
            camkii_up: cfg.camkii_up as f32,
            pp1_tau: cfg.pp1_tau as f32,
            camkii_thr: cfg.camkii_thr as f32,
            pp1_thr: cfg.pp1_thr as f32,
            bdnf_tau: cfg.bdnf_tau as f32,
            bdnf_scale: cfg.bdnf_scale as f32,
            bdnf_max: cfg.bdnf_max as f32,
            fast_max_norm: cfg.fast_weight_max_norm as f32,
            gain_bound: cfg.post_gain_bound as f32,
        }
    }
}

/// A linear layer `[.., in] → [.., out]` with Hebbian fast weights (see the module docs). With
/// `enable_hebbian` off it is exactly a plain linear layer (`weight`, `bias`; the same
/// initialisation as [`crate::nn::Linear`] under the same key).
#[derive(Debug, Clone)]
pub struct SynapticLinear<B: Backend> {
    /// `W_slow: [out, in]` (gradient-trained).
    pub weight: Param<B>,
    /// Bias `[out]`.
    pub bias: Option<Param<B>>,
    /// `U: [out, R]` of the low-rank modulation (Hebbian layers only).
    pub u: Option<Param<B>>,
    /// `V: [R, out]` of the low-rank modulation (Hebbian layers only).
    pub v: Option<Param<B>>,
    /// The Hebbian state (Hebbian layers only).
    pub hebb: Option<HebbState<B>>,
    rates: HebbRates,
}

crate::module!(SynapticLinear { weight, bias, u, v, hebb });

impl<B: Backend> SynapticLinear<B> {
    /// A layer with `W_slow` drawn from `init` under `key` (as [`crate::nn::Linear`]), zero
    /// bias, and when `cfg.enable_hebbian`: `U, V ~ N(0, 0.02²)`, zero fast weights and
    /// traces, PP1 at ½, fixed random projections (keys folded from `key`).
    pub fn new(
        d_in: usize,
        d_out: usize,
        bias: bool,
        init: Init,
        cfg: &SynapticConfig,
        key: RngKey,
        dev: &B::Device,
    ) -> Result<Self> {
        let weight = Param::new(init.tensor(&[d_out, d_in], key, dev)?);
        let bias = if bias { Some(Param::new(Tensor::zeros(&[d_out], dev)?)) } else { None };
        let rates = HebbRates::new(cfg);
        if !cfg.enable_hebbian {
            return Ok(Self { weight, bias, u: None, v: None, hebb: None, rates });
        }
        let r = cfg.rank_eligibility;
        let buf = |shape: &[usize], v: f32| -> Result<Buffer<B>> { Ok(Buffer::new(Tensor::full(v, shape, dev)?)) };
        let hebb = HebbState {
            w_fast: buf(&[d_out, d_in], 0.0)?,
            trace_u: buf(&[d_in, r], 0.0)?,
            trace_v: buf(&[r, d_out], 0.0)?,
            proj_in: Buffer::new(Tensor::randn(1.0 / libm::sqrtf(d_in as f32), key.fold(4), &[d_in, r], dev)?),
            proj_out: Buffer::new(Tensor::randn(1.0 / libm::sqrtf(d_out as f32), key.fold(5), &[d_out, r], dev)?),
            camkii: buf(&[d_out], 0.0)?,
            pp1: buf(&[d_out], 0.5)?,
            bdnf: buf(&[d_out], 0.0)?,
            acc: buf(&[d_out], 0.0)?,
            fast_gain: buf(&[d_out], 0.0)?,
            slow_gain: buf(&[d_out], 0.0)?,
        };
        Ok(Self {
            weight,
            bias,
            u: Some(Param::new(Tensor::randn(0.02, key.fold(2), &[d_out, r], dev)?)),
            v: Some(Param::new(Tensor::randn(0.02, key.fold(3), &[r, d_out], dev)?)),
            hebb: Some(hebb),
            rates,
        })
    }

    /// `y = y₁ + (y₁U)V` with `y₁ = (x W_slowᵀ + g x W_fastᵀ + b) ⊙ (1 + f + s)`; in training
    /// mode it also stages the Hebbian write of this pass.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let (Some(h), Some(u), Some(v)) = (&self.hebb, &self.u, &self.v) else {
            return x.linear(&self.weight, self.bias.as_deref());
        };
        let fast = x.matmul_t(&h.w_fast, false, true)?.mul_scalar(self.rates.gate)?;
        let y0 = x.linear(&self.weight, self.bias.as_deref())?.add(&fast)?;
        let gain = h.fast_gain.add(&h.slow_gain)?.add_scalar(1.0)?;
        let y1 = y0.mul(&gain)?;
        let y = y1.add(&y1.matmul(u)?.matmul(v)?)?;
        if ctx.train {
            self.stage_hebbian(h, x, &y)?;
        }
        Ok(y)
    }

    /// Computes this pass's Hebbian write (module docs, steps 1–4) from `x` and `y`
    /// (detached) and stages it in the buffers.
    fn stage_hebbian(&self, h: &HebbState<B>, x: &Tensor<B>, y: &Tensor<B>) -> Result<()> {
        let r = &self.rates;
        let (d_in, d_out) = (self.weight.shape()[1], self.weight.shape()[0]);
        let n = x.numel() / d_in.max(1);
        if n == 0 {
            return Ok(());
        }
        let x = x.detach().reshape(&[n, d_in])?;
        let y = y.detach().reshape(&[n, d_out])?;
        let inv_n = 1.0 / n as f32;
        // 1. traces
        let u = h
            .trace_u
            .mul_scalar(r.trace_decay)?
            .add(&x.matmul_t(&y.matmul(&h.proj_out)?, true, false)?.mul_scalar(0.05 * inv_n)?)?;
        let v = h
            .trace_v
            .mul_scalar(r.trace_decay)?
            .add(&x.matmul(&h.proj_in)?.matmul_t(&y, true, false)?.mul_scalar(0.05 * inv_n)?)?;
        // 2. calcium, CaMKII, PP1, BDNF
        let ca = y.unary(crate::backend::Unary::Abs)?.mean(0)?.reshape(&[d_out])?.clamp(0.0, 10.0)?;
        let thr = |t: f32| Tensor::<B>::scalar(t, &ca.device());
        let up = ca.binary(crate::backend::Binary::Gt, &thr(r.camkii_thr)?)?;
        let dn = thr(r.pp1_thr)?.binary(crate::backend::Binary::Gt, &ca)?;
        let k = h.camkii.add(&up.mul(&h.camkii.affine(-1.0, 1.0)?)?.mul_scalar(r.camkii_up)?)?.clamp(0.0, 1.0)?;
        let p = h.pp1.mul_scalar(r.pp1_tau)?.add(&dn.mul_scalar(1.0 - r.pp1_tau)?)?;
        let bdnf = h.bdnf.mul_scalar(r.bdnf_tau)?.add(&h.acc.mul_scalar(1.0 - r.bdnf_tau)?)?.clamp(0.0, r.bdnf_max)?;
        // 3. fast weights: W_fast ← d W_fast + η g (u v)ᵀ = d W_fast + η g vᵀ uᵀ
        let w_fast =
            h.w_fast.mul_scalar(r.fast_decay)?.add(&v.matmul_t(&u, true, true)?.mul_scalar(r.fast_lr * r.gate)?)?;
        let norm = libm::sqrtf(w_fast.square()?.sum_all()?.to_scalar()?);
        let w_fast = if norm > r.fast_max_norm { w_fast.mul_scalar(r.fast_max_norm / norm)? } else { w_fast };
        // 4. gains: δ = (mean over inputs of u) · v
        let delta = u.mean(0)?.matmul(&v)?.reshape(&[d_out])?;
        let b = r.gain_bound;
        let fast_gain = h.fast_gain.mul_scalar(r.fast_decay)?.add(&delta.mul_scalar(r.fast_lr)?)?.clamp(-b, b)?;
        let acc = h
            .acc
            .mul_scalar(0.985)?
            .add(&delta.unary(crate::backend::Unary::Abs)?.mul_scalar(0.015)?)?
            .clamp(0.0, 10.0)?;
        let gate = k.add_scalar(-0.5)?.sigmoid()?.add_scalar(-0.3)?;
        let write = bdnf.mul_scalar(r.bdnf_scale)?.add_scalar(1.0)?.mul(&delta)?.mul(&gate)?.mul_scalar(r.slow_lr)?;
        let finite = write.to_vec()?.iter().all(|x| x.is_finite());
        h.trace_u.stage(u);
        h.trace_v.stage(v);
        h.camkii.stage(k);
        h.pp1.stage(p);
        h.bdnf.stage(bdnf);
        h.w_fast.stage(w_fast);
        h.fast_gain.stage(fast_gain);
        h.acc.stage(acc);
        if finite {
            h.slow_gain.stage(h.slow_gain.add(&write)?.clamp(-b, b)?);
        }
        Ok(())
    }

    /// Frobenius norm of the fast weights (a vital sign; 0 without Hebbian state).
    pub fn fast_norm(&self) -> Result<f64> {
        match &self.hebb {
            Some(h) => Ok(libm::sqrt(h.w_fast.square()?.sum_all()?.to_scalar()? as f64)),
            None => Ok(0.0),
        }
    }
}
