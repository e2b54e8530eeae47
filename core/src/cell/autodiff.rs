//! The cell op family on the autodiff backend: the colony update forwards to `B`'s fused
//! kernel and records one two-output node whose backward is `B`'s fused VJP.
use super::{CellOps, ColonyGrads, ColonyOut, ColonySpec};
use crate::autodiff::{record_multi, AdTensor, Autodiff, Needs};
use crate::backend::Backend;
use crate::error::Result;
use alloc::vec;
use alloc::vec::Vec;

impl<B: Backend + CellOps<B>> CellOps<Autodiff<B>> for Autodiff<B> {
    fn colony_fwd(
        h0: AdTensor<B>,
        w0: AdTensor<B>,
        stim: AdTensor<B>,
        coeffs: AdTensor<B>,
        spec: &ColonySpec,
    ) -> Result<ColonyOut<Autodiff<B>>> {
        let (h, w, alive) =
            B::colony_fwd(h0.primal.clone(), w0.primal.clone(), stim.primal.clone(), coeffs.primal.clone(), spec)?;
        let (hs, ws) = (B::shape(&h).to_vec(), B::shape(&w).to_vec());
        let saved = (h0.primal.clone(), w0.primal.clone(), stim.primal.clone(), coeffs.primal.clone(), *spec);
        let mut out =
            record_multi(vec![h, w], &[&h0, &w0, &stim, &coeffs], move |dys: Vec<Option<B::Tensor>>, needs: &Needs| {
                let (h0, w0, stim, coeffs, spec) = saved;
                let dev = B::device(&h0);
                let mut dys = dys.into_iter();
                // an output no gradient reached contributes zeros
                let dh = match dys.next().flatten() {
                    Some(g) => g,
                    None => B::full(0.0, &hs, &dev)?,
                };
                let dw = match dys.next().flatten() {
                    Some(g) => g,
                    None => B::full(0.0, &ws, &dev)?,
                };
                let (a, b, c, d) = B::colony_bwd(h0, w0, stim, coeffs, &spec, dh, dw)?;
                Ok(vec![needs[0].then_some(a), needs[1].then_some(b), needs[2].then_some(c), needs[3].then_some(d)])
            });
        let w = out.pop().expect("two outputs");
        let h = out.pop().expect("two outputs");
        Ok((h, w, AdTensor::constant(alive)))
    }

    /// Forwards to `B`'s kernel; the result is a constant (no second-order gradients).
    fn colony_bwd(
        h0: AdTensor<B>,
        w0: AdTensor<B>,
        stim: AdTensor<B>,
        coeffs: AdTensor<B>,
        spec: &ColonySpec,
        dh: AdTensor<B>,
        dw: AdTensor<B>,
    ) -> Result<ColonyGrads<Autodiff<B>>> {
        let (a, b, c, d) = B::colony_bwd(h0.primal, w0.primal, stim.primal, coeffs.primal, spec, dh.primal, dw.primal)?;
        Ok((AdTensor::constant(a), AdTensor::constant(b), AdTensor::constant(c), AdTensor::constant(d)))
    }
}
