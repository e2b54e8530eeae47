//! Batched matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON
//! micro-kernels). Transposed operands are passed as strides, never copied.
use crate::storage::alloc;
use crate::CpuTensor;
use gemm::Parallelism;
use protocell_core::shape;
use rayon::prelude::*;

/// Products below this many multiply-adds run on one thread.
const PAR_MIN_FLOPS: usize = 1 << 21;

/// `(row stride, column stride)` of `op(X)` for a row-major stored matrix with row stride `ld`.
fn strides(ld: usize, transposed: bool) -> (isize, isize) {
    if transposed {
        // logical (i, j) is stored at (j, i)
        (1, ld as isize)
    } else {
        (ld as isize, 1)
    }
}

/// Elements a row-major `rows × cols` matrix with row stride `ld` spans.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

/// `dst[m×n] (+)= scale · op(a)[m×k] · op(b)[k×n]` on row-major storage with explicit row
/// strides (`lda`, `ldb`, `ldd`): `a` is stored `m×k` (`k×m` when `ta`), `b` is stored
/// `k×n` (`n×k` when `tb`). With `accumulate` the product is added to `dst`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided(
    dst: &mut [f32],
    ldd: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
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
            for i in 0..m {
                dst[i * ldd..i * ldd + n].fill(0.0);
            }
        }
        return;
    }
    let (a_rows, a_cols) = if ta { (k, m) } else { (m, k) };
    let (b_rows, b_cols) = if tb { (n, k) } else { (k, n) };
    assert!(
        dst.len() >= span(m, n, ldd) && a.len() >= span(a_rows, a_cols, lda) && b.len() >= span(b_rows, b_cols, ldb),
        "gemm operand sizes"
    );
    assert!(ldd >= n && lda >= a_cols && ldb >= b_cols, "gemm row strides");
    let (ars, acs) = strides(lda, ta);
    let (brs, bcs) = strides(ldb, tb);
    // SAFETY: the asserts above bound every element the strided views address by the
    // slice lengths, and `dst` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// [`gemm_strided`] on tightly packed operands, on the calling thread, without scaling.
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
) {
    let lda = if ta { m } else { k };
    let ldb = if tb { k } else { n };
    gemm_strided(dst, n, a, lda, b, ldb, m, n, k, ta, tb, accumulate, 1.0, Parallelism::None)
}

/// `dst = op(a)·op(b)` (or `+=` with `accumulate`) on tight operands, split by rows across
/// the pool when the product is large. Every element is still one gemm dot product over the
/// whole `k`, so the result does not depend on the split.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_rows_par(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
) {
    let parts = rayon::current_num_threads().min(m / 16).max(1);
    if m * n * k < PAR_MIN_FLOPS || parts == 1 {
        gemm_into(dst, a, b, m, n, k, ta, tb, accumulate);
        return;
    }
    let rows = m.div_ceil(parts);
    let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
    dst[..m * n].par_chunks_mut(rows * n).enumerate().for_each(|(i, d)| {
        let r0 = i * rows;
        let rb = d.len() / n;
        // rows r0.. of op(a): a row offset in storage, or a column offset when transposed
        let a_part = if ta { &a[r0..] } else { &a[r0 * lda..] };
        gemm_strided(d, n, a_part, lda, b, ldb, rb, n, k, ta, tb, accumulate, 1.0, Parallelism::None);
    });
}

/// `y = x·wᵀ + b` for `x: [..., in]`, `w: [out, in]`, `b: [out]`: the bias is written first
/// and the product accumulated onto it (no separate bias pass).
pub(crate) fn linear(x: &CpuTensor, w: &CpuTensor, bias: Option<&CpuTensor>) -> CpuTensor {
    let (out_f, in_f) = (w.shape[0], w.shape[1]);
    let rows = shape::numel(&x.shape) / in_f.max(1);
    let mut y = alloc(rows * out_f);
    if let Some(b) = bias {
        super::par_rows(&mut y, out_f, |_, c| c.chunks_mut(out_f).for_each(|r| r.copy_from_slice(b.data())));
    }
    if rows > 0 && out_f > 0 {
        gemm_rows_par(&mut y, x.data(), w.data(), rows, out_f, in_f, false, true, bias.is_some());
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().unwrap() = out_f;
    CpuTensor::new(y, shape)
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
    let mut out = alloc(batch * m * n);
    let (ad, bd) = (a.data(), b.data());
    if batch == 1 {
        gemm_rows_par(&mut out, ad, bd, m, n, k, ta, tb, false);
    } else if m * n > 0 {
        let run = |(i, dst): (usize, &mut [f32])| {
            gemm_into(dst, &ad[i * a_step..], &bd[i * b_step..], m, n, k, ta, tb, false)
        };
        if m * n * k * batch >= PAR_MIN_FLOPS / 4 {
            out.par_chunks_mut(m * n).enumerate().for_each(run);
        } else {
            out.chunks_mut(m * n).enumerate().for_each(run);
        }
    }
    CpuTensor::new(out, out_shape)
}
