//! The presynaptic release op: `protocell_core::synapse::scan` per attention row, rows in
//! parallel (each row is a sequential scan over its queries).
use crate::storage::{alloc, alloc_zeroed};
use crate::CpuTensor;
use protocell_core::error::{Error, Result};
use protocell_core::synapse::{bwd_row, scalar::Kinetics, scan, snapshot_len, PresynSpec};
use rayon::prelude::*;

/// Forward: `(e, mask, state)`.
pub(crate) fn forward(
    scores: &CpuTensor,
    state0: &CpuTensor,
    spec: &PresynSpec,
) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
    Ok(run(scores, state0, spec, false)?.0)
}

/// Forward that also keeps the chunk-start states of the causal scan for the backward.
#[allow(clippy::type_complexity)]
pub(crate) fn forward_saving(
    scores: &CpuTensor,
    state0: &CpuTensor,
    spec: &PresynSpec,
) -> Result<((CpuTensor, CpuTensor, CpuTensor), Option<CpuTensor>)> {
    run(scores, state0, spec, true)
}

#[allow(clippy::type_complexity)]
fn run(
    scores: &CpuTensor,
    state0: &CpuTensor,
    spec: &PresynSpec,
    save: bool,
) -> Result<((CpuTensor, CpuTensor, CpuTensor), Option<CpuTensor>)> {
    let (r, tq, tk) = spec.check(&scores.shape, &state0.shape)?;
    let w = spec.width();
    let row = spec.row(tq, tk);
    let kin = Kinetics::<f32>::new(&spec.cfg);
    let p = tk - tq;
    let (sc, s0) = (scores.data(), state0.data());
    let mut e = alloc_zeroed(r * tq * tk);
    let mut mask = alloc_zeroed(r * tq * tk);
    let mut state = alloc(r * tk * w);
    let sn = if save { snapshot_len(spec, tq, tk) } else { 0 };
    let mut snaps = alloc(r * sn);
    let n = tq * tk;
    if n > 0 && tk * w > 0 {
        let body = |i: usize, e: &mut [f32], m: &mut [f32], s: &mut [f32], snap: Option<&mut [f32]>| {
            spec.fill_start_state(&s0[i * p * w..(i + 1) * p * w], s);
            let st = spec.stochastic.as_ref();
            scan::forward(&row, &kin, st, (i * tq) as u64, &sc[i * n..(i + 1) * n], s, e, m, snap);
        };
        let rows = e.par_chunks_mut(n).zip(mask.par_chunks_mut(n)).zip(state.par_chunks_mut(tk * w));
        if sn > 0 {
            rows.zip(snaps.par_chunks_mut(sn))
                .enumerate()
                .for_each(|(i, (((e, m), s), snap))| body(i, e, m, s, Some(snap)));
        } else {
            rows.enumerate().for_each(|(i, ((e, m), s))| body(i, e, m, s, None));
        }
    }
    let out = (
        CpuTensor::new(e, vec![r, tq, tk]),
        CpuTensor::new(mask, vec![r, tq, tk]),
        CpuTensor::new(state, vec![r, tk, w]),
    );
    let saved = (sn > 0 && n > 0 && tk * w > 0).then(|| CpuTensor::new(snaps, vec![r, sn]));
    Ok((out, saved))
}

/// Backward: `∂L/∂scores`.
pub(crate) fn backward(
    scores: &CpuTensor,
    state0: &CpuTensor,
    saved: Option<&CpuTensor>,
    spec: &PresynSpec,
    de: &CpuTensor,
) -> Result<CpuTensor> {
    let (r, tq, tk) = spec.check(&scores.shape, &state0.shape)?;
    if de.shape != [r, tq, tk] {
        return Err(Error::InvalidArgument(format!(
            "presyn_bwd: gradient {:?} does not match the scores [{r}, {tq}, {tk}]",
            de.shape
        )));
    }
    let mut out = alloc_zeroed(r * tq * tk);
    let n = tq * tk;
    if n > 0 {
        let (sc, s0, g) = (scores.data(), state0.data(), de.data());
        let sn = snapshot_len(spec, tq, tk);
        // the forward's chunk-start states when they fit this call, else recomputed
        let saved = saved.filter(|s| sn > 0 && s.shape == [r, sn]).map(|s| s.data());
        out.par_chunks_mut(n).enumerate().for_each(|(i, o)| {
            let snap = saved.map(|s| &s[i * sn..(i + 1) * sn]);
            bwd_row(spec, i, tq, tk, sc, s0, snap, g, o)
        });
    }
    Ok(CpuTensor::new(out, vec![r, tq, tk]))
}
