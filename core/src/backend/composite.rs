//! Default implementations of derived and fused operations, written with primitive ops
//! only. They are what a new backend runs before it has kernels of its own, and they
//! are the oracle the conformance suite compares every fused kernel against.
use super::{Backend, Binary, Reduce, Unary};
use crate::error::{Error, Result};
use alloc::vec;
use alloc::vec::Vec;

type T<B> = <B as Backend>::Tensor;

/// A rank-0 tensor holding `v` on the device of `like`.
pub fn scalar_like<B: Backend>(v: f32, like: &T<B>) -> Result<T<B>> {
    B::full(v, &[], &B::device(like))
}

fn bin<B: Backend>(op: Binary, a: T<B>, b: T<B>) -> Result<T<B>> {
    B::binary(op, a, b)
}

fn affine<B: Backend>(x: T<B>, mul: f32, add: f32) -> Result<T<B>> {
    B::unary(Unary::Affine { mul, add }, x)
}

/// Zero padding along `axis` via `concat`.
pub fn pad<B: Backend>(x: T<B>, axis: usize, before: usize, after: usize) -> Result<T<B>> {
    let shape = B::shape(&x).to_vec();
    let dev = B::device(&x);
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        let mut s = shape.clone();
        s[axis] = before;
        parts.push(B::full(0.0, &s, &dev)?);
    }
    parts.push(x);
    if after > 0 {
        let mut s = shape;
        s[axis] = after;
        parts.push(B::full(0.0, &s, &dev)?);
    }
    if parts.len() == 1 {
        return Ok(parts.pop().unwrap());
    }
    B::concat(parts, axis)
}

/// `dy · f'(x)` built from primitive ops (see [`crate::math::unary_grad`] for the formulas).
pub fn unary_grad<B: Backend>(op: Unary, x: T<B>, y: T<B>, dy: T<B>) -> Result<T<B>> {
    use Unary::*;
    let m = |a: T<B>, b: T<B>| bin::<B>(Binary::Mul, a, b);
    let d = match op {
        Neg => return B::unary(Neg, dy),
        Exp => return m(dy, y),
        Log => return bin::<B>(Binary::Div, dy, x),
        Sqrt => affine::<B>(B::unary(Recip, y)?, 0.5, 0.0)?,
        Rsqrt => affine::<B>(B::unary(Powf(3.0), y)?, -0.5, 0.0)?,
        Recip => affine::<B>(B::unary(Square, y)?, -1.0, 0.0)?,
        Abs => {
            let z = scalar_like::<B>(0.0, &x)?;
            let pos = bin::<B>(Binary::Gt, x.clone(), z.clone())?;
            let neg = bin::<B>(Binary::Gt, z, x)?;
            bin::<B>(Binary::Sub, pos, neg)?
        }
        Square => affine::<B>(x, 2.0, 0.0)?,
        Tanh => affine::<B>(B::unary(Square, y)?, -1.0, 1.0)?,
        Sigmoid => m(y.clone(), affine::<B>(y, -1.0, 1.0)?)?,
        Erf => {
            // 2/√π · e^{-x²}
            let e = B::unary(Exp, affine::<B>(B::unary(Square, x)?, -1.0, 0.0)?)?;
            affine::<B>(e, core::f32::consts::FRAC_2_SQRT_PI, 0.0)?
        }
        Relu => {
            let z = scalar_like::<B>(0.0, &x)?;
            bin::<B>(Binary::Gt, x, z)?
        }
        Gelu => {
            // Φ(x) + x·φ(x), Φ(x) = ½(1 + erf(x/√2)), φ(x) = e^{-x²/2}/√(2π)
            let cdf =
                affine::<B>(B::unary(Erf, affine::<B>(x.clone(), core::f32::consts::FRAC_1_SQRT_2, 0.0)?)?, 0.5, 0.5)?;
            let pdf =
                affine::<B>(B::unary(Exp, affine::<B>(B::unary(Square, x.clone())?, -0.5, 0.0)?)?, 0.398_942_3, 0.0)?;
            bin::<B>(Binary::Add, cdf, m(x, pdf)?)?
        }
        Silu => {
            // s + x·s·(1 − s)
            let s = B::unary(Sigmoid, x.clone())?;
            let t = m(m(x, s.clone())?, affine::<B>(s.clone(), -1.0, 1.0)?)?;
            bin::<B>(Binary::Add, s, t)?
        }
        Softplus => B::unary(Sigmoid, x)?,
        Sin => B::unary(Cos, x)?,
        Cos => affine::<B>(B::unary(Sin, x)?, -1.0, 0.0)?,
        Affine { mul, .. } => return affine::<B>(dy, mul, 0.0),
        Powf(p) => affine::<B>(B::unary(Powf(p - 1.0), x)?, p, 0.0)?,
        Clamp { min, max } => {
            let lo = scalar_like::<B>(min, &x)?;
            let hi = scalar_like::<B>(max, &x)?;
            m(bin::<B>(Binary::Ge, x.clone(), lo)?, bin::<B>(Binary::Ge, hi, x)?)?
        }
    };
    m(dy, d)
}

/// Softmax over the last axis: `e^{x−max} / Σ e^{x−max}`.
pub fn softmax<B: Backend>(x: T<B>) -> Result<T<B>> {
    let ax = last_axis::<B>(&x)?;
    let mx = B::reduce(Reduce::Max, x.clone(), ax)?;
    let e = B::unary(Unary::Exp, bin::<B>(Binary::Sub, x, mx)?)?;
    let s = B::reduce(Reduce::Sum, e.clone(), ax)?;
    bin::<B>(Binary::Div, e, s)
}

/// `y ⊙ (dy − Σ dy⊙y)` over the last axis.
pub fn softmax_grad<B: Backend>(y: T<B>, dy: T<B>) -> Result<T<B>> {
    let ax = last_axis::<B>(&y)?;
    let dot = B::reduce(Reduce::Sum, bin::<B>(Binary::Mul, dy.clone(), y.clone())?, ax)?;
    bin::<B>(Binary::Mul, y, bin::<B>(Binary::Sub, dy, dot)?)
}

fn last_axis<B: Backend>(x: &T<B>) -> Result<usize> {
    let r = B::shape(x).len();
    if r == 0 {
        return Err(Error::InvalidArgument("operation needs rank >= 1".into()));
    }
    Ok(r - 1)
}

/// Log-sum-exp over the last axis, kept with size 1: `m + ln Σ e^{x−m}`.
pub fn logsumexp<B: Backend>(x: T<B>) -> Result<T<B>> {
    let ax = last_axis::<B>(&x)?;
    let mx = B::reduce(Reduce::Max, x.clone(), ax)?;
    let e = B::unary(Unary::Exp, bin::<B>(Binary::Sub, x, mx.clone())?)?;
    let s = B::unary(Unary::Log, B::reduce(Reduce::Sum, e, ax)?)?;
    bin::<B>(Binary::Add, mx, s)
}

/// LayerNorm forward over the last axis: `μ = mean(x)`, `σ² = mean((x−μ)²)` (biased),
/// `rstd = 1/√(σ²+ε)`, `y = (x−μ)·rstd·γ + β`. Returns `(y, μ, rstd)` with `μ, rstd: [..., 1]`.
pub fn layer_norm_fwd<B: Backend>(x: T<B>, gamma: T<B>, beta: T<B>, eps: f32) -> Result<(T<B>, T<B>, T<B>)> {
    let ax = last_axis::<B>(&x)?;
    let mean = B::reduce(Reduce::Mean, x.clone(), ax)?;
    let xc = bin::<B>(Binary::Sub, x, mean.clone())?;
    let var = B::reduce(Reduce::Mean, B::unary(Unary::Square, xc.clone())?, ax)?;
    let rstd = B::unary(Unary::Rsqrt, affine::<B>(var, 1.0, eps)?)?;
    let xhat = bin::<B>(Binary::Mul, xc, rstd.clone())?;
    let y = bin::<B>(Binary::Add, bin::<B>(Binary::Mul, xhat, gamma)?, beta)?;
    Ok((y, mean, rstd))
}

/// Sums `t` over all leading axes, giving the shape of the last axis (`[D]`).
fn sum_leading<B: Backend>(t: T<B>) -> Result<T<B>> {
    let shape = B::shape(&t).to_vec();
    let d = *shape.last().unwrap_or(&1);
    let n = crate::shape::numel(&shape) / d.max(1);
    let flat = B::reshape(t, &[n, d])?;
    B::reshape(B::reduce(Reduce::Sum, flat, 0)?, &[d])
}

/// LayerNorm backward: with `x̂ = (x−μ)·rstd` and `g = dy⊙γ`,
/// `dx = rstd·(g − mean(g) − x̂·mean(g⊙x̂))`, `dγ = Σ dy⊙x̂`, `dβ = Σ dy`.
pub fn layer_norm_bwd<B: Backend>(
    x: T<B>,
    gamma: T<B>,
    mean: T<B>,
    rstd: T<B>,
    dy: T<B>,
) -> Result<(T<B>, T<B>, T<B>)> {
    let ax = last_axis::<B>(&x)?;
    let xhat = bin::<B>(Binary::Mul, bin::<B>(Binary::Sub, x, mean)?, rstd.clone())?;
    let g = bin::<B>(Binary::Mul, dy.clone(), gamma)?;
    let mg = B::reduce(Reduce::Mean, g.clone(), ax)?;
    let mgx = B::reduce(Reduce::Mean, bin::<B>(Binary::Mul, g.clone(), xhat.clone())?, ax)?;
    let inner = bin::<B>(Binary::Sub, bin::<B>(Binary::Sub, g, mg)?, bin::<B>(Binary::Mul, xhat.clone(), mgx)?)?;
    let dx = bin::<B>(Binary::Mul, inner, rstd)?;
    let dgamma = sum_leading::<B>(bin::<B>(Binary::Mul, dy.clone(), xhat)?)?;
    let dbeta = sum_leading::<B>(dy)?;
    Ok((dx, dgamma, dbeta))
}

/// RMSNorm forward over the last axis: `rstd = 1/√(mean(x²)+ε)`, `y = x·rstd·γ`.
/// Returns `(y, rstd)` with `rstd: [..., 1]`.
pub fn rms_norm_fwd<B: Backend>(x: T<B>, gamma: T<B>, eps: f32) -> Result<(T<B>, T<B>)> {
    let ax = last_axis::<B>(&x)?;
    let ms = B::reduce(Reduce::Mean, B::unary(Unary::Square, x.clone())?, ax)?;
    let rstd = B::unary(Unary::Rsqrt, affine::<B>(ms, 1.0, eps)?)?;
    let y = bin::<B>(Binary::Mul, bin::<B>(Binary::Mul, x, rstd.clone())?, gamma)?;
    Ok((y, rstd))
}

/// RMSNorm backward: with `x̂ = x·rstd`, `g = dy⊙γ`: `dx = rstd·(g − x̂·mean(g⊙x̂))`, `dγ = Σ dy⊙x̂`.
pub fn rms_norm_bwd<B: Backend>(x: T<B>, gamma: T<B>, rstd: T<B>, dy: T<B>) -> Result<(T<B>, T<B>)> {
    let ax = last_axis::<B>(&x)?;
    let xhat = bin::<B>(Binary::Mul, x, rstd.clone())?;
    let g = bin::<B>(Binary::Mul, dy.clone(), gamma)?;
    let mgx = B::reduce(Reduce::Mean, bin::<B>(Binary::Mul, g.clone(), xhat.clone())?, ax)?;
    let dx = bin::<B>(Binary::Mul, bin::<B>(Binary::Sub, g, bin::<B>(Binary::Mul, xhat.clone(), mgx)?)?, rstd)?;
    let dgamma = sum_leading::<B>(bin::<B>(Binary::Mul, dy, xhat)?)?;
    Ok((dx, dgamma))
}

/// Additive mask `[Sq, Sk]`: 0 where query `i` may see key `j` (`j ≤ i + Sk − Sq`), −∞ elsewhere.
fn causal_mask<B: Backend>(sq: usize, sk: usize, like: &T<B>) -> Result<T<B>> {
    let mut m = vec![0.0f32; sq * sk];
    for i in 0..sq {
        for j in 0..sk {
            if j + sq > i + sk {
                m[i * sk + j] = f32::NEG_INFINITY;
            }
        }
    }
    B::from_f32(&m, &[sq, sk], &B::device(like))
}

/// Scaled dot-product attention. `q: [..., Sq, D]`, `k, v: [..., Sk, D]` with equal batch
/// dims; `s = scale·q kᵀ` (+ causal mask aligned to the end: query `i` sees key `j ≤ i + Sk − Sq`),
/// `p = softmax(s)`, `o = p v`. Returns `(o, lse)` with `lse = logsumexp(s): [..., Sq, 1]`.
pub fn attention_fwd<B: Backend>(q: T<B>, k: T<B>, v: T<B>, causal: bool, scale: f32) -> Result<(T<B>, T<B>)> {
    attention_fwd_masked::<B>(q, k, v, causal, scale, None)
}

/// [`attention_fwd`] with an optional dropout mask `m` on the probabilities (`[..., Sq, Sk]`,
/// entries 0 or `1/(1−p)`): `o = (p ⊙ m) v`.
fn attention_fwd_masked<B: Backend>(
    q: T<B>,
    k: T<B>,
    v: T<B>,
    causal: bool,
    scale: f32,
    mask: Option<T<B>>,
) -> Result<(T<B>, T<B>)> {
    let s = scores::<B>(q, k, causal, scale)?;
    let lse = logsumexp::<B>(s.clone())?;
    let mut p = B::unary(Unary::Exp, bin::<B>(Binary::Sub, s, lse.clone())?)?;
    if let Some(m) = mask {
        p = bin::<B>(Binary::Mul, p, m)?;
    }
    let o = B::matmul(p, v, false, false)?;
    Ok((o, lse))
}

fn scores<B: Backend>(q: T<B>, k: T<B>, causal: bool, scale: f32) -> Result<T<B>> {
    let sq = B::shape(&q)[B::shape(&q).len() - 2];
    let sk = B::shape(&k)[B::shape(&k).len() - 2];
    let s = affine::<B>(B::matmul(q, k, false, true)?, scale, 0.0)?;
    if causal {
        let m = causal_mask::<B>(sq, sk, &s)?;
        bin::<B>(Binary::Add, s, m)
    } else {
        Ok(s)
    }
}

/// Attention backward from the saved `lse`: `p = e^{s − lse}`, `dv = pᵀ do`, `dp = do vᵀ`,
/// `ds = p ⊙ (dp − rowsum(do ⊙ o))`, `dq = scale·ds k`, `dk = scale·dsᵀ q`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd<B: Backend>(
    q: T<B>,
    k: T<B>,
    v: T<B>,
    o: T<B>,
    lse: T<B>,
    dout: T<B>,
    causal: bool,
    scale: f32,
) -> Result<(T<B>, T<B>, T<B>)> {
    attention_bwd_masked::<B>(q, k, v, o, lse, dout, causal, scale, None)
}

/// Backward of [`attention_fwd_masked`]: `dv = (p⊙m)ᵀ do`, `dp = m ⊙ (do vᵀ)`; the softmax
/// step is unchanged because `rowsum(dp ⊙ p) = rowsum(do ⊙ o)` still holds.
#[allow(clippy::too_many_arguments)]
fn attention_bwd_masked<B: Backend>(
    q: T<B>,
    k: T<B>,
    v: T<B>,
    o: T<B>,
    lse: T<B>,
    dout: T<B>,
    causal: bool,
    scale: f32,
    mask: Option<T<B>>,
) -> Result<(T<B>, T<B>, T<B>)> {
    let s = scores::<B>(q.clone(), k.clone(), causal, scale)?;
    let p = B::unary(Unary::Exp, bin::<B>(Binary::Sub, s, lse)?)?;
    let pd = match &mask {
        Some(m) => bin::<B>(Binary::Mul, p.clone(), m.clone())?,
        None => p.clone(),
    };
    let dv = B::matmul(pd, dout.clone(), true, false)?;
    let mut dp = B::matmul(dout.clone(), v, false, true)?;
    if let Some(m) = mask {
        dp = bin::<B>(Binary::Mul, dp, m)?;
    }
    let ax = B::shape(&o).len() - 1;
    let delta = B::reduce(Reduce::Sum, bin::<B>(Binary::Mul, dout, o)?, ax)?;
    let ds = affine::<B>(bin::<B>(Binary::Mul, p, bin::<B>(Binary::Sub, dp, delta)?)?, scale, 0.0)?;
    let dq = B::matmul(ds.clone(), k, false, false)?;
    let dk = B::matmul(ds, q, true, false)?;
    Ok((dq, dk, dv))
}

/// Splits packed `qkv: [B, S, 3, H, Dh]` into `q, k, v: [B, H, S, Dh]`.
fn unpack_qkv<B: Backend>(qkv: T<B>) -> Result<(T<B>, T<B>, T<B>)> {
    let s = B::shape(&qkv).to_vec();
    let (b, t, h, dh) = (s[0], s[1], s[3], s[4]);
    let p = B::permute(qkv, &[2, 0, 3, 1, 4])?;
    let pick = |i: usize| B::reshape(B::narrow(p.clone(), 0, i, 1)?, &[b, h, t, dh]);
    Ok((pick(0)?, pick(1)?, pick(2)?))
}

/// The dropout mask of a packed self-attention call: `[B, H, S, S]`, element
/// `((b·H + h)·S + i)·S + j` kept (value `1/(1−p)`) when `rng::sample(Bernoulli(1−p))` is 1.
pub fn attention_dropout_mask<B: Backend>(d: &super::AttnDropout, shape: [usize; 4], dev: &B::Device) -> Result<T<B>> {
    let keep = B::random(crate::rng::Dist::Bernoulli { p: 1.0 - d.p }, d.key, &shape, dev)?;
    affine::<B>(keep, 1.0 / (1.0 - d.p), 0.0)
}

fn packed_mask<B: Backend>(qkv: &T<B>, spec: &super::AttnSpec) -> Result<Option<T<B>>> {
    let s = B::shape(qkv).to_vec();
    match &spec.dropout {
        Some(d) if d.p > 0.0 => Ok(Some(attention_dropout_mask::<B>(d, [s[0], s[3], s[1], s[1]], &B::device(qkv))?)),
        _ => Ok(None),
    }
}

/// Packed self-attention: `qkv: [B, S, 3, H, Dh]` (the output of one qkv projection, rows
/// ordered q, k, v, heads contiguous) → `(o: [B, S, H, Dh], lse: [B, H, S, 1])`; the
/// attention of [`attention_fwd`] per head, with optional dropout on the probabilities.
pub fn self_attention_fwd<B: Backend>(qkv: T<B>, spec: &super::AttnSpec) -> Result<(T<B>, T<B>)> {
    let mask = packed_mask::<B>(&qkv, spec)?;
    let (q, k, v) = unpack_qkv::<B>(qkv)?;
    let (o, lse) = attention_fwd_masked::<B>(q, k, v, spec.causal, spec.scale, mask)?;
    Ok((B::permute(o, &[0, 2, 1, 3])?, lse))
}

/// Backward of [`self_attention_fwd`]; returns `dqkv: [B, S, 3, H, Dh]`.
pub fn self_attention_bwd<B: Backend>(
    qkv: T<B>,
    o: T<B>,
    lse: T<B>,
    dout: T<B>,
    spec: &super::AttnSpec,
) -> Result<T<B>> {
    let s = B::shape(&qkv).to_vec();
    let mask = packed_mask::<B>(&qkv, spec)?;
    let (q, k, v) = unpack_qkv::<B>(qkv)?;
    let o = B::permute(o, &[0, 2, 1, 3])?;
    let dout = B::permute(dout, &[0, 2, 1, 3])?;
    let (dq, dk, dv) = attention_bwd_masked::<B>(q, k, v, o, lse, dout, spec.causal, spec.scale, mask)?;
    let one = [1, s[0], s[3], s[1], s[4]];
    let stacked = B::concat(vec![B::reshape(dq, &one)?, B::reshape(dk, &one)?, B::reshape(dv, &one)?], 0)?;
    B::permute(stacked, &[1, 3, 0, 2, 4])
}

/// Flat indices `i·V + t_i` of the target logits, validated against `V`.
fn target_positions<B: Backend>(targets: &B::Ids, vocab: usize) -> Result<Vec<u32>> {
    let t = B::ids_to_u32(targets.clone())?;
    t.iter()
        .enumerate()
        .map(|(i, &ti)| {
            if (ti as usize) < vocab {
                u32::try_from(i * vocab + ti as usize)
                    .map_err(|_| Error::InvalidArgument("cross_entropy: logits too large for u32 indexing".into()))
            } else {
                Err(Error::InvalidArgument(alloc::format!(
                    "cross_entropy: target id {ti} out of range for {vocab} classes"
                )))
            }
        })
        .collect()
}

/// Mean cross-entropy `L = (1/N) Σ_i (lse_i − x_{i,t_i})` of `logits: [N, V]` against
/// `targets: [N]`. Returns `(L: [], lse: [N, 1])`.
pub fn cross_entropy_fwd<B: Backend>(logits: T<B>, targets: B::Ids) -> Result<(T<B>, T<B>)> {
    let (n, v) = (B::shape(&logits)[0], B::shape(&logits)[1]);
    let pos = target_positions::<B>(&targets, v)?;
    let ids = B::ids_from_u32(&pos, &[n], &B::device(&logits))?;
    let lse = logsumexp::<B>(logits.clone())?;
    let picked = B::gather_rows(B::reshape(logits, &[n * v, 1])?, ids)?;
    let diff = bin::<B>(Binary::Sub, lse.clone(), picked)?;
    let loss = B::reduce(Reduce::Mean, B::reshape(diff, &[n])?, 0)?;
    Ok((B::reshape(loss, &[])?, lse))
}

/// Cross-entropy backward: `dlogits = dL/N · (softmax(logits) − onehot(t))`.
pub fn cross_entropy_bwd<B: Backend>(logits: T<B>, targets: B::Ids, lse: T<B>, dloss: T<B>) -> Result<T<B>> {
    let (n, v) = (B::shape(&logits)[0], B::shape(&logits)[1]);
    let pos = target_positions::<B>(&targets, v)?;
    let dev = B::device(&logits);
    let ids = B::ids_from_u32(&pos, &[n], &dev)?;
    let p = B::unary(Unary::Exp, bin::<B>(Binary::Sub, logits, lse)?)?;
    let onehot = B::reshape(B::scatter_add_rows(B::full(1.0, &[n, 1], &dev)?, ids, n * v)?, &[n, v])?;
    let g = bin::<B>(Binary::Sub, p, onehot)?;
    let scale = affine::<B>(dloss, 1.0 / n as f32, 0.0)?;
    bin::<B>(Binary::Mul, g, scale)
}

/// `y = x·wᵀ + b` for `x: [..., in]`, `w: [out, in]`, `b: [out]` (a linear layer).
pub fn linear<B: Backend>(x: T<B>, w: T<B>, b: Option<T<B>>) -> Result<T<B>> {
    let xs = B::shape(&x).to_vec();
    let (out_f, in_f) = (B::shape(&w)[0], B::shape(&w)[1]);
    let rows = crate::shape::numel(&xs) / in_f.max(1);
    let mut y = B::matmul(B::reshape(x, &[rows, in_f])?, w, false, true)?;
    if let Some(b) = b {
        y = bin::<B>(Binary::Add, y, b)?;
    }
    let mut ys = xs;
    *ys.last_mut().unwrap() = out_f;
    B::reshape(y, &ys)
}

/// `Σ x²` over every element, as a rank-0 tensor.
pub fn sum_squares<B: Backend>(x: T<B>) -> Result<T<B>> {
    let n = crate::shape::numel(B::shape(&x));
    let flat = B::reshape(B::unary(Unary::Square, x)?, &[n])?;
    B::reshape(B::reduce(Reduce::Sum, flat, 0)?, &[])
}

/// AdamW (decoupled weight decay, PyTorch's update order), gradient first scaled by `grad_scale`:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p·(1 − lr·λ) − (lr/bc₁)·m / (√v/√bc₂ + ε)` with `bcᵢ = 1 − βᵢᵗ`.
pub fn adamw_step<B: Backend>(p: T<B>, g: T<B>, m: T<B>, v: T<B>, h: &super::AdamWStep) -> Result<(T<B>, T<B>, T<B>)> {
    let g = if h.grad_scale != 1.0 { affine::<B>(g, h.grad_scale, 0.0)? } else { g };
    let m = bin::<B>(Binary::Add, affine::<B>(m, h.beta1, 0.0)?, affine::<B>(g.clone(), 1.0 - h.beta1, 0.0)?)?;
    let v = bin::<B>(
        Binary::Add,
        affine::<B>(v, h.beta2, 0.0)?,
        affine::<B>(B::unary(Unary::Square, g)?, 1.0 - h.beta2, 0.0)?,
    )?;
    let denom = affine::<B>(B::unary(Unary::Sqrt, v.clone())?, h.inv_sqrt_bc2, h.eps)?;
    let upd = affine::<B>(bin::<B>(Binary::Div, m.clone(), denom)?, -h.step_size, 0.0)?;
    let p = bin::<B>(Binary::Add, affine::<B>(p, h.decay, 0.0)?, upd)?;
    Ok((p, m, v))
}
