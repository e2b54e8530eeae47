//! Batched matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON
//! micro-kernels). Transposed operands are passed as strides, never copied.
use crate::CpuTensor;
use gemm::Parallelism;
use protocell_core::shape;
use rayon::prelude::*;

/// Products below this many multiply-adds run on one thread.
const PAR_MIN_FLOPS: usize = 1 << 21;

/// One matrix operand: base pointer offset and (row, column) strides in elements.
#[derive(Clone, Copy)]
struct Operand {
    rs: isize,
    cs: isize,
}

fn operand(rows_stored: usize, cols_stored: usize, transposed: bool) -> Operand {
    let _ = rows_stored;
    if transposed {
        // logical (i, j) is stored at (j, i)
        Operand { rs: 1, cs: cols_stored as isize }
    } else {
        Operand { rs: cols_stored as isize, cs: 1 }
    }
}

/// `dst[m×n] = op(a)[m×k] · op(b)[k×n]` (overwrites `dst`).
///
/// # Safety contract (checked by the caller's shapes)
/// `a`, `b`, `dst` hold at least the addressed elements of their strided views.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_into(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
    scale: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let oa = if ta { operand(k, m, true) } else { operand(m, k, false) };
    let ob = if tb { operand(n, k, true) } else { operand(k, n, false) };
    assert!(dst.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "gemm operand sizes");
    // SAFETY: every index the strided views address lies inside the asserted lengths:
    // a is m×k (or k×m) contiguous, b is k×n (or n×k) contiguous, dst is m×n contiguous.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            oa.cs,
            oa.rs,
            b.as_ptr(),
            ob.cs,
            ob.rs,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// Batched product; batch dims equal, or one side a plain matrix shared by every batch.
pub(crate) fn matmul(a: &CpuTensor, b: &CpuTensor, ta: bool, tb: bool) -> CpuTensor {
    let (sa, sb) = (&a.shape, &b.shape);
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k) = if ta { (sa[ra - 1], sa[ra - 2]) } else { (sa[ra - 2], sa[ra - 1]) };
    let n = if tb { sb[rb - 2] } else { sb[rb - 1] };
    let batch_shape: Vec<usize> = if ra > 2 { sa[..ra - 2].to_vec() } else { sb[..rb - 2].to_vec() };
    let batch = shape::numel(&batch_shape);
    let (a_step, b_step) = (if ra > 2 { m * k } else { 0 }, if rb > 2 { k * n } else { 0 });
    let mut out_shape = batch_shape;
    out_shape.extend_from_slice(&[m, n]);
    let mut out = vec![0.0f32; batch * m * n];
    let (ad, bd) = (a.data(), b.data());
    let flops = m * n * k;
    if batch == 1 {
        let par = if flops >= PAR_MIN_FLOPS { Parallelism::Rayon(0) } else { Parallelism::None };
        gemm_into(&mut out, ad, bd, m, n, k, ta, tb, false, 1.0, par);
    } else if m * n > 0 {
        let run = |(i, dst): (usize, &mut [f32])| {
            gemm_into(dst, &ad[i * a_step..], &bd[i * b_step..], m, n, k, ta, tb, false, 1.0, Parallelism::None)
        };
        if flops * batch >= PAR_MIN_FLOPS / 4 {
            out.par_chunks_mut(m * n).enumerate().for_each(run);
        } else {
            out.chunks_mut(m * n).enumerate().for_each(run);
        }
    }
    CpuTensor::new(out, out_shape)
}
