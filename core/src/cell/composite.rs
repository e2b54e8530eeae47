//! The colony update written with primitive tensor ops: the default of [`super::CellOps`]
//! and the oracle the fused kernels are tested against. Its backward pass is the autodiff
//! of its forward pass.
use super::{CellMode, ColonyGrads, ColonyOut, ColonySpec, N_COEFFS};
use crate::autodiff::Autodiff;
use crate::backend::{Backend, Unary};
use crate::error::{Error, Result};
use crate::shape_err;
use crate::tensor::Tensor;
use alloc::vec::Vec;

type T<B> = <B as Backend>::Tensor;

fn bound<B: Backend>(mode: CellMode, k: f32, x: &Tensor<B>) -> Result<Tensor<B>> {
    match mode {
        CellMode::Sound => {
            let a = x.mul_scalar(k)?.unary(Unary::Softplus)?;
            let b = x.add_scalar(-1.0)?.mul_scalar(k)?.unary(Unary::Softplus)?;
            a.sub(&b)?.mul_scalar(1.0 / k)
        }
        _ => x.clamp(0.0, 1.0),
    }
}

/// Checks the shapes of a colony call; returns `(T, N)`.
pub fn check_shapes<B: Backend>(h0: &T<B>, w0: &T<B>, stim: &T<B>, coeffs: &T<B>) -> Result<(usize, usize)> {
    let (hs, ws, ss, cs) = (B::shape(h0), B::shape(w0), B::shape(stim), B::shape(coeffs));
    if hs.len() != 3 || hs[2] != 4 {
        return Err(shape_err!("colony", "states must be [tokens, blocks, 4], got {hs:?}"));
    }
    let (t, n) = (hs[0], hs[1]);
    if ws != [t, n, n] || ss != [t, n] || cs != [N_COEFFS] {
        return Err(shape_err!(
            "colony",
            "mucus {ws:?}, stimulus {ss:?} and coefficients {cs:?} do not fit states {hs:?} (want [{t},{n},{n}], [{t},{n}], [{N_COEFFS}])"
        ));
    }
    Ok((t, n))
}

/// `K` inner steps with primitive ops; see [`super::scalar`] for the equations.
pub fn colony_fwd<B: Backend>(h0: T<B>, w0: T<B>, stim: T<B>, coeffs: T<B>, spec: &ColonySpec) -> Result<ColonyOut<B>> {
    spec.validate()?;
    let (t, n) = check_shapes::<B>(&h0, &w0, &stim, &coeffs)?;
    let dev = B::device(&h0);
    let c = Tensor::<B>::from_prim(coeffs);
    let coef = |i: usize| c.narrow(0, i, 1);
    let (a_e, a_p, a_g, a_l) = (coef(0)?, coef(1)?, coef(2)?, coef(3)?);
    let (b_p, b_g, b_l, w_g, w_d) = (coef(4)?, coef(5)?, coef(6)?, coef(7)?, coef(8)?);
    let dt = spec.dt;
    let s = Tensor::<B>::from_prim(stim).reshape(&[t, n, 1])?;
    let mut h = Tensor::<B>::from_prim(h0);
    let mut w = Tensor::<B>::from_prim(w0);
    let mut alive = Tensor::<B>::ones(&[t, n, 1], &dev)?;
    let mut life = Tensor::<B>::ones(&[t, n, 1], &dev)?;
    let offdiag: Vec<f32> = (0..n * n).map(|x| if x / n == x % n { 0.0 } else { 1.0 }).collect();
    let offdiag = Tensor::<B>::from_f32(&offdiag, &[n, n], &dev)?;
    for _ in 0..spec.steps {
        let den = w.sum(2)?.add_scalar(spec.row_eps)?;
        let nb = w.div(&den)?.matmul(&h)?;
        let ch = |x: &Tensor<B>, i: usize| x.narrow(2, i, 1);
        let (e, p, g, l) = (ch(&h, 0)?, ch(&h, 1)?, ch(&h, 2)?, ch(&h, 3)?);
        let (ne, np, ng, nl) = (ch(&nb, 0)?, ch(&nb, 1)?, ch(&nb, 2)?, ch(&nb, 3)?);
        // increments
        let de = a_e.mul(&s)?.sub(&p.mul_scalar(0.4)?)?.sub(&g.mul_scalar(0.2)?)?;
        let dp = a_p.mul(&s)?.add(&b_p.mul(&np.sub(&p)?)?)?.sub(&e.mul_scalar(0.2)?)?;
        let dg = a_g.mul(&e.mul(&p.affine(-1.0, 1.0)?)?)?.add(&b_g.mul(&ng.sub(&g)?)?)?.sub(&p.mul_scalar(0.3)?)?;
        let dl = a_l.mul(&ne.add(&ng)?.mul_scalar(0.5)?)?.add(&b_l.mul(&nl.sub(&l)?)?)?.sub(&p.mul_scalar(0.3)?)?;
        let u = Tensor::cat(
            &[
                e.add(&de.mul_scalar(dt)?)?,
                p.add(&dp.mul_scalar(dt)?)?,
                g.add(&dg.mul_scalar(dt)?)?,
                l.add(&dl.mul_scalar(dt)?)?,
            ],
            2,
        )?;
        let hraw = bound(spec.mode, spec.sharpness, &u)?;
        if let Some(pr) = spec.pruning {
            // normalised entropy of each block's state (a gate: the comparison carries no gradient)
            let q = hraw.relu()?.add_scalar(1e-6)?;
            let q = q.div(&q.sum(2)?)?;
            let ent = q.mul(&q.log()?)?.sum(2)?.mul_scalar(-1.0 / core::f32::consts::LN_2 / 2.0)?;
            life = life.sub(&ent.affine(-1.0, 1.0)?.mul_scalar(pr.rate)?)?;
            let thr = Tensor::<B>::scalar(pr.threshold, &dev)?;
            alive = alive.mul(&life.binary(crate::backend::Binary::Gt, &thr)?)?;
        }
        h = hraw.mul(&alive)?;
        let lp = ch(&h, 3)?;
        let lsum = lp.add(&lp.reshape(&[t, 1, n])?)?.mul_scalar(0.5)?;
        let growth = if spec.mode == CellMode::AsCoded {
            None
        } else {
            let diff = h.reshape(&[t, n, 1, 4])?.sub(&h.reshape(&[t, 1, n, 4])?)?;
            let d = diff.square()?.sum(3)?.reshape(&[t, n, n])?.add_scalar(super::scalar::DIST_DELTA as f32)?.sqrt()?;
            Some(w_g.mul(&lsum.mul(&d)?)?)
        };
        let mut inc = w_d.mul(&w)?.neg()?;
        if let Some(gr) = growth {
            inc = inc.add(&gr)?;
        }
        let v = w.add(&inc.mul_scalar(dt)?)?;
        let pair = alive.mul(&alive.reshape(&[t, 1, n])?)?;
        w = bound(spec.mode, spec.sharpness, &v)?.mul(&offdiag)?.mul(&pair)?;
    }
    Ok((h.into_prim(), w.into_prim(), alive.reshape(&[t, n])?.into_prim()))
}

/// VJP of [`colony_fwd`], by reverse-mode autodiff of the primitive composition.
#[allow(clippy::too_many_arguments)]
pub fn colony_bwd<B: Backend>(
    h0: T<B>,
    w0: T<B>,
    stim: T<B>,
    coeffs: T<B>,
    spec: &ColonySpec,
    dh: T<B>,
    dw: T<B>,
) -> Result<ColonyGrads<B>> {
    type A<B> = Autodiff<B>;
    let leaf = |x: T<B>| Tensor::<A<B>>::from_inner(Tensor::from_prim(x)).require_grad();
    let (h0, w0, stim, coeffs) = (leaf(h0), leaf(w0), leaf(stim), leaf(coeffs));
    let (h, w, _) =
        colony_fwd::<A<B>>(h0.prim().clone(), w0.prim().clone(), stim.prim().clone(), coeffs.prim().clone(), spec)?;
    let (h, w) = (Tensor::<A<B>>::from_prim(h), Tensor::<A<B>>::from_prim(w));
    let gh = Tensor::<A<B>>::from_inner(Tensor::from_prim(dh));
    let gw = Tensor::<A<B>>::from_inner(Tensor::from_prim(dw));
    let loss = h.mul(&gh)?.sum_all()?.add(&w.mul(&gw)?.sum_all()?)?;
    let grads = loss.backward()?;
    let get = |x: &Tensor<A<B>>| -> Result<T<B>> {
        match grads.get(x) {
            Some(g) => Ok(g.into_prim()),
            None => Ok(Tensor::<B>::zeros(x.shape(), &x.inner().device())?.into_prim()),
        }
    };
    let out = (get(&h0)?, get(&w0)?, get(&stim)?, get(&coeffs)?);
    if B::shape(&out.3) != [N_COEFFS] {
        return Err(Error::Backend("colony gradient of the coefficients has the wrong shape".into()));
    }
    Ok(out)
}
