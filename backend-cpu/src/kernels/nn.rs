//! Fused row kernels: softmax, LayerNorm/RMSNorm, cross-entropy, AdamW.
use super::{dot_lanes, max_ignoring_nan, par_rows, sum_lanes, CHUNK};
use crate::storage::{alloc, alloc_zeroed};
use crate::{CpuIds, CpuTensor};
use protocell_core::backend::AdamWStep;
use protocell_core::error::{Error, Result};
use protocell_core::math;
use protocell_core::shape;
use rayon::prelude::*;

simd! {
    /// In-place softmax of `row[..valid]` (entries past `valid` become 0); returns
    /// `logsumexp(row[..valid]) = max + ln Σ e^{x−max}`.
    pub(crate) fn softmax_row(row: &mut [f32], valid: usize) -> f32 {
        let (live, dead) = row.split_at_mut(valid);
        dead.fill(0.0);
        let mx = max_ignoring_nan(live);
        for v in live.iter_mut() {
            *v = math::exp(*v - mx);
        }
        let s = sum_lanes(live);
        let inv = 1.0 / s;
        for v in live.iter_mut() {
            *v *= inv;
        }
        mx + math::ln(s)
    }
}

pub(crate) fn softmax(x: CpuTensor) -> CpuTensor {
    let d = *x.shape.last().unwrap_or(&1);
    let (mut data, shape) = x.into_parts();
    par_rows(&mut data, d, |_, rows| {
        for r in rows.chunks_mut(d) {
            softmax_row(r, d);
        }
    });
    CpuTensor::new(data, shape)
}

simd! {
    fn softmax_grad_row(y: &[f32], dy: &mut [f32]) {
        let dot = dot_lanes(y, dy);
        for (d, &yv) in dy.iter_mut().zip(y) {
            *d = yv * (*d - dot);
        }
    }
}

pub(crate) fn softmax_grad(y: &CpuTensor, dy: CpuTensor) -> CpuTensor {
    let d = *y.shape.last().unwrap_or(&1);
    let (mut g, shape) = dy.into_parts();
    let yd = y.data();
    par_rows(&mut g, d, |r0, rows| {
        for (k, r) in rows.chunks_mut(d).enumerate() {
            softmax_grad_row(&yd[(r0 + k) * d..(r0 + k + 1) * d], r);
        }
    });
    CpuTensor::new(g, shape)
}

fn stat_shape(x: &[usize]) -> Vec<usize> {
    let mut s = x.to_vec();
    if let Some(l) = s.last_mut() {
        *l = 1;
    }
    s
}

simd! {
    /// LayerNorm (`beta = Some`) or RMSNorm (`beta = None`) forward over the last axis.
    /// Returns `(y, mean or None, rstd)`; statistics have shape `[..., 1]`.
    fn norm_row(x: &[f32], g: &[f32], b: Option<&[f32]>, eps: f32, y: &mut [f32]) -> (f32, f32) {
        let d = x.len() as f32;
        match b {
            Some(b) => {
                let mean = sum_lanes(x) / d;
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = v - mean;
                }
                let var = dot_lanes(y, y) / d;
                let rstd = 1.0 / (var + eps).sqrt();
                for ((o, &gv), &bv) in y.iter_mut().zip(g).zip(b) {
                    *o = *o * rstd * gv + bv;
                }
                (mean, rstd)
            }
            None => {
                let ms = dot_lanes(x, x) / d;
                let rstd = 1.0 / (ms + eps).sqrt();
                for ((o, &v), &gv) in y.iter_mut().zip(x).zip(g) {
                    *o = v * rstd * gv;
                }
                (0.0, rstd)
            }
        }
    }
}

pub(crate) fn layer_norm_fwd(
    x: &CpuTensor,
    gamma: &CpuTensor,
    beta: Option<&CpuTensor>,
    eps: f32,
) -> (CpuTensor, CpuTensor, CpuTensor) {
    let d = *x.shape.last().unwrap();
    let rows = shape::numel(&x.shape) / d.max(1);
    let mut y = alloc(rows * d);
    let mut mean = alloc(rows);
    let mut rstd = alloc(rows);
    let (xd, gd, bd) = (x.data(), gamma.data(), beta.map(|b| b.data()));
    let rows_per_task = (CHUNK / d.max(1)).max(1);
    y.par_chunks_mut(rows_per_task * d)
        .zip(mean.par_chunks_mut(rows_per_task))
        .zip(rstd.par_chunks_mut(rows_per_task))
        .enumerate()
        .for_each(|(t, ((yc, mc), rc))| {
            let r0 = t * rows_per_task;
            for (k, yr) in yc.chunks_mut(d).enumerate() {
                let xr = &xd[(r0 + k) * d..(r0 + k + 1) * d];
                let (m, r) = norm_row(xr, gd, bd, eps, yr);
                mc[k] = m;
                rc[k] = r;
            }
        });
    let ss = stat_shape(&x.shape);
    (CpuTensor::new(y, x.shape.clone()), CpuTensor::new(mean, ss.clone()), CpuTensor::new(rstd, ss))
}

/// Rows per partial-sum group of the parameter gradients (fixed, so sums are thread-count independent).
const GROUP_ROWS: usize = 64;

simd! {
    #[allow(clippy::too_many_arguments)]
    fn norm_bwd_row(
        x: &[f32],
        g: &[f32],
        mean: Option<f32>,
        rstd: f32,
        dy: &[f32],
        dx: &mut [f32],
        dg: &mut [f32],
        db: Option<&mut [f32]>,
    ) {
        let d = x.len() as f32;
        let m = mean.unwrap_or(0.0);
        // dx temporarily holds x̂
        for (o, &v) in dx.iter_mut().zip(x) {
            *o = (v - m) * rstd;
        }
        let (mut sg, mut sgx) = (0.0f32, 0.0f32);
        for ((&xh, &gv), &dyv) in dx.iter().zip(g).zip(dy) {
            let gg = dyv * gv;
            sg += gg;
            sgx += gg * xh;
        }
        for ((a, &xh), &dyv) in dg.iter_mut().zip(dx.iter()).zip(dy) {
            *a += dyv * xh;
        }
        if let Some(db) = db {
            for (a, &dyv) in db.iter_mut().zip(dy) {
                *a += dyv;
            }
        }
        let mg = if mean.is_some() { sg / d } else { 0.0 };
        let mgx = sgx / d;
        for ((o, &gv), &dyv) in dx.iter_mut().zip(g).zip(dy) {
            let xh = *o;
            *o = rstd * (dyv * gv - mg - xh * mgx);
        }
    }
}

/// Backward of [`layer_norm_fwd`]; returns `(dx, dgamma, dbeta)` (`dbeta` for LayerNorm only).
pub(crate) fn layer_norm_bwd(
    x: &CpuTensor,
    gamma: &CpuTensor,
    mean: Option<&CpuTensor>,
    rstd: &CpuTensor,
    dy: &CpuTensor,
) -> (CpuTensor, CpuTensor, Option<CpuTensor>) {
    let d = *x.shape.last().unwrap();
    let rows = shape::numel(&x.shape) / d.max(1);
    let groups = rows.div_ceil(GROUP_ROWS).max(1);
    let has_b = mean.is_some();
    let mut dx = alloc(rows * d);
    let mut pg = alloc_zeroed(groups * d);
    let mut pb = alloc_zeroed(if has_b { groups * d } else { 0 });
    let (xd, gd, rd, dyd) = (x.data(), gamma.data(), rstd.data(), dy.data());
    let md = mean.map(|m| m.data());
    let run = |grp: usize, dxc: &mut [f32], pgc: &mut [f32], pbc: Option<&mut [f32]>| {
        let mut pbc = pbc;
        for (k, dxr) in dxc.chunks_mut(d).enumerate() {
            let r = grp * GROUP_ROWS + k;
            norm_bwd_row(
                &xd[r * d..(r + 1) * d],
                gd,
                md.map(|m| m[r]),
                rd[r],
                &dyd[r * d..(r + 1) * d],
                dxr,
                pgc,
                pbc.as_deref_mut(),
            );
        }
    };
    if has_b {
        dx.par_chunks_mut(GROUP_ROWS * d)
            .zip(pg.par_chunks_mut(d))
            .zip(pb.par_chunks_mut(d))
            .enumerate()
            .for_each(|(grp, ((dxc, pgc), pbc))| run(grp, dxc, pgc, Some(pbc)));
    } else {
        dx.par_chunks_mut(GROUP_ROWS * d)
            .zip(pg.par_chunks_mut(d))
            .enumerate()
            .for_each(|(grp, (dxc, pgc))| run(grp, dxc, pgc, None));
    }
    let fold = |p: &[f32]| -> Vec<f32> {
        let mut acc = vec![0.0f32; d];
        for c in p.chunks(d) {
            acc.iter_mut().zip(c).for_each(|(a, &v)| *a += v);
        }
        acc
    };
    let dgamma = CpuTensor::new(fold(&pg), vec![d]);
    let dbeta = has_b.then(|| CpuTensor::new(fold(&pb), vec![d]));
    (CpuTensor::new(dx, x.shape.clone()), dgamma, dbeta)
}

fn check_targets(t: &[u32], v: usize) -> Result<()> {
    if let Some(&bad) = t.iter().find(|&&i| i as usize >= v) {
        return Err(Error::InvalidArgument(format!("cross_entropy: target id {bad} out of range for {v} classes")));
    }
    Ok(())
}

simd! {
    /// Row logsumexp (no write-back).
    fn lse_row(x: &[f32]) -> f32 {
        let mx = max_ignoring_nan(x);
        let mut acc = [0.0f32; 16];
        let chunks = x.chunks_exact(16);
        let rem = chunks.remainder();
        for c in chunks {
            for i in 0..16 {
                acc[i] += math::exp(c[i] - mx);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for &r in rem {
            s += math::exp(r - mx);
        }
        mx + math::ln(s)
    }
}

pub(crate) fn cross_entropy_fwd(logits: &CpuTensor, targets: &CpuIds) -> Result<(CpuTensor, CpuTensor)> {
    let (n, v) = (logits.shape[0], logits.shape[1]);
    check_targets(&targets.data, v)?;
    let x = logits.data();
    let lse: Vec<f32> = (0..n).into_par_iter().with_min_len(64).map(|i| lse_row(&x[i * v..(i + 1) * v])).collect();
    let mut total = 0.0f64;
    for (i, &l) in lse.iter().enumerate() {
        total += (l - x[i * v + targets.data[i] as usize]) as f64;
    }
    let loss = (total / n as f64) as f32;
    Ok((CpuTensor::new(vec![loss], vec![]), CpuTensor::new(lse, vec![n, 1])))
}

simd! {
    fn ce_grad_row(row: &mut [f32], lse: f32, scale: f32) {
        for v in row.iter_mut() {
            *v = math::exp(*v - lse) * scale;
        }
    }
}

pub(crate) fn cross_entropy_bwd(
    logits: CpuTensor,
    targets: &CpuIds,
    lse: &CpuTensor,
    dloss: &CpuTensor,
) -> Result<CpuTensor> {
    let (n, v) = (logits.shape[0], logits.shape[1]);
    check_targets(&targets.data, v)?;
    let scale = dloss.data()[0] / n as f32;
    let (mut g, shape) = logits.into_parts();
    let l = lse.data();
    par_rows(&mut g, v, |r0, rows| {
        for (k, row) in rows.chunks_mut(v).enumerate() {
            let i = r0 + k;
            ce_grad_row(row, l[i], scale);
            row[targets.data[i] as usize] -= scale;
        }
    });
    Ok(CpuTensor::new(g, shape))
}

simd! {
    #[allow(clippy::too_many_arguments)]
    fn adamw_chunk(p: &[f32], g: &[f32], m: &[f32], v: &[f32], po: &mut [f32], mo: &mut [f32], vo: &mut [f32], h: &AdamWStep) {
        let (b1, b2) = (h.beta1, h.beta2);
        let (c1, c2) = (1.0 - b1, 1.0 - b2);
        let ins = p.iter().zip(g).zip(m).zip(v);
        let outs = po.iter_mut().zip(mo.iter_mut()).zip(vo.iter_mut());
        for ((((&pv, &gr), &m0), &v0), ((pw, mw), vw)) in ins.zip(outs) {
            let gv = gr * h.grad_scale;
            let mv = b1 * m0 + c1 * gv;
            let vv = b2 * v0 + c2 * gv * gv;
            let denom = vv.sqrt() * h.inv_sqrt_bc2 + h.eps;
            *mw = mv;
            *vw = vv;
            *pw = pv * h.decay - h.step_size * (mv / denom);
        }
    }
}

/// One AdamW update into new buffers (the inputs stay as they were, so an optimiser can
/// compute every update of a step before it commits any).
pub(crate) fn adamw(
    p: CpuTensor,
    g: &CpuTensor,
    m: CpuTensor,
    v: CpuTensor,
    h: &AdamWStep,
) -> (CpuTensor, CpuTensor, CpuTensor) {
    let n = p.data().len();
    let (mut po, mut mo, mut vo) = (alloc(n), alloc(n), alloc(n));
    let (pd, gd, md, vd) = (p.data(), g.data(), m.data(), v.data());
    po.par_chunks_mut(CHUNK).zip(mo.par_chunks_mut(CHUNK)).zip(vo.par_chunks_mut(CHUNK)).enumerate().for_each(
        |(c, ((pc, mc), vc))| {
            let r = c * CHUNK..(c * CHUNK + pc.len());
            adamw_chunk(&pd[r.clone()], &gd[r.clone()], &md[r.clone()], &vd[r], pc, mc, vc, h)
        },
    );
    let shape = p.shape.clone();
    (CpuTensor::new(po, shape.clone()), CpuTensor::new(mo, shape.clone()), CpuTensor::new(vo, shape))
}

/// Elements per partial sum of [`sum_squares`] (fixed: the result does not depend on threads).
const SSQ_CHUNK: usize = 1 << 14;

simd! {
    fn ssq_chunk(x: &[f32]) -> f64 {
        dot_lanes(x, x) as f64
    }
}

/// `Σ x²`: f32 partial sums over fixed chunks, combined in order in f64.
pub(crate) fn sum_squares(x: &CpuTensor) -> CpuTensor {
    let parts: Vec<f64> = x.data().par_chunks(SSQ_CHUNK).map(ssq_chunk).collect();
    let total: f64 = parts.iter().sum();
    CpuTensor::new(vec![total as f32], vec![])
}
