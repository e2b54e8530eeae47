//! The conformance and gradient suites on the CPU reference backend.
use protocell_cpu::{Cpu, CpuDevice};
use protocell_tests::suite::{self, check_cpu_vs_naive, check_fused, check_vs_cpu};
use protocell_tests::{grad, Tol};

/// CPU vs naive f64 host loops. Sums of up to ~10^5 f32 terms and the polynomial exp/erf
/// (≤ 2 ulp / ≤ 2·10⁻⁷) bound the error well below 1e-4 relative; attention and norms
/// accumulate in f32 over ≤ 150 terms.
#[test]
fn cpu_matches_naive_reference() {
    let tol = Tol { abs: 2e-5, rel: 1e-4 };
    suite::run_property(400, |c| check_cpu_vs_naive(c, tol)).unwrap();
}

/// Fused CPU kernels vs the primitive compositions they replace (same backend, different
/// association of f32 sums and a log-sum-exp vs max-subtract path).
#[test]
fn cpu_fused_matches_composite() {
    let tol = Tol { abs: 2e-5, rel: 2e-4 };
    suite::run_property(300, |c| if c.is_fused() { check_fused::<Cpu>(c, &CpuDevice, tol) } else { Ok(()) }).unwrap();
}

/// The generic backend-vs-CPU check run on the CPU itself must agree bitwise (sanity of the harness).
#[test]
fn cpu_vs_cpu_is_exact() {
    let tol = Tol { abs: 0.0, rel: 0.0 };
    suite::run_property(64, |c| check_vs_cpu::<Cpu>(c, &CpuDevice, tol)).unwrap();
}

/// Autodiff<Cpu> vs central differences for every differentiable op (tolerance argued in `grad`).
#[test]
fn cpu_gradients_match_finite_differences() {
    grad::run_property::<Cpu>(&CpuDevice, 300).unwrap();
}
