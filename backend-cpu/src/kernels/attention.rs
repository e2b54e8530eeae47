//! Fused scaled dot-product attention on the CPU.
//!
//! Each (batch, head) slice is one rayon task. Queries are processed in blocks of
//! [`BLOCK`] rows; with a causal mask a block only multiplies against the keys it can see,
//! which skips most of the masked upper triangle. The forward pass saves only the row
//! log-sum-exp (`O(S)` memory, flash-attention style); the backward pass recomputes the
//! probabilities block by block from it.
use super::matmul::gemm_into;
use super::nn::softmax_row;
use super::dot_lanes;
use crate::CpuTensor;
use gemm::Parallelism;
use multiversion::multiversion;
use protocell_core::math;
use protocell_core::shape;
use rayon::prelude::*;

/// Query rows per block.
const BLOCK: usize = 64;

struct Dims {
    bh: usize,
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
}

fn dims(q: &CpuTensor, k: &CpuTensor, v: &CpuTensor) -> Dims {
    let r = q.shape.len();
    Dims {
        bh: shape::numel(&q.shape[..r - 2]),
        sq: q.shape[r - 2],
        sk: k.shape[r - 2],
        d: q.shape[r - 1],
        dv: v.shape[r - 1],
    }
}

/// Keys visible to query row `i`: all of them, or `j ≤ i + Sk − Sq` when causal.
#[inline]
fn visible(i: usize, dm: &Dims, causal: bool) -> usize {
    if causal {
        (i + dm.sk - dm.sq + 1).min(dm.sk)
    } else {
        dm.sk
    }
}

/// Returns `(o: [..., Sq, Dv], lse: [..., Sq, 1])`.
pub(crate) fn forward(q: &CpuTensor, k: &CpuTensor, v: &CpuTensor, causal: bool, scale: f32) -> (CpuTensor, CpuTensor) {
    let dm = dims(q, k, v);
    let mut o = vec![0.0f32; dm.bh * dm.sq * dm.dv];
    let mut lse = vec![0.0f32; dm.bh * dm.sq];
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    if dm.sq > 0 && dm.dv > 0 {
        o.par_chunks_mut(dm.sq * dm.dv).zip(lse.par_chunks_mut(dm.sq)).enumerate().for_each(|(b, (ob, lb))| {
            let qb = &qd[b * dm.sq * dm.d..(b + 1) * dm.sq * dm.d];
            let kb = &kd[b * dm.sk * dm.d..(b + 1) * dm.sk * dm.d];
            let vb = &vd[b * dm.sk * dm.dv..(b + 1) * dm.sk * dm.dv];
            let mut s = vec![0.0f32; BLOCK * dm.sk];
            for r0 in (0..dm.sq).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(dm.sq);
                let rb = r1 - r0;
                let kend = visible(r1 - 1, &dm, causal);
                let sb = &mut s[..rb * kend];
                gemm_into(sb, &qb[r0 * dm.d..], kb, rb, kend, dm.d, false, true, false, scale, Parallelism::None);
                for (i, row) in sb.chunks_mut(kend).enumerate() {
                    lb[r0 + i] = softmax_row(row, visible(r0 + i, &dm, causal));
                }
                gemm_into(&mut ob[r0 * dm.dv..r1 * dm.dv], sb, vb, rb, dm.dv, kend, false, false, false, 1.0, Parallelism::None);
            }
        });
    }
    let mut oshape = q.shape.clone();
    *oshape.last_mut().unwrap() = dm.dv;
    let mut lshape = q.shape.clone();
    *lshape.last_mut().unwrap() = 1;
    (CpuTensor::new(o, oshape), CpuTensor::new(lse, lshape))
}

/// `p = e^{s − lse}` on the visible prefix, 0 past it.
#[multiversion(targets = "simd")]
fn probs_row(row: &mut [f32], lse: f32, valid: usize) {
    let (live, dead) = row.split_at_mut(valid);
    for v in live.iter_mut() {
        *v = math::exp(*v - lse);
    }
    dead.fill(0.0);
}

/// `dp ← scale · p ⊙ (dp − δ)`.
#[multiversion(targets = "simd")]
fn dscores_row(dp: &mut [f32], p: &[f32], delta: f32, scale: f32) {
    for (d, &pv) in dp.iter_mut().zip(p) {
        *d = scale * pv * (*d - delta);
    }
}

/// Returns `(dq, dk, dv)`.
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
    let dm = dims(q, k, v);
    let mut dq = vec![0.0f32; dm.bh * dm.sq * dm.d];
    let mut dk = vec![0.0f32; dm.bh * dm.sk * dm.d];
    let mut dvv = vec![0.0f32; dm.bh * dm.sk * dm.dv];
    let (qd, kd, vd, od, ld, gd) = (q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data());
    let work = dm.bh > 0 && dm.sq > 0 && dm.sk > 0 && dm.d > 0 && dm.dv > 0;
    if work {
        dq.par_chunks_mut(dm.sq * dm.d)
            .zip(dk.par_chunks_mut(dm.sk * dm.d))
            .zip(dvv.par_chunks_mut(dm.sk * dm.dv))
            .enumerate()
            .for_each(|(b, ((dqb, dkb), dvb))| {
                let qb = &qd[b * dm.sq * dm.d..(b + 1) * dm.sq * dm.d];
                let kb = &kd[b * dm.sk * dm.d..(b + 1) * dm.sk * dm.d];
                let vb = &vd[b * dm.sk * dm.dv..(b + 1) * dm.sk * dm.dv];
                let ob = &od[b * dm.sq * dm.dv..(b + 1) * dm.sq * dm.dv];
                let gb = &gd[b * dm.sq * dm.dv..(b + 1) * dm.sq * dm.dv];
                let lb = &ld[b * dm.sq..(b + 1) * dm.sq];
                let mut p = vec![0.0f32; BLOCK * dm.sk];
                let mut dp = vec![0.0f32; BLOCK * dm.sk];
                for r0 in (0..dm.sq).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(dm.sq);
                    let rb = r1 - r0;
                    let kend = visible(r1 - 1, &dm, causal);
                    let pb = &mut p[..rb * kend];
                    let dpb = &mut dp[..rb * kend];
                    let q_blk = &qb[r0 * dm.d..];
                    let g_blk = &gb[r0 * dm.dv..r1 * dm.dv];
                    // p = exp(scale·q kᵀ − lse)
                    gemm_into(pb, q_blk, kb, rb, kend, dm.d, false, true, false, scale, Parallelism::None);
                    for (i, row) in pb.chunks_mut(kend).enumerate() {
                        probs_row(row, lb[r0 + i], visible(r0 + i, &dm, causal));
                    }
                    // dv[0:kend] += pᵀ do (keys a block cannot see keep their zeros)
                    gemm_into(&mut dvb[..kend * dm.dv], pb, g_blk, kend, dm.dv, rb, true, false, true, 1.0, Parallelism::None);
                    // dp = do vᵀ
                    gemm_into(dpb, g_blk, vb, rb, kend, dm.dv, false, true, false, 1.0, Parallelism::None);
                    // ds = scale · p ⊙ (dp − δ), δ_i = do_i · o_i
                    for i in 0..rb {
                        let delta = dot_lanes(&g_blk[i * dm.dv..(i + 1) * dm.dv], &ob[(r0 + i) * dm.dv..(r0 + i + 1) * dm.dv]);
                        dscores_row(&mut dpb[i * kend..(i + 1) * kend], &pb[i * kend..(i + 1) * kend], delta, scale);
                    }
                    // dq_blk = ds k, dk[0:kend] += dsᵀ q_blk
                    gemm_into(&mut dqb[r0 * dm.d..r1 * dm.d], dpb, kb, rb, dm.d, kend, false, false, false, 1.0, Parallelism::None);
                    gemm_into(&mut dkb[..kend * dm.d], dpb, q_blk, kend, dm.d, rb, true, false, true, 1.0, Parallelism::None);
                }
            });
    }
    (
        CpuTensor::new(dq, q.shape.clone()),
        CpuTensor::new(dk, k.shape.clone()),
        CpuTensor::new(dvv, v.shape.clone()),
    )
}
