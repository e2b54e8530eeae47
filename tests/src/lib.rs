//! The protocell test suite, written once and generic over the backend.
//!
//! * [`suite`] — every primitive and fused op of a backend `B`, compared with the CPU
//!   reference backend on proptest-generated shapes and values, and every fused override
//!   compared with the composition of primitives it replaces;
//! * [`grad`] — finite-difference checks of every differentiable op through `Autodiff<B>`;
//! * [`reference`] — naive host loops that pin the CPU reference itself.
//!
//! A backend crate's test file calls these with its own device and tolerance; see
//! `tests/cpu.rs`.
pub mod grad;
pub mod reference;
pub mod spy;
pub mod suite;

/// Absolute + relative tolerance: `|a − b| ≤ abs + rel·|b|`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    /// Absolute part.
    pub abs: f32,
    /// Relative part.
    pub rel: f32,
}

impl Tol {
    /// Bitwise-level agreement up to reassociation of f32 sums.
    pub const TIGHT: Tol = Tol { abs: 1e-5, rel: 1e-5 };
}

/// Compares two buffers elementwise; the error names the first offending index.
pub fn close(what: &str, got: &[f32], want: &[f32], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol.abs + tol.rel * w.abs()
        };
        if !ok {
            return Err(format!("{what}: element {i}: got {g}, want {w} (tol {tol:?})"));
        }
    }
    Ok(())
}

/// A deterministic pseudo-random buffer in `[lo, hi)` (for large cases outside proptest).
pub fn det_values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = protocell_core::rng::Philox::new(protocell_core::RngKey::new(seed));
    (0..n).map(|_| lo + (hi - lo) * r.next_f32()).collect()
}

/// `shared/` beside the project root (`../shared`), when present.
pub fn shared_dir() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    p.is_dir().then_some(p)
}

/// A proptest runner: deterministic (the same cases on every run, so CI is reproducible)
/// unless `PROTOCELL_PROPTEST_RANDOM=1` asks for fresh random cases to explore.
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    if std::env::var("PROTOCELL_PROPTEST_RANDOM").is_ok_and(|v| v == "1") {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}

/// The `tiny` preset of `model` cut to 12 steps of 4 × 32 tokens on a 20 kB corpus: the run
/// the backend suites train on every backend.
pub fn tiny_run(model: &str) -> protocell_runtime::RunConfig {
    let mut v = protocell_runtime::registry::preset(model, Some("tiny")).expect("preset").to_value();
    v["train"]["steps"] = serde_json::json!(12);
    v["train"]["batch_size"] = serde_json::json!(4);
    v["train"]["seq_len"] = serde_json::json!(32);
    v["train"]["eval_batches"] = serde_json::json!(1);
    v["train"]["data"]["corpus_bytes"] = serde_json::json!(20_000);
    protocell_runtime::RunConfig::from_value(v).expect("valid config")
}

/// Every model trains on `device` with a falling loss and the loss curve of the CPU (same
/// seed, same batches: only float rounding differs; 2·10⁻³ relative at every step), and a
/// checkpoint written on either backend loads on the other and generates the same tokens at
/// temperature 0. Panics with the model's name on the first difference.
pub fn trains_every_model_and_checkpoints_cross_backends(device: protocell_runtime::Device) {
    use protocell_runtime::infer::Sampling;
    use protocell_runtime::{load_model, new_session, Device};
    for entry in protocell_runtime::registry::models() {
        let model = entry.name;
        let mut on_dev = new_session(tiny_run(model), device).unwrap();
        let mut on_cpu = new_session(tiny_run(model), Device::Cpu).unwrap();
        let mut losses = Vec::new();
        for _ in 0..12 {
            let (g, c) = (on_dev.train_step().unwrap().loss, on_cpu.train_step().unwrap().loss);
            assert!((g - c).abs() < 2e-3 * c.abs().max(1.0), "{model}: {device} loss {g} vs cpu {c}");
            losses.push(g);
        }
        assert!(losses[11] < losses[0] - 0.1, "{model}: {losses:?}");
        let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
        let prompt = on_cpu.tokenizer().encode("the ").unwrap();
        for ckpt in [on_dev.checkpoint().unwrap(), on_cpu.checkpoint().unwrap()] {
            let a = load_model(&ckpt, Device::Cpu).unwrap().generate(&prompt, 16, &greedy).unwrap();
            let b = load_model(&ckpt, device).unwrap().generate(&prompt, 16, &greedy).unwrap();
            assert_eq!(a, b, "{model}: greedy tokens differ between backends");
        }
    }
}
