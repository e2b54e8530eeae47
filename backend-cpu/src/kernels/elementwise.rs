//! Elementwise unary and binary kernels (binary with numpy broadcasting).
use super::{par_chunks, CHUNK};
use crate::storage::alloc;
use crate::CpuTensor;
use protocell_core::backend::{Binary, Unary};
use protocell_core::error::Result;
use protocell_core::math;
use protocell_core::shape;
use std::sync::Arc;

/// `y[i] = e(x[i])`, or `y[i] = e(y[i])` in place when `x` is `None`. A macro, not a
/// closure-taking function: the expression is pasted into both loops so that the
/// `#[inline(always)]` math functions inline and the loops vectorise.
macro_rules! map {
    ($x:expr, $y:expr, |$v:ident| $e:expr) => {
        match $x {
            Some(x) => {
                for (o, &$v) in $y.iter_mut().zip(x) {
                    *o = $e;
                }
            }
            None => {
                for o in $y.iter_mut() {
                    let $v = *o;
                    *o = $e;
                }
            }
        }
    };
}

simd! {
    /// A unary op over a chunk, hot ops specialised so that each loop vectorises.
    fn unary_kernel(op: Unary, x: Option<&[f32]>, y: &mut [f32]) {
        match op {
            Unary::Exp => map!(x, y, |v| math::exp(v)),
            Unary::Gelu => map!(x, y, |v| math::gelu(v)),
            Unary::Sigmoid => map!(x, y, |v| math::sigmoid(v)),
            Unary::Erf => map!(x, y, |v| math::erf(v)),
            Unary::Silu => map!(x, y, |v| v * math::sigmoid(v)),
            Unary::Affine { mul, add } => map!(x, y, |v| mul * v + add),
            Unary::Square => map!(x, y, |v| v * v),
            Unary::Sqrt => map!(x, y, |v| v.sqrt()),
            Unary::Rsqrt => map!(x, y, |v| 1.0 / v.sqrt()),
            Unary::Recip => map!(x, y, |v| 1.0 / v),
            Unary::Neg => map!(x, y, |v| -v),
            Unary::Abs => map!(x, y, |v| v.abs()),
            other => map!(x, y, |v| math::unary(other, v)),
        }
    }
}

/// `f(x)`: in place when `x` is uniquely owned, else into a fresh buffer.
pub(crate) fn unary(op: Unary, x: CpuTensor) -> CpuTensor {
    match Arc::try_unwrap(x.buf) {
        Ok(buf) => {
            let mut data = buf.into_vec();
            par_chunks(&mut data, CHUNK, |_, c| unary_kernel(op, None, c));
            CpuTensor::new(data, x.shape)
        }
        Err(shared) => {
            let src = shared.as_slice();
            let mut out = alloc(src.len());
            par_chunks(&mut out, CHUNK, |s, c| unary_kernel(op, Some(&src[s..s + c.len()]), c));
            CpuTensor::new(out, x.shape)
        }
    }
}

simd! {
    /// `dy ← dy · f'(x)` given `y = f(x)`.
    fn grad_inplace(op: Unary, x: &[f32], y: &[f32], dy: &mut [f32]) {
        match op {
            Unary::Gelu => {
                for (d, &xv) in dy.iter_mut().zip(x) {
                    *d *= math::gelu_grad(xv);
                }
            }
            Unary::Exp => {
                for (d, &yv) in dy.iter_mut().zip(y) {
                    *d *= yv;
                }
            }
            Unary::Sigmoid => {
                for (d, &yv) in dy.iter_mut().zip(y) {
                    *d *= yv * (1.0 - yv);
                }
            }
            Unary::Tanh => {
                for (d, &yv) in dy.iter_mut().zip(y) {
                    *d *= 1.0 - yv * yv;
                }
            }
            other => {
                for ((d, &xv), &yv) in dy.iter_mut().zip(x).zip(y) {
                    *d *= math::unary_grad(other, xv, yv);
                }
            }
        }
    }
}

pub(crate) fn unary_grad(op: Unary, x: &CpuTensor, y: &CpuTensor, dy: CpuTensor) -> CpuTensor {
    let (mut d, shape) = dy.into_parts();
    let (xd, yd) = (x.data(), y.data());
    par_chunks(&mut d, CHUNK, |s, c| grad_inplace(op, &xd[s..s + c.len()], &yd[s..s + c.len()], c));
    CpuTensor::new(d, shape)
}

/// Broadcast iteration plan: the output coalesced into `dims` with per-input strides
/// (0 on broadcast axes); the last dim is the contiguous inner loop.
struct Plan {
    dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
}

fn input_strides(shape_in: &[usize], out: &[usize]) -> Vec<usize> {
    let st = shape::strides(shape_in);
    let off = out.len() - shape_in.len();
    (0..out.len()).map(|i| if i < off || shape_in[i - off] == 1 { 0 } else { st[i - off] }).collect()
}

fn plan(a: &[usize], b: &[usize], out: &[usize]) -> Plan {
    let (sa, sb) = (input_strides(a, out), input_strides(b, out));
    let mut dims: Vec<usize> = Vec::new();
    let mut pa: Vec<usize> = Vec::new();
    let mut pb: Vec<usize> = Vec::new();
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        if let (Some(&d), Some(&la), Some(&lb)) = (dims.last(), pa.last(), pb.last()) {
            // merge with the previous (outer) dim when both inputs stay linear across it
            if la == sa[i] * out[i] && lb == sb[i] * out[i] {
                *dims.last_mut().unwrap() = d * out[i];
                *pa.last_mut().unwrap() = sa[i];
                *pb.last_mut().unwrap() = sb[i];
                continue;
            }
        }
        dims.push(out[i]);
        pa.push(sa[i]);
        pb.push(sb[i]);
    }
    if dims.is_empty() {
        dims.push(1);
        pa.push(0);
        pb.push(0);
    }
    Plan { dims, sa: pa, sb: pb }
}

macro_rules! bin_loops {
    ($o:expr, $a:expr, $b:expr, $ia:expr, $ib:expr, $f:expr) => {
        match ($ia, $ib) {
            (1, 1) => {
                for ((o, &x), &y) in $o.iter_mut().zip($a).zip($b) {
                    *o = $f(x, y);
                }
            }
            (1, 0) => {
                let y = $b[0];
                for (o, &x) in $o.iter_mut().zip($a) {
                    *o = $f(x, y);
                }
            }
            (0, 1) => {
                let x = $a[0];
                for (o, &y) in $o.iter_mut().zip($b) {
                    *o = $f(x, y);
                }
            }
            _ => {
                let (x, y) = ($a[0], $b[0]);
                for o in $o.iter_mut() {
                    *o = $f(x, y);
                }
            }
        }
    };
}

simd! {
    /// Inner contiguous segment: `o[i] = op(a[i·ia], b[i·ib])` with `ia, ib ∈ {0, 1}`.
    fn bin_segment(op: Binary, o: &mut [f32], a: &[f32], b: &[f32], ia: usize, ib: usize) {
        match op {
            Binary::Add => bin_loops!(o, a, b, ia, ib, |x: f32, y: f32| x + y),
            Binary::Sub => bin_loops!(o, a, b, ia, ib, |x: f32, y: f32| x - y),
            Binary::Mul => bin_loops!(o, a, b, ia, ib, |x: f32, y: f32| x * y),
            Binary::Div => bin_loops!(o, a, b, ia, ib, |x: f32, y: f32| x / y),
            other => bin_loops!(o, a, b, ia, ib, |x, y| math::binary(other, x, y)),
        }
    }
}

pub(crate) fn binary(op: Binary, a: CpuTensor, b: CpuTensor) -> Result<CpuTensor> {
    let out_shape = shape::broadcast_shapes("binary", &a.shape, &b.shape)?;
    let n = shape::numel(&out_shape);
    let p = plan(&a.shape, &b.shape, &out_shape);
    let inner = *p.dims.last().unwrap();
    let (ia, ib) = (*p.sa.last().unwrap(), *p.sb.last().unwrap());
    debug_assert!(ia <= 1 && ib <= 1);
    let outer_dims = &p.dims[..p.dims.len() - 1];
    let (ad, bd) = (a.data(), b.data());
    // offsets of row r (an index over the outer dims) in a and b
    let row_offsets = |mut r: usize| -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for i in (0..outer_dims.len()).rev() {
            let idx = r % outer_dims[i];
            r /= outer_dims[i];
            oa += idx * p.sa[i];
            ob += idx * p.sb[i];
        }
        (oa, ob)
    };
    let mut out = alloc(n);
    par_chunks(&mut out, CHUNK, |start, chunk| {
        let mut s = start;
        let end = start + chunk.len();
        while s < end {
            let (r, c) = (s / inner, s % inner);
            let seg = (inner - c).min(end - s);
            let (oa, ob) = row_offsets(r);
            let a_seg = &ad[oa + c * ia..oa + c * ia + if ia == 1 { seg } else { 1 }];
            let b_seg = &bd[ob + c * ib..ob + c * ib + if ib == 1 { seg } else { 1 }];
            bin_segment(op, &mut chunk[s - start..s - start + seg], a_seg, b_seg, ia, ib);
            s += seg;
        }
    });
    Ok(CpuTensor::new(out, out_shape))
}
