//! Reductions along one axis, viewed as `(outer, dim, inner)`.
use super::{max_lanes, par_rows, sum_lanes};
use crate::storage::alloc;
use crate::CpuTensor;
use protocell_core::backend::Reduce;
use protocell_core::shape;

fn min_lanes(x: &[f32]) -> f32 {
    let mut m = f32::INFINITY;
    for &v in x {
        if v.is_nan() {
            return f32::NAN;
        }
        m = if v < m { v } else { m };
    }
    m
}

pub(crate) fn reduce(op: Reduce, x: &CpuTensor, axis: usize) -> CpuTensor {
    let (outer, dim, inner) = shape::split_at_axis(&x.shape, axis);
    let mut shape_out = x.shape.clone();
    shape_out[axis] = 1;
    let src = x.data();
    let mut out = alloc(outer * inner);
    let scale = if op == Reduce::Mean { 1.0 / dim as f32 } else { 1.0 };
    if inner == 1 {
        // contiguous rows: one reduction per output element
        super::par_chunks(&mut out, (super::CHUNK / dim.max(1)).max(1), |o0, dst| {
            for (k, d) in dst.iter_mut().enumerate() {
                let row = &src[(o0 + k) * dim..(o0 + k + 1) * dim];
                *d = match op {
                    Reduce::Sum | Reduce::Mean => sum_lanes(row) * scale,
                    Reduce::Max => max_lanes(row),
                    Reduce::Min => min_lanes(row),
                };
            }
        });
    } else {
        // strided: accumulate whole inner rows, vectorised over the inner axis
        par_rows(&mut out, inner, |o0, dst| {
            for (k, acc) in dst.chunks_mut(inner).enumerate() {
                let base = (o0 + k) * dim * inner;
                acc.copy_from_slice(&src[base..base + inner]);
                for d in 1..dim {
                    let row = &src[base + d * inner..base + (d + 1) * inner];
                    match op {
                        Reduce::Sum | Reduce::Mean => acc.iter_mut().zip(row).for_each(|(a, &r)| *a += r),
                        Reduce::Max => acc.iter_mut().zip(row).for_each(|(a, &r)| {
                            *a = if r > *a || r.is_nan() { r } else { *a };
                        }),
                        Reduce::Min => acc.iter_mut().zip(row).for_each(|(a, &r)| {
                            *a = if r < *a || r.is_nan() { r } else { *a };
                        }),
                    }
                }
                if op == Reduce::Mean {
                    acc.iter_mut().for_each(|a| *a *= scale);
                }
            }
        });
    }
    CpuTensor::new(out, shape_out)
}
