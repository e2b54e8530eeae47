//! Scalar math, written once: every CPU kernel calls these functions and the WGSL and
//! CUDA kernels mirror them line by line.
//!
//! `exp` and `erf` are branch-free polynomial forms so that loops over them vectorise
//! (libm's versions are scalar calls); their accuracy is stated on each function and
//! checked against libm in the tests below. Polynomial coefficients are written with the
//! digits they were derived with; rounding them to f32 is the compiler's job.
#![allow(clippy::excessive_precision)]
use crate::backend::{Binary, Unary};
#[allow(unused_imports)]
// float methods come from std, or from libm via num-traits under no_std
use num_traits::Float;

const LOG2E: f32 = core::f32::consts::LOG2_E;

/// `a·b + c` with one rounding. Compiles to one instruction in code built for FMA-capable
/// targets (the CPU backend's AVX2/AVX-512/NEON kernels); elsewhere it is a libm call.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}
/// ln 2 split in a high part exactly representable with few bits and a low correction.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` (Cephes `expf` scheme: `x = n·ln2 + g`, degree-6 polynomial for `e^g`).
/// Relative error ≤ 2 ulp for `x ∈ [−87.3, 88.7]`; 0 below, +∞ above, NaN propagates.
///
/// Written without float→int conversions or `floor` (the rounding uses the 1.5·2²³
/// "magic number" add, the integer part is read from the float's bits), so a loop over it
/// vectorises on every SIMD level.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low mantissa bits
    let xc = x.clamp(-87.336_55, 88.722_83);
    let t = fma(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let g = fma(-n, LN2_LO, fma(-n, LN2_HI, xc));
    let mut p = 1.987_569_1e-4;
    p = fma(p, g, 1.398_199_9e-3);
    p = fma(p, g, 8.333_452e-3);
    p = fma(p, g, 4.166_579_6e-2);
    p = fma(p, g, 1.666_666_5e-1);
    p = fma(p, g, 5.000_000_1e-1);
    let y = fma(p, g * g, g + 1.0);
    // 2^n as two factors so that n = 128 (x near 88.7) does not overflow the exponent field
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let r = y * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
    if x < -87.336_55 {
        0.0
    } else if x > 88.722_83 {
        f32::INFINITY
    } else {
        r
    }
}

/// `erf x`, branch-free: for `|x| < 1` the Maclaurin series `2/√π Σ (−1)ⁿ x²ⁿ⁺¹/(n!(2n+1))`
/// to n = 11 (truncation < 10⁻⁹, relative error ≤ 2 ulp); for `|x| ≥ 1` Abramowitz & Stegun
/// 7.1.26, `1 − t(a₁ + t(a₂ + …))·e^{−x²}`, `t = 1/(1+p|x|)` (absolute error ≤ 1.5·10⁻⁷ in exact
/// arithmetic, ≤ 2·10⁻⁷ in f32), sign restored.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_given_exp(x, exp(-x * x))
}

/// [`erf`] with `e = e^{−x²}` supplied by the caller (GELU's gradient needs that exponential
/// too, so it is computed once).
#[inline(always)]
fn erf_given_exp(x: f32, e: f32) -> f32 {
    const C: [f32; 12] = [
        core::f32::consts::FRAC_2_SQRT_PI,
        -3.761263890e-01,
        1.128379167e-01,
        -2.686617065e-02,
        5.223977625e-03,
        -8.548327023e-04,
        1.205533298e-04,
        -1.492565036e-05,
        1.646211437e-06,
        -1.636584469e-07,
        1.480719282e-08,
        -1.229055530e-09,
    ];
    let a = x.abs();
    // series branch
    let z = x * x;
    let mut s = C[11];
    let mut i = 11;
    while i > 0 {
        i -= 1;
        s = fma(s, z, C[i]);
    }
    let small = x * s;
    // tail branch
    let t = 1.0 / fma(0.327_591_1, a, 1.0);
    let mut poly = 1.061_405_4;
    poly = fma(poly, t, -1.453_152_1);
    poly = fma(poly, t, 1.421_413_8);
    poly = fma(poly, t, -0.284_496_72);
    poly = fma(poly, t, 0.254_829_6);
    poly *= t;
    let large = fma(-poly, e, 1.0).copysign(x);
    if a < 1.0 {
        small
    } else if x.is_nan() {
        x
    } else {
        large
    }
}

/// Natural logarithm (libm's `logf`, correctly rounded in practice; not a hot path).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    libm::logf(x)
}

/// `1/(1+e^{−x})`, relative error ≤ 3 ulp.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `1/√(2π)`.
pub const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Exact GELU `x·Φ(x)`, `Φ(x) = ½(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `d gelu/dx = Φ(x) + x·φ(x)`, `φ(x) = e^{−x²/2}/√(2π)` (one exponential shared by both terms).
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let e = exp(-0.5 * x * x);
    let cdf = 0.5 * (1.0 + erf_given_exp(x * core::f32::consts::FRAC_1_SQRT_2, e));
    cdf + x * INV_SQRT_2PI * e
}

/// `y = f(x)` for a [`Unary`] op.
#[inline(always)]
pub fn unary(op: Unary, x: f32) -> f32 {
    match op {
        Unary::Neg => -x,
        Unary::Exp => exp(x),
        Unary::Log => ln(x),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => 1.0 / x.sqrt(),
        Unary::Recip => 1.0 / x,
        Unary::Abs => x.abs(),
        Unary::Square => x * x,
        Unary::Tanh => libm::tanhf(x),
        Unary::Sigmoid => sigmoid(x),
        Unary::Erf => erf(x),
        Unary::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        Unary::Gelu => gelu(x),
        Unary::Silu => x * sigmoid(x),
        Unary::Softplus => {
            // max(x,0) + ln(1 + e^{−|x|}): no overflow for large x
            x.max(0.0) + libm::log1pf(exp(-x.abs()))
        }
        Unary::Sin => libm::sinf(x),
        Unary::Cos => libm::cosf(x),
        Unary::Affine { mul, add } => mul * x + add,
        Unary::Powf(p) => libm::powf(x, p),
        Unary::Clamp { min, max } => {
            if x.is_nan() {
                x
            } else {
                x.max(min).min(max)
            }
        }
    }
}

/// `f'(x)` for a [`Unary`] op, given `x` and the forward output `y = f(x)`.
#[inline(always)]
pub fn unary_grad(op: Unary, x: f32, y: f32) -> f32 {
    match op {
        Unary::Neg => -1.0,
        Unary::Exp => y,
        Unary::Log => 1.0 / x,
        Unary::Sqrt => 0.5 / y,
        Unary::Rsqrt => -0.5 * y * y * y,
        Unary::Recip => -y * y,
        Unary::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        Unary::Square => 2.0 * x,
        Unary::Tanh => 1.0 - y * y,
        Unary::Sigmoid => y * (1.0 - y),
        Unary::Erf => core::f32::consts::FRAC_2_SQRT_PI * exp(-x * x),
        Unary::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Unary::Gelu => gelu_grad(x),
        Unary::Silu => {
            let s = sigmoid(x);
            s + x * s * (1.0 - s)
        }
        Unary::Softplus => sigmoid(x),
        Unary::Sin => libm::cosf(x),
        Unary::Cos => -libm::sinf(x),
        Unary::Affine { mul, .. } => mul,
        Unary::Powf(p) => p * libm::powf(x, p - 1.0),
        Unary::Clamp { min, max } => {
            if x >= min && x <= max {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// `op(a, b)` for a [`Binary`] op.
#[inline(always)]
pub fn binary(op: Binary, a: f32, b: f32) -> f32 {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Max => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        }
        Binary::Min => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        }
        Binary::Pow => libm::powf(a, b),
        Binary::Gt => (a > b) as u8 as f32,
        Binary::Ge => (a >= b) as u8 as f32,
        Binary::Eq => (a == b) as u8 as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.72 {
            let u = ulps(exp(x), libm::expf(x));
            worst = worst.max(u);
            x += 0.0137;
        }
        assert!(worst <= 2, "worst ulp error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(200.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_matches_libm() {
        let mut x = -6.0f32;
        while x < 6.0 {
            let (got, want) = (erf(x), libm::erff(x));
            let e = (got - want).abs();
            if x.abs() < 1.0 {
                assert!(e <= 2.5e-7 * want.abs(), "erf({x}) relative error {}", e / want.abs());
            } else {
                assert!(e <= 2.0e-7, "erf({x}) error {e}");
            }
            x += 0.001;
        }
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn derivatives_match_central_differences() {
        // f64 central differences of the f64 forms of each function, compared with the f32
        // derivative formulas at a spread of points away from kinks.
        let ops = [
            Unary::Exp,
            Unary::Tanh,
            Unary::Sigmoid,
            Unary::Gelu,
            Unary::Silu,
            Unary::Softplus,
            Unary::Erf,
            Unary::Sin,
            Unary::Cos,
        ];
        for op in ops {
            for i in 0..40 {
                let x = -3.0 + 0.15 * i as f32 + 0.01;
                let h = 1e-3f32;
                let num = (unary(op, x + h) as f64 - unary(op, x - h) as f64) / (2.0 * h as f64);
                let ana = unary_grad(op, x, unary(op, x)) as f64;
                assert!((num - ana).abs() < 2e-3 * (1.0 + ana.abs()), "{op:?} at {x}: {num} vs {ana}");
            }
        }
    }
}
