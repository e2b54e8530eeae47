//! The presynaptic release op: `protocell_core::synapse::scan` per attention row, rows in
//! parallel (each row is a sequential scan over its queries).
use crate::storage::{alloc, alloc_zeroed};
use crate::CpuTensor;
use protocell_core::error::{Error, Result};
use protocell_core::synapse::{bwd_row, scalar::Kinetics, scan, PresynSpec};
use rayon::prelude::*;

/// Forward: `(e, mask, state)`.
pub(crate) fn forward(
    scores: &CpuTensor,
    state0: &CpuTensor,
    spec: &PresynSpec,
) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
    let (r, tq, tk) = spec.check(&scores.shape, &state0.shape)?;
    let w = spec.width();
    let row = spec.row(tq, tk);
    let kin = Kinetics::<f32>::new(&spec.cfg);
    let p = tk - tq;
    let (sc, s0) = (scores.data(), state0.data());
    let mut e = alloc_zeroed(r * tq * tk);
    let mut mask = alloc_zeroed(r * tq * tk);
    let mut state = alloc(r * tk * w);
    let n = tq * tk;
    if n > 0 && tk * w > 0 {
        e.par_chunks_mut(n).zip(mask.par_chunks_mut(n)).zip(state.par_chunks_mut(tk * w)).enumerate().for_each(
            |(i, ((e, m), s))| {
                spec.fill_start_state(&s0[i * p * w..(i + 1) * p * w], s);
                let st = spec.stochastic.as_ref();
                scan::forward(&row, &kin, st, (i * tq) as u64, &sc[i * n..(i + 1) * n], s, e, m, None);
            },
        );
    }
    Ok((
        CpuTensor::new(e, vec![r, tq, tk]),
        CpuTensor::new(mask, vec![r, tq, tk]),
        CpuTensor::new(state, vec![r, tk, w]),
    ))
}

/// Backward: `∂L/∂scores`.
pub(crate) fn backward(scores: &CpuTensor, state0: &CpuTensor, spec: &PresynSpec, de: &CpuTensor) -> Result<CpuTensor> {
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
        out.par_chunks_mut(n).enumerate().for_each(|(i, o)| bwd_row(spec, i, tq, tk, sc, s0, g, o));
    }
    Ok(CpuTensor::new(out, vec![r, tq, tk]))
}
