//! Fused colony kernels: every token's `K` inner steps in one pass over the scalar
//! functions of `protocell_core::cell::scalar`.
//!
//! Backward strategy: recompute. The forward stores nothing but its outputs; the backward
//! re-runs each token's `K` steps into a per-task trajectory buffer (`(K+1)·(4N + N²)`
//! floats, a few kilobytes) and walks it back. For the seed sizes (N = 6, K = 5) the
//! recomputation costs about one forward pass, far less than keeping `K + 1` copies of
//! every token's state alive between the forward and the backward pass of a step.
use crate::storage::{alloc, alloc_zeroed};
use crate::CpuTensor;
use protocell_core::cell::scalar::{self, TokenGrads, Trajectory};
use protocell_core::cell::{ColonySpec, N_COEFFS};
use rayon::prelude::*;

/// Tokens per parallel task (fixed: the coefficient-gradient sums do not depend on threads).
const TOKENS_PER_TASK: usize = 32;

fn dims(h0: &CpuTensor) -> (usize, usize) {
    (h0.shape[0], h0.shape[1])
}

pub(crate) fn forward(
    h0: &CpuTensor,
    w0: &CpuTensor,
    stim: &CpuTensor,
    coeffs: &CpuTensor,
    spec: &ColonySpec,
) -> (CpuTensor, CpuTensor, CpuTensor) {
    let (t, n) = dims(h0);
    let mut h = alloc(t * 4 * n);
    let mut w = alloc(t * n * n);
    let mut alive = alloc(t * n);
    let (hd, wd, sd, c) = (h0.data(), w0.data(), stim.data(), coeffs.data());
    let tk = TOKENS_PER_TASK;
    if t > 0 && n > 0 {
        h.par_chunks_mut(tk * 4 * n)
            .zip(w.par_chunks_mut(tk * n * n))
            .zip(alive.par_chunks_mut(tk * n))
            .enumerate()
            .for_each(|(ci, ((hc, wc), ac))| {
                let mut traj = Trajectory::<f32>::new(n, spec.steps);
                for (j, ((ho, wo), ao)) in
                    hc.chunks_mut(4 * n).zip(wc.chunks_mut(n * n)).zip(ac.chunks_mut(n)).enumerate()
                {
                    let tok = ci * tk + j;
                    scalar::forward(
                        spec,
                        c,
                        &sd[tok * n..(tok + 1) * n],
                        &hd[tok * 4 * n..(tok + 1) * 4 * n],
                        &wd[tok * n * n..(tok + 1) * n * n],
                        &mut traj,
                    );
                    ho.copy_from_slice(traj.h_final());
                    wo.copy_from_slice(traj.w_final());
                    ao.copy_from_slice(traj.alive_final());
                }
            });
    }
    (CpuTensor::new(h, vec![t, n, 4]), CpuTensor::new(w, vec![t, n, n]), CpuTensor::new(alive, vec![t, n]))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    h0: &CpuTensor,
    w0: &CpuTensor,
    stim: &CpuTensor,
    coeffs: &CpuTensor,
    spec: &ColonySpec,
    dh: &CpuTensor,
    dw: &CpuTensor,
) -> (CpuTensor, CpuTensor, CpuTensor, CpuTensor) {
    let (t, n) = dims(h0);
    let mut gh = alloc_zeroed(t * 4 * n);
    let mut gw = alloc_zeroed(t * n * n);
    let mut gs = alloc_zeroed(t * n);
    let tk = TOKENS_PER_TASK;
    let tasks = t.div_ceil(tk).max(1);
    let mut gc_parts = vec![0.0f64; tasks * N_COEFFS];
    let (hd, wd, sd, c, dhd, dwd) = (h0.data(), w0.data(), stim.data(), coeffs.data(), dh.data(), dw.data());
    if t > 0 && n > 0 {
        gh.par_chunks_mut(tk * 4 * n)
            .zip(gw.par_chunks_mut(tk * n * n))
            .zip(gs.par_chunks_mut(tk * n))
            .zip(gc_parts.par_chunks_mut(N_COEFFS))
            .enumerate()
            .for_each(|(ci, (((ghc, gwc), gsc), gcp))| {
                let mut traj = Trajectory::<f32>::new(n, spec.steps);
                let mut gc = [0.0f32; N_COEFFS];
                for (j, ((gho, gwo), gso)) in
                    ghc.chunks_mut(4 * n).zip(gwc.chunks_mut(n * n)).zip(gsc.chunks_mut(n)).enumerate()
                {
                    let tok = ci * tk + j;
                    let s = &sd[tok * n..(tok + 1) * n];
                    scalar::forward(
                        spec,
                        c,
                        s,
                        &hd[tok * 4 * n..(tok + 1) * 4 * n],
                        &wd[tok * n * n..(tok + 1) * n * n],
                        &mut traj,
                    );
                    gc.fill(0.0);
                    scalar::backward(
                        spec,
                        c,
                        s,
                        &mut traj,
                        &dhd[tok * 4 * n..(tok + 1) * 4 * n],
                        &dwd[tok * n * n..(tok + 1) * n * n],
                        TokenGrads { h0: gho, w0: gwo, stim: gso, coeffs: &mut gc },
                    );
                    for (p, &g) in gcp.iter_mut().zip(&gc) {
                        *p += g as f64;
                    }
                }
            });
    }
    let mut gc = [0.0f64; N_COEFFS];
    for part in gc_parts.chunks(N_COEFFS) {
        for (a, &b) in gc.iter_mut().zip(part) {
            *a += b;
        }
    }
    let gc: Vec<f32> = gc.iter().map(|&x| x as f32).collect();
    (
        CpuTensor::new(gh, vec![t, n, 4]),
        CpuTensor::new(gw, vec![t, n, n]),
        CpuTensor::new(gs, vec![t, n]),
        CpuTensor::new(gc, vec![N_COEFFS]),
    )
}
