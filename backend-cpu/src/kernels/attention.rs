//! Fused scaled dot-product attention on the CPU.
//!
//! One engine computes one (batch, head) slice given row strides, so the same code serves
//! contiguous `[..., S, D]` tensors and the packed self-attention layout `[B, S, 3, H, Dh]`
//! straight out of the qkv projection (no permute or split copies). Queries are processed
//! in blocks of [`BLOCK`] rows; with a causal mask a block only multiplies against the keys
//! it can see, which skips most of the masked upper triangle. The forward pass saves only
//! the row log-sum-exp (`O(S)` memory, flash-attention style); the backward pass
//! recomputes the probabilities block by block from it.
use super::dot_lanes;
use super::matmul::gemm_strided;
use super::nn::softmax_row;
use crate::storage::{alloc, alloc_zeroed};
use crate::CpuTensor;
use gemm::Parallelism::None as Serial;
use protocell_core::backend::AttnSpec;
use protocell_core::math;
use protocell_core::rng::{Dist, RngKey};
use protocell_core::shape;
use rayon::prelude::*;

/// Query rows per block.
const BLOCK: usize = 64;

/// Dropout of one head: the key, the flat index of the head's element `(0, 0)` in the
/// `[B, H, Sq, Sk]` mask order, and the keep probability.
#[derive(Clone, Copy)]
struct HeadDropout {
    key: RngKey,
    base: u64,
    keep: f32,
}

impl HeadDropout {
    /// Mask values of query row `i` for keys `0..out.len()`: `1/keep` where element
    /// `base + i·Sk + j` of the stream is kept (`rng::sample(Bernoulli(keep))`), else 0.
    fn row(&self, i: usize, sk: usize, out: &mut [f32]) {
        super::random::fill_range(Dist::Bernoulli { p: self.keep }, &self.key, self.base + (i * sk) as u64, out);
        let inv = 1.0 / self.keep;
        out.iter_mut().for_each(|m| *m *= inv);
    }
}

/// Sizes of one attention problem.
#[derive(Clone, Copy)]
struct Dims {
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    scale: f32,
}

impl Dims {
    /// Keys visible to query row `i`: all of them, or `j ≤ i + Sk − Sq` when causal.
    #[inline]
    fn visible(&self, i: usize) -> usize {
        if self.causal {
            (i + self.sk - self.sq + 1).min(self.sk)
        } else {
            self.sk
        }
    }
}

/// A read-only row-major matrix view: data starting at row 0, and a row stride.
#[derive(Clone, Copy)]
struct View<'a> {
    x: &'a [f32],
    ld: usize,
}

impl<'a> View<'a> {
    fn rows(self, r0: usize) -> &'a [f32] {
        &self.x[r0 * self.ld..]
    }
    /// The `b`-th tight `rows × cols` block of a contiguous batch.
    fn block(x: &'a [f32], b: usize, rows: usize, cols: usize) -> Self {
        View { x: &x[b * rows * cols..(b + 1) * rows * cols], ld: cols }
    }
    /// Columns starting at `off`, rows `ld` apart.
    fn at(x: &'a [f32], off: usize, ld: usize) -> Self {
        View { x: &x[off..], ld }
    }
}

/// Forward of one head: `o = softmax(scale·q kᵀ + mask) v` into `o` (row stride `ldo`),
/// `lse[i]` = row log-sum-exp. `s` is scratch of `BLOCK·Sk`.
#[allow(clippy::too_many_arguments)]
fn head_forward(
    dm: &Dims,
    q: View,
    k: View,
    v: View,
    o: &mut [f32],
    ldo: usize,
    lse: &mut [f32],
    s: &mut [f32],
    drop: Option<HeadDropout>,
) {
    let mut mask = vec![0.0f32; if drop.is_some() { dm.sk } else { 0 }];
    for r0 in (0..dm.sq).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(dm.sq);
        let rb = r1 - r0;
        let kend = dm.visible(r1 - 1);
        let sb = &mut s[..rb * kend];
        gemm_strided(sb, kend, q.rows(r0), q.ld, k.x, k.ld, rb, kend, dm.d, false, true, false, dm.scale, Serial);
        for (i, row) in sb.chunks_mut(kend).enumerate() {
            lse[r0 + i] = softmax_row(row, dm.visible(r0 + i));
            if let Some(d) = &drop {
                d.row(r0 + i, dm.sk, &mut mask[..kend]);
                row.iter_mut().zip(&mask).for_each(|(p, m)| *p *= m);
            }
        }
        gemm_strided(&mut o[r0 * ldo..], ldo, sb, kend, v.x, v.ld, rb, dm.dv, kend, false, false, false, 1.0, Serial);
    }
}

simd! {
    /// `p = e^{s − lse}` on the visible prefix, 0 past it.
    fn probs_row(row: &mut [f32], lse: f32, valid: usize) {
        let (live, dead) = row.split_at_mut(valid);
        for v in live.iter_mut() {
            *v = math::exp(*v - lse);
        }
        dead.fill(0.0);
    }
}

simd! {
    /// `dp ← scale · p ⊙ (dp − δ)`.
    fn dscores_row(dp: &mut [f32], p: &[f32], delta: f32, scale: f32) {
        for (d, &pv) in dp.iter_mut().zip(p) {
            *d = scale * pv * (*d - delta);
        }
    }
}

/// Gradient outputs of one head: tight `[Sq, D]`, `[Sk, D]`, `[Sk, Dv]` buffers; `dk`, `dv`
/// must start zeroed (they accumulate over query blocks).
struct HeadGrads<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

/// Backward of one head from the saved `lse` (see [`head_forward`]). `p`, `dp`: scratch of
/// `BLOCK·Sk`; with dropout the mask is regenerated from its key (`dv = (p⊙m)ᵀ do`,
/// `dp ← m ⊙ (do vᵀ)`; `δ = rowsum(do ⊙ o)` is unchanged).
#[allow(clippy::too_many_arguments)]
fn head_backward(
    dm: &Dims,
    q: View,
    k: View,
    v: View,
    o: View,
    lse: &[f32],
    dout: View,
    g: HeadGrads,
    p: &mut [f32],
    dp: &mut [f32],
    drop: Option<HeadDropout>,
) {
    let mut masks = vec![0.0f32; if drop.is_some() { BLOCK * dm.sk } else { 0 }];
    let mut pm = vec![0.0f32; if drop.is_some() { BLOCK * dm.sk } else { 0 }];
    for r0 in (0..dm.sq).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(dm.sq);
        let rb = r1 - r0;
        let kend = dm.visible(r1 - 1);
        let pb = &mut p[..rb * kend];
        let dpb = &mut dp[..rb * kend];
        // p = exp(scale·q kᵀ − lse)
        gemm_strided(pb, kend, q.rows(r0), q.ld, k.x, k.ld, rb, kend, dm.d, false, true, false, dm.scale, Serial);
        for (i, row) in pb.chunks_mut(kend).enumerate() {
            probs_row(row, lse[r0 + i], dm.visible(r0 + i));
        }
        let mb = &mut masks[..if drop.is_some() { rb * kend } else { 0 }];
        let pdrop: &[f32] = if let Some(d) = &drop {
            let pmb = &mut pm[..rb * kend];
            for (i, (mrow, prow)) in mb.chunks_mut(kend).zip(pmb.chunks_mut(kend)).enumerate() {
                d.row(r0 + i, dm.sk, mrow);
                prow.iter_mut().zip(mrow.iter()).zip(&pb[i * kend..(i + 1) * kend]).for_each(|((o, m), p)| *o = m * p);
            }
            pmb
        } else {
            pb
        };
        // dv[0:kend] += (p⊙m)ᵀ do (keys a block cannot see keep their zeros)
        gemm_strided(g.dv, dm.dv, pdrop, kend, dout.rows(r0), dout.ld, kend, dm.dv, rb, true, false, true, 1.0, Serial);
        // dp = do vᵀ (⊙ m)
        gemm_strided(dpb, kend, dout.rows(r0), dout.ld, v.x, v.ld, rb, kend, dm.dv, false, true, false, 1.0, Serial);
        if drop.is_some() {
            dpb.iter_mut().zip(mb.iter()).for_each(|(d, m)| *d *= m);
        }
        // ds = scale · p ⊙ (dp − δ), δ_i = do_i · o_i
        for i in 0..rb {
            let gi = &dout.rows(r0 + i)[..dm.dv];
            let oi = &o.rows(r0 + i)[..dm.dv];
            let delta = dot_lanes(gi, oi);
            dscores_row(&mut dpb[i * kend..(i + 1) * kend], &pb[i * kend..(i + 1) * kend], delta, dm.scale);
        }
        // dq_blk = ds k, dk[0:kend] += dsᵀ q_blk
        gemm_strided(
            &mut g.dq[r0 * dm.d..],
            dm.d,
            dpb,
            kend,
            k.x,
            k.ld,
            rb,
            dm.d,
            kend,
            false,
            false,
            false,
            1.0,
            Serial,
        );
        gemm_strided(g.dk, dm.d, dpb, kend, q.rows(r0), q.ld, kend, dm.d, rb, true, false, true, 1.0, Serial);
    }
}

fn dims(q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, causal: bool, scale: f32) -> (usize, Dims) {
    let r = q.shape.len();
    let dm = Dims { sq: q.shape[r - 2], sk: k.shape[r - 2], d: q.shape[r - 1], dv: v.shape[r - 1], causal, scale };
    (shape::numel(&q.shape[..r - 2]), dm)
}

/// Contiguous `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`; returns
/// `(o: [..., Sq, Dv], lse: [..., Sq, 1])`.
pub(crate) fn forward(q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, causal: bool, scale: f32) -> (CpuTensor, CpuTensor) {
    let (bh, dm) = dims(q, k, v, causal, scale);
    let mut o = alloc(bh * dm.sq * dm.dv);
    let mut lse = alloc_zeroed(bh * dm.sq);
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    if dm.sq > 0 && dm.dv > 0 {
        o.par_chunks_mut(dm.sq * dm.dv).zip(lse.par_chunks_mut(dm.sq)).enumerate().for_each(|(b, (ob, lb))| {
            let mut s = vec![0.0f32; BLOCK * dm.sk];
            let (q, k, v) =
                (View::block(qd, b, dm.sq, dm.d), View::block(kd, b, dm.sk, dm.d), View::block(vd, b, dm.sk, dm.dv));
            head_forward(&dm, q, k, v, ob, dm.dv, lb, &mut s, None);
        });
    }
    let mut oshape = q.shape.clone();
    *oshape.last_mut().unwrap() = dm.dv;
    let mut lshape = q.shape.clone();
    *lshape.last_mut().unwrap() = 1;
    (CpuTensor::new(o, oshape), CpuTensor::new(lse, lshape))
}

/// Backward of [`forward`]; returns `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    o: &CpuTensor,
    lse: &CpuTensor,
    dout: &CpuTensor,
    causal: bool,
    scale: f32,
) -> (CpuTensor, CpuTensor, CpuTensor) {
    let (bh, dm) = dims(q, k, v, causal, scale);
    let work = bh > 0 && dm.sq > 0 && dm.sk > 0 && dm.d > 0 && dm.dv > 0;
    // dq is overwritten block by block; dk and dv accumulate
    let mut dq = if work { alloc(bh * dm.sq * dm.d) } else { alloc_zeroed(bh * dm.sq * dm.d) };
    let mut dk = alloc_zeroed(bh * dm.sk * dm.d);
    let mut dv = alloc_zeroed(bh * dm.sk * dm.dv);
    let (qd, kd, vd, od, ld, gd) = (q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data());
    if work {
        dq.par_chunks_mut(dm.sq * dm.d)
            .zip(dk.par_chunks_mut(dm.sk * dm.d))
            .zip(dv.par_chunks_mut(dm.sk * dm.dv))
            .enumerate()
            .for_each(|(b, ((dqb, dkb), dvb))| {
                let mut p = vec![0.0f32; BLOCK * dm.sk];
                let mut dp = vec![0.0f32; BLOCK * dm.sk];
                head_backward(
                    &dm,
                    View::block(qd, b, dm.sq, dm.d),
                    View::block(kd, b, dm.sk, dm.d),
                    View::block(vd, b, dm.sk, dm.dv),
                    View::block(od, b, dm.sq, dm.dv),
                    &ld[b * dm.sq..(b + 1) * dm.sq],
                    View::block(gd, b, dm.sq, dm.dv),
                    HeadGrads { dq: dqb, dk: dkb, dv: dvb },
                    &mut p,
                    &mut dp,
                    None,
                );
            });
    }
    (CpuTensor::new(dq, q.shape.clone()), CpuTensor::new(dk, k.shape.clone()), CpuTensor::new(dv, v.shape.clone()))
}

/// `(B, S, H, Dh)` of a packed `[B, S, 3, H, Dh]` tensor.
fn packed_dims(qkv: &CpuTensor) -> (usize, usize, usize, usize) {
    let s = &qkv.shape;
    (s[0], s[1], s[3], s[4])
}

/// Packed self-attention: `qkv: [B, S, 3, H, Dh]` → `(o: [B, S, H, Dh], lse: [B, H, S, 1])`.
/// One rayon task per batch element, heads in sequence inside it.
/// Dropout of head `(bi, hi)` of a packed call, if any.
fn head_dropout(spec: &AttnSpec, bi: usize, hi: usize, h: usize, s: usize) -> Option<HeadDropout> {
    spec.dropout.filter(|d| d.p > 0.0).map(|d| HeadDropout {
        key: d.key,
        base: ((bi * h + hi) * s * s) as u64,
        keep: 1.0 - d.p,
    })
}

pub(crate) fn packed_forward(qkv: &CpuTensor, spec: &AttnSpec) -> (CpuTensor, CpuTensor) {
    let (b, s, h, dh) = packed_dims(qkv);
    let dm = Dims { sq: s, sk: s, d: dh, dv: dh, causal: spec.causal, scale: spec.scale };
    let mut o = alloc(b * s * h * dh);
    let mut lse = alloc_zeroed(b * h * s);
    let x = qkv.data();
    let (ld_in, ld_out) = (3 * h * dh, h * dh);
    if s > 0 && h > 0 && dh > 0 {
        o.par_chunks_mut(s * h * dh).zip(lse.par_chunks_mut(h * s)).enumerate().for_each(|(bi, (ob, lb))| {
            let xb = &x[bi * s * ld_in..(bi + 1) * s * ld_in];
            let mut sc = vec![0.0f32; BLOCK * s];
            for hi in 0..h {
                let at = |part: usize| View::at(xb, part * h * dh + hi * dh, ld_in);
                head_forward(
                    &dm,
                    at(0),
                    at(1),
                    at(2),
                    &mut ob[hi * dh..],
                    ld_out,
                    &mut lb[hi * s..(hi + 1) * s],
                    &mut sc,
                    head_dropout(spec, bi, hi, h, s),
                );
            }
        });
    }
    (CpuTensor::new(o, vec![b, s, h, dh]), CpuTensor::new(lse, vec![b, h, s, 1]))
}

/// Backward of [`packed_forward`]: `dqkv: [B, S, 3, H, Dh]`.
pub(crate) fn packed_backward(
    qkv: &CpuTensor,
    o: &CpuTensor,
    lse: &CpuTensor,
    dout: &CpuTensor,
    spec: &AttnSpec,
) -> CpuTensor {
    let (b, s, h, dh) = packed_dims(qkv);
    let dm = Dims { sq: s, sk: s, d: dh, dv: dh, causal: spec.causal, scale: spec.scale };
    let mut dqkv = alloc(b * s * 3 * h * dh);
    let (x, od, ld, gd) = (qkv.data(), o.data(), lse.data(), dout.data());
    let (ld_in, ld_out) = (3 * h * dh, h * dh);
    if s > 0 && h > 0 && dh > 0 {
        dqkv.par_chunks_mut(s * ld_in).enumerate().for_each(|(bi, db)| {
            let xb = &x[bi * s * ld_in..(bi + 1) * s * ld_in];
            let (ob, gb) = (&od[bi * s * ld_out..(bi + 1) * s * ld_out], &gd[bi * s * ld_out..(bi + 1) * s * ld_out]);
            let mut p = vec![0.0f32; BLOCK * s];
            let mut dp = vec![0.0f32; BLOCK * s];
            // per-head gradients in tight scratch, then interleaved into the packed rows
            let mut gq = vec![0.0f32; s * dh];
            let mut gk = vec![0.0f32; s * dh];
            let mut gv = vec![0.0f32; s * dh];
            for hi in 0..h {
                let at = |part: usize| View::at(xb, part * h * dh + hi * dh, ld_in);
                gk.fill(0.0);
                gv.fill(0.0);
                head_backward(
                    &dm,
                    at(0),
                    at(1),
                    at(2),
                    View::at(ob, hi * dh, ld_out),
                    &ld[(bi * h + hi) * s..(bi * h + hi + 1) * s],
                    View::at(gb, hi * dh, ld_out),
                    HeadGrads { dq: &mut gq, dk: &mut gk, dv: &mut gv },
                    &mut p,
                    &mut dp,
                    head_dropout(spec, bi, hi, h, s),
                );
                for (part, g) in [&gq, &gk, &gv].into_iter().enumerate() {
                    for r in 0..s {
                        let at = r * ld_in + part * h * dh + hi * dh;
                        db[at..at + dh].copy_from_slice(&g[r * dh..(r + 1) * dh]);
                    }
                }
            }
        });
    }
    CpuTensor::new(dqkv, qkv.shape.clone())
}
