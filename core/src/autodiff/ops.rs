//! Forward + recorded backward of each primitive and fused op of [`super::Autodiff`].
use super::{record, reduce_to_shape, AdTensor, Needs};
use crate::backend::{Backend, Binary, Reduce, Unary};
use crate::error::Result;
use crate::shape;
use alloc::vec;
use alloc::vec::Vec;

type R<B> = Result<AdTensor<B>>;

fn one<B: Backend>(g: Result<B::Tensor>) -> Result<Vec<Option<B::Tensor>>> {
    Ok(vec![Some(g?)])
}

pub(super) fn reshape<B: Backend>(x: AdTensor<B>, s: &[usize]) -> R<B> {
    let old = B::shape(&x.primal).to_vec();
    let y = B::reshape(x.primal.clone(), s)?;
    Ok(record(y, &[&x], move |g, _| one::<B>(B::reshape(g, &old))))
}

pub(super) fn permute<B: Backend>(x: AdTensor<B>, axes: &[usize]) -> R<B> {
    let inv = shape::inverse_permutation(axes);
    let y = B::permute(x.primal.clone(), axes)?;
    Ok(record(y, &[&x], move |g, _| one::<B>(B::permute(g, &inv))))
}

pub(super) fn narrow<B: Backend>(x: AdTensor<B>, axis: usize, start: usize, len: usize) -> R<B> {
    let d = B::shape(&x.primal)[axis];
    let y = B::narrow(x.primal.clone(), axis, start, len)?;
    Ok(record(y, &[&x], move |g, _| one::<B>(B::pad(g, axis, start, d - start - len))))
}

pub(super) fn pad<B: Backend>(x: AdTensor<B>, axis: usize, before: usize, after: usize) -> R<B> {
    let d = B::shape(&x.primal)[axis];
    let y = B::pad(x.primal.clone(), axis, before, after)?;
    Ok(record(y, &[&x], move |g, _| one::<B>(B::narrow(g, axis, before, d))))
}

pub(super) fn concat<B: Backend>(xs: Vec<AdTensor<B>>, axis: usize) -> R<B> {
    let sizes: Vec<usize> = xs.iter().map(|x| B::shape(&x.primal)[axis]).collect();
    let y = B::concat(xs.iter().map(|x| x.primal.clone()).collect(), axis)?;
    let refs: Vec<&AdTensor<B>> = xs.iter().collect();
    Ok(record(y, &refs, move |g, needs: &Needs| {
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for (i, &n) in sizes.iter().enumerate() {
            out.push(if needs[i] { Some(B::narrow(g.clone(), axis, start, n)?) } else { None });
            start += n;
        }
        Ok(out)
    }))
}

pub(super) fn expand<B: Backend>(x: AdTensor<B>, s: &[usize]) -> R<B> {
    let old = B::shape(&x.primal).to_vec();
    let y = B::expand(x.primal.clone(), s)?;
    Ok(record(y, &[&x], move |g, _| one::<B>(reduce_to_shape::<B>(g, &old))))
}

pub(super) fn unary<B: Backend>(op: Unary, x: AdTensor<B>) -> R<B> {
    let y = B::unary(op, x.primal.clone())?;
    if x.node.is_none() {
        return Ok(AdTensor::constant(y));
    }
    Ok(match op {
        Unary::Affine { mul, .. } => {
            record(y, &[&x], move |g, _| one::<B>(B::unary(Unary::Affine { mul, add: 0.0 }, g)))
        }
        Unary::Neg => record(y, &[&x], move |g, _| one::<B>(B::unary(Unary::Neg, g))),
        _ => {
            let (xs, ys) = (x.primal.clone(), y.clone());
            record(y, &[&x], move |g, _| one::<B>(B::unary_grad(op, xs, ys, g)))
        }
    })
}

pub(super) fn binary<B: Backend>(op: Binary, a: AdTensor<B>, b: AdTensor<B>) -> R<B> {
    let y = B::binary(op, a.primal.clone(), b.primal.clone())?;
    if op.is_comparison() {
        return Ok(AdTensor::constant(y));
    }
    let sa = B::shape(&a.primal).to_vec();
    let sb = B::shape(&b.primal).to_vec();
    let (pa, pb, py) = (a.primal.clone(), b.primal.clone(), y.clone());
    Ok(record(y, &[&a, &b], move |g, needs: &Needs| {
        let mul = |x: B::Tensor, y: B::Tensor| B::binary(Binary::Mul, x, y);
        let (ga, gb) = match op {
            Binary::Add => (needs[0].then(|| g.clone()), needs[1].then_some(g)),
            Binary::Sub => (needs[0].then(|| g.clone()), if needs[1] { Some(B::unary(Unary::Neg, g)?) } else { None }),
            Binary::Mul => (
                if needs[0] { Some(mul(g.clone(), pb.clone())?) } else { None },
                if needs[1] { Some(mul(g, pa)?) } else { None },
            ),
            Binary::Div => (
                if needs[0] { Some(B::binary(Binary::Div, g.clone(), pb.clone())?) } else { None },
                if needs[1] {
                    // −g·(a/b)/b = −g·y/b
                    let t = B::binary(Binary::Div, mul(g, py)?, pb)?;
                    Some(B::unary(Unary::Neg, t)?)
                } else {
                    None
                },
            ),
            Binary::Max | Binary::Min => {
                // the larger (smaller) input takes the gradient; ties split it evenly
                let (wa, wb) = if op == Binary::Max {
                    (B::binary(Binary::Gt, pa.clone(), pb.clone())?, B::binary(Binary::Gt, pb.clone(), pa.clone())?)
                } else {
                    (B::binary(Binary::Gt, pb.clone(), pa.clone())?, B::binary(Binary::Gt, pa.clone(), pb.clone())?)
                };
                let tie = B::unary(Unary::Affine { mul: 0.5, add: 0.0 }, B::binary(Binary::Eq, pa, pb)?)?;
                let wa = B::binary(Binary::Add, wa, tie.clone())?;
                let wb = B::binary(Binary::Add, wb, tie)?;
                (
                    if needs[0] { Some(mul(g.clone(), wa)?) } else { None },
                    if needs[1] { Some(mul(g, wb)?) } else { None },
                )
            }
            Binary::Pow => (
                if needs[0] {
                    // b·a^(b−1) = b·y/a
                    let t = B::binary(Binary::Div, mul(pb.clone(), py.clone())?, pa.clone())?;
                    Some(mul(g.clone(), t)?)
                } else {
                    None
                },
                if needs[1] { Some(mul(g, mul(py, B::unary(Unary::Log, pa)?)?)?) } else { None },
            ),
            Binary::Gt | Binary::Ge | Binary::Eq => (None, None),
        };
        let ga = ga.map(|g| reduce_to_shape::<B>(g, &sa)).transpose()?;
        let gb = gb.map(|g| reduce_to_shape::<B>(g, &sb)).transpose()?;
        Ok(vec![ga, gb])
    }))
}

pub(super) fn reduce<B: Backend>(op: Reduce, x: AdTensor<B>, axis: usize) -> R<B> {
    let y = B::reduce(op, x.primal.clone(), axis)?;
    let xs = B::shape(&x.primal).to_vec();
    let n = xs[axis] as f32;
    let (px, py) = (x.primal.clone(), y.clone());
    Ok(record(y, &[&x], move |g, _| {
        let d = match op {
            Reduce::Sum => B::expand(g, &xs)?,
            Reduce::Mean => B::expand(B::unary(Unary::Affine { mul: 1.0 / n, add: 0.0 }, g)?, &xs)?,
            Reduce::Max | Reduce::Min => {
                let mask = B::binary(Binary::Eq, px, py)?;
                let count = B::reduce(Reduce::Sum, mask.clone(), axis)?;
                B::binary(Binary::Mul, mask, B::binary(Binary::Div, g, count)?)?
            }
        };
        Ok(vec![Some(d)])
    }))
}

pub(super) fn matmul<B: Backend>(a: AdTensor<B>, b: AdTensor<B>, ta: bool, tb: bool) -> R<B> {
    let y = B::matmul(a.primal.clone(), b.primal.clone(), ta, tb)?;
    let sa = B::shape(&a.primal).to_vec();
    let sb = B::shape(&b.primal).to_vec();
    let (pa, pb) = (a.primal.clone(), b.primal.clone());
    Ok(record(y, &[&a, &b], move |g, needs: &Needs| {
        // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G, transposed back where op transposed.
        let ga = if needs[0] {
            let d =
                if ta { B::matmul(pb.clone(), g.clone(), tb, true)? } else { B::matmul(g.clone(), pb, false, !tb)? };
            Some(reduce_to_shape::<B>(d, &sa)?)
        } else {
            None
        };
        let gb = if needs[1] {
            let d = if tb { B::matmul(g, pa, true, ta)? } else { B::matmul(pa, g, !ta, false)? };
            Some(reduce_to_shape::<B>(d, &sb)?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }))
}

pub(super) fn gather_rows<B: Backend>(table: AdTensor<B>, ids: B::Ids) -> R<B> {
    let rows = B::shape(&table.primal)[0];
    let y = B::gather_rows(table.primal.clone(), ids.clone())?;
    Ok(record(y, &[&table], move |g, _| one::<B>(B::scatter_add_rows(g, ids, rows))))
}

pub(super) fn scatter_add_rows<B: Backend>(src: AdTensor<B>, ids: B::Ids, rows: usize) -> R<B> {
    let ss = B::shape(&src.primal).to_vec();
    let y = B::scatter_add_rows(src.primal.clone(), ids.clone(), rows)?;
    Ok(record(y, &[&src], move |g, _| one::<B>(B::reshape(B::gather_rows(g, ids)?, &ss))))
}

pub(super) fn softmax<B: Backend>(x: AdTensor<B>) -> R<B> {
    let y = B::softmax(x.primal.clone())?;
    let ys = y.clone();
    Ok(record(y, &[&x], move |g, _| one::<B>(B::softmax_grad(ys, g))))
}

pub(super) fn layer_norm<B: Backend>(
    x: AdTensor<B>,
    gamma: AdTensor<B>,
    beta: AdTensor<B>,
    eps: f32,
) -> Result<(AdTensor<B>, AdTensor<B>, AdTensor<B>)> {
    let (y, mean, rstd) = B::layer_norm_fwd(x.primal.clone(), gamma.primal.clone(), beta.primal.clone(), eps)?;
    let (px, pg, m, r) = (x.primal.clone(), gamma.primal.clone(), mean.clone(), rstd.clone());
    let y = record(y, &[&x, &gamma, &beta], move |g, needs: &Needs| {
        let (dx, dg, db) = B::layer_norm_bwd(px, pg, m, r, g)?;
        Ok(vec![needs[0].then_some(dx), needs[1].then_some(dg), needs[2].then_some(db)])
    });
    Ok((y, AdTensor::constant(mean), AdTensor::constant(rstd)))
}

pub(super) fn rms_norm<B: Backend>(x: AdTensor<B>, gamma: AdTensor<B>, eps: f32) -> Result<(AdTensor<B>, AdTensor<B>)> {
    let (y, rstd) = B::rms_norm_fwd(x.primal.clone(), gamma.primal.clone(), eps)?;
    let (px, pg, r) = (x.primal.clone(), gamma.primal.clone(), rstd.clone());
    let y = record(y, &[&x, &gamma], move |g, needs: &Needs| {
        let (dx, dg) = B::rms_norm_bwd(px, pg, r, g)?;
        Ok(vec![needs[0].then_some(dx), needs[1].then_some(dg)])
    });
    Ok((y, AdTensor::constant(rstd)))
}

pub(super) fn attention<B: Backend>(
    q: AdTensor<B>,
    k: AdTensor<B>,
    v: AdTensor<B>,
    causal: bool,
    scale: f32,
) -> Result<(AdTensor<B>, AdTensor<B>)> {
    let (o, lse) = B::attention_fwd(q.primal.clone(), k.primal.clone(), v.primal.clone(), causal, scale)?;
    let saved = (q.primal.clone(), k.primal.clone(), v.primal.clone(), o.clone(), lse.clone());
    let o = record(o, &[&q, &k, &v], move |g, needs: &Needs| {
        let (q, k, v, o, lse) = saved;
        let (dq, dk, dv) = B::attention_bwd(q, k, v, o, lse, g, causal, scale)?;
        Ok(vec![needs[0].then_some(dq), needs[1].then_some(dk), needs[2].then_some(dv)])
    });
    Ok((o, AdTensor::constant(lse)))
}

pub(super) fn linear<B: Backend>(x: AdTensor<B>, w: AdTensor<B>, b: Option<AdTensor<B>>) -> R<B> {
    let y = B::linear(x.primal.clone(), w.primal.clone(), b.as_ref().map(|b| b.primal.clone()))?;
    let xs = B::shape(&x.primal).to_vec();
    let (out_f, in_f) = (B::shape(&w.primal)[0], B::shape(&w.primal)[1]);
    let rows = crate::shape::numel(&xs) / in_f.max(1);
    let (px, pw) = (x.primal.clone(), w.primal.clone());
    let mut inputs = vec![&x, &w];
    if let Some(b) = &b {
        inputs.push(b);
    }
    Ok(record(y, &inputs, move |g, needs: &Needs| {
        let g2 = B::reshape(g, &[rows, out_f])?;
        let dx = if needs[0] { Some(B::reshape(B::matmul(g2.clone(), pw, false, false)?, &xs)?) } else { None };
        let dw =
            if needs[1] { Some(B::matmul(g2.clone(), B::reshape(px, &[rows, in_f])?, true, false)?) } else { None };
        let mut out = vec![dx, dw];
        if needs.len() == 3 {
            out.push(if needs[2] { Some(B::reshape(B::reduce(Reduce::Sum, g2, 0)?, &[out_f])?) } else { None });
        }
        Ok(out)
    }))
}

pub(super) fn self_attention<B: Backend>(
    qkv: AdTensor<B>,
    spec: &crate::backend::AttnSpec,
) -> Result<(AdTensor<B>, AdTensor<B>)> {
    let spec = *spec;
    let (o, lse) = B::self_attention_fwd(qkv.primal.clone(), &spec)?;
    let saved = (qkv.primal.clone(), o.clone(), lse.clone());
    let o = record(o, &[&qkv], move |g, _| {
        let (x, o, lse) = saved;
        one::<B>(B::self_attention_bwd(x, o, lse, g, &spec))
    });
    Ok((o, AdTensor::constant(lse)))
}

pub(super) fn cross_entropy<B: Backend>(logits: AdTensor<B>, targets: B::Ids) -> Result<(AdTensor<B>, AdTensor<B>)> {
    let (loss, lse) = B::cross_entropy_fwd(logits.primal.clone(), targets.clone())?;
    let (pl, l) = (logits.primal.clone(), lse.clone());
    let loss = record(loss, &[&logits], move |g, _| one::<B>(B::cross_entropy_bwd(pl, targets, l, g)));
    Ok((loss, AdTensor::constant(lse)))
}
