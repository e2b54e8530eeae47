//! CPU kernels. Work is split into fixed-size chunks (never "one chunk per thread"), so
//! every result is bitwise independent of the thread count.
/// Compiles the wrapped function once per SIMD level (AVX-512, AVX2+FMA, SSE4.1, NEON) and
/// dispatches to the best one the host supports at run time. Write plain loops inside;
/// call `#[inline(always)]` helpers directly (not through closures) so they vectorise.
macro_rules! simd {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[multiversion::multiversion(targets(
            "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl+avx2+fma+bmi1+bmi2+lzcnt+popcnt",
            "x86_64+avx2+fma",
            "x86_64+sse4.1",
            "aarch64+neon"
        ))]
        $(#[$attr])* $vis fn $($rest)*
    };
}

pub(crate) mod attention;
pub(crate) mod cell;
pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod nn;
pub(crate) mod random;
pub(crate) mod reduce;
pub(crate) mod synapse;

use rayon::prelude::*;

/// Elements per parallel task for memory-bound elementwise work.
pub(crate) const CHUNK: usize = 1 << 15;

/// Calls `f(first_index, chunk)` over `out` in chunks of `chunk` elements, in parallel
/// when there is more than one chunk.
pub(crate) fn par_chunks<F>(out: &mut [f32], chunk: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if out.len() <= chunk {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
    }
}

/// Calls `f(first_row, rows)` over `out` viewed as rows of `row_len`, grouping rows into
/// tasks of about `CHUNK` elements (at least one row each).
pub(crate) fn par_rows<F>(out: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    if row_len == 0 || out.is_empty() {
        return;
    }
    let rows_per_task = (CHUNK / row_len).max(1);
    par_chunks(out, rows_per_task * row_len, |start, c| f(start / row_len, c));
}

/// Sum of a slice with 16 independent accumulators (vectorisable, fixed order).
#[inline(always)]
pub(crate) fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    for &r in rem {
        s += r;
    }
    s
}

/// Dot product with 16 independent accumulators (vectorisable, fixed order).
#[inline(always)]
pub(crate) fn dot_lanes(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let n = x.len().min(y.len());
    let (xc, yc) = (x[..n].chunks_exact(16), y[..n].chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for i in 0..16 {
            acc[i] += a[i] * b[i];
        }
    }
    let mut s = 0.0;
    for a in acc {
        s += a;
    }
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    s
}

/// Maximum of a slice ignoring NaN, with 16 lanes: for softmax and log-sum-exp, where a NaN
/// input still reaches the output through `e^{x−max}` and the sum.
#[inline(always)]
pub(crate) fn max_ignoring_nan(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc {
        m = m.max(a);
    }
    for &r in rem {
        m = m.max(r);
    }
    m
}

/// Maximum of a slice (NaN-propagating), with 16 lanes.
#[inline(always)]
pub(crate) fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rem = chunks.remainder();
    let mut nan = false;
    for c in chunks {
        for i in 0..16 {
            nan |= c[i].is_nan();
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for a in acc {
        m = if a > m { a } else { m };
    }
    for &r in rem {
        nan |= r.is_nan();
        m = if r > m { r } else { m };
    }
    if nan {
        f32::NAN
    } else {
        m
    }
}
