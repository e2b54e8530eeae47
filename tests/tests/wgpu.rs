//! The conformance and gradient suites on the wgpu backend, against the CPU reference.
//!
//! Without an adapter the tests print a skip line, except under CI (`CI=true`), where a
//! missing adapter is a failure: CI installs Mesa's software drivers. `WGPU_BACKEND`
//! (`vulkan`, `gl`) picks the API.
use protocell_tests::suite::{self, check_vs_cpu};
use protocell_tests::{grad, Tol};
use protocell_wgpu::{Wgpu, WgpuDevice};

fn device() -> Option<WgpuDevice> {
    match WgpuDevice::new(0) {
        Ok(d) => {
            eprintln!("wgpu adapter: {}", d.info());
            Some(d)
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI needs a wgpu adapter: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: no wgpu adapter ({e})");
            None
        }
    }
}

/// Every primitive and (composed) fused op vs the CPU. The GPU's `exp`, `log`, `sin`, `pow`
/// and `sqrt` are specified to a few ulp (WGSL: `exp` 3 + 2|x| ulp, `log` 3 ulp absolute
/// 2⁻²¹ near 1) rather than the CPU's ≤ 2 ulp polynomials, and its sums run in a different
/// order: 1e-4 relative plus 2e-5 absolute covers both with margin for the composed ops
/// (softmax, LayerNorm, attention) that chain three or four of them.
#[test]
fn wgpu_matches_cpu() {
    let Some(dev) = device() else { return };
    let tol = Tol { abs: 2e-5, rel: 1e-4 };
    suite::run_property(150, |c| check_vs_cpu::<Wgpu>(c, &dev, tol)).unwrap();
}

/// Autodiff<Wgpu> vs central differences (the same suite and tolerance argument as the CPU's).
#[test]
fn wgpu_gradients_match_finite_differences() {
    let Some(dev) = device() else { return };
    grad::run_property::<Wgpu>(&dev, 60).unwrap();
}

/// Every model trains on wgpu with a falling loss and the loss curve of the CPU (same seed,
/// same batches: only float rounding differs), and a checkpoint written on one backend loads
/// on the other and generates the same tokens at temperature 0.
#[test]
fn wgpu_trains_every_model_and_checkpoints_cross_backends() {
    if device().is_none() {
        return;
    }
    protocell_tests::trains_every_model_and_checkpoints_cross_backends(protocell_runtime::Device::Wgpu(0));
}
