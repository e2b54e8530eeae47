//! Layout kernels: one coalescing strided copy serves permute, narrow and expand.
use super::{par_chunks, CHUNK};
use crate::storage::{alloc, alloc_zeroed};
use crate::CpuTensor;
use protocell_core::shape;

/// Copies the view `(offset, shape, strides)` of `src` into a new contiguous buffer.
/// Strides are in elements and may be 0 (broadcast). Adjacent axes that stay linear are
/// merged, so the inner loop is a `memcpy`, a fill, or a strided gather.
pub(crate) fn strided_copy(src: &[f32], offset: usize, shape_v: &[usize], strides: &[usize]) -> Vec<f32> {
    let n = shape::numel(shape_v);
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<usize> = Vec::new();
    for (&d, &s) in shape_v.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        if let Some(&ls) = st.last() {
            if ls == s * d {
                *dims.last_mut().unwrap() *= d;
                *st.last_mut().unwrap() = s;
                continue;
            }
        }
        dims.push(d);
        st.push(s);
    }
    if dims.is_empty() {
        dims.push(1);
        st.push(0);
    }
    let inner = *dims.last().unwrap();
    let is = *st.last().unwrap();
    let outer = &dims[..dims.len() - 1];
    let row_offset = |mut r: usize| -> usize {
        let mut o = offset;
        for i in (0..outer.len()).rev() {
            o += (r % outer[i]) * st[i];
            r /= outer[i];
        }
        o
    };
    let mut out = alloc(n);
    par_chunks(&mut out, CHUNK, |start, chunk| {
        let mut s = start;
        let end = start + chunk.len();
        while s < end {
            let (r, c) = (s / inner, s % inner);
            let seg = (inner - c).min(end - s);
            let base = row_offset(r) + c * is;
            let dst = &mut chunk[s - start..s - start + seg];
            match is {
                1 => dst.copy_from_slice(&src[base..base + seg]),
                0 => dst.fill(src[base]),
                _ => {
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = src[base + i * is];
                    }
                }
            }
            s += seg;
        }
    });
    out
}

pub(crate) fn permute(x: &CpuTensor, axes: &[usize]) -> CpuTensor {
    let st = shape::strides(&x.shape);
    let shape_out: Vec<usize> = axes.iter().map(|&a| x.shape[a]).collect();
    let st_out: Vec<usize> = axes.iter().map(|&a| st[a]).collect();
    CpuTensor::new(strided_copy(x.data(), 0, &shape_out, &st_out), shape_out)
}

pub(crate) fn narrow(x: &CpuTensor, axis: usize, start: usize, len: usize) -> CpuTensor {
    let st = shape::strides(&x.shape);
    let mut shape_out = x.shape.clone();
    shape_out[axis] = len;
    CpuTensor::new(strided_copy(x.data(), start * st[axis], &shape_out, &st), shape_out)
}

pub(crate) fn expand(x: &CpuTensor, to: &[usize]) -> CpuTensor {
    let st = shape::strides(&x.shape);
    let off = to.len() - x.shape.len();
    let st_out: Vec<usize> =
        (0..to.len()).map(|i| if i < off || x.shape[i - off] == 1 { 0 } else { st[i - off] }).collect();
    CpuTensor::new(strided_copy(x.data(), 0, to, &st_out), to.to_vec())
}

/// Concatenation: each input contributes a block of `dim_i · inner` elements per outer index.
pub(crate) fn concat(xs: &[CpuTensor], axis: usize) -> CpuTensor {
    let mut shape_out = xs[0].shape.clone();
    shape_out[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let (outer, total, inner) = shape::split_at_axis(&shape_out, axis);
    let mut out = alloc(outer * total * inner);
    let row = total * inner;
    if row > 0 {
        super::par_rows(&mut out, row, |r0, rows| {
            for (k, dst) in rows.chunks_mut(row).enumerate() {
                let o = r0 + k;
                let mut at = 0;
                for x in xs {
                    let blk = x.shape[axis] * inner;
                    dst[at..at + blk].copy_from_slice(&x.data()[o * blk..(o + 1) * blk]);
                    at += blk;
                }
            }
        });
    }
    CpuTensor::new(out, shape_out)
}

pub(crate) fn pad(x: &CpuTensor, axis: usize, before: usize, after: usize) -> CpuTensor {
    let (outer, d, inner) = shape::split_at_axis(&x.shape, axis);
    let total = before + d + after;
    let mut shape_out = x.shape.clone();
    shape_out[axis] = total;
    let mut out = alloc_zeroed(outer * total * inner);
    let row = total * inner;
    if row > 0 {
        let src = x.data();
        super::par_rows(&mut out, row, |r0, rows| {
            for (k, dst) in rows.chunks_mut(row).enumerate() {
                let o = r0 + k;
                dst[before * inner..(before + d) * inner].copy_from_slice(&src[o * d * inner..(o + 1) * d * inner]);
            }
        });
    }
    CpuTensor::new(out, shape_out)
}
