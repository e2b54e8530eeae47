//! The seed models: parameter counts against the seeds, CI-sized training runs whose loss
//! must fall, pruning, the free-standing colony and the EPGL grid.
use protocell_core::cell::colony::{Colony, ColonyConfig};
use protocell_core::cell::grid::{Grid, GridConfig};
use protocell_core::cell::{scalar, CellMode, Pruning, N_COEFFS};
use protocell_core::models::{
    CellToken, CellTokenConfig, CellularTransformer, CellularTransformerConfig, LanguageModel,
};
use protocell_core::nn::{ForwardCtx, Module};
use protocell_core::{Ids, RngKey};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::json;

/// The seed's printed parameter count: 626,337 at its 29-character vocabulary (as coded).
#[test]
fn cell_token_seed_parameter_count() {
    let cfg: CellTokenConfig =
        serde_json::from_value(registry::preset("cell-token", Some("seed")).unwrap().model).unwrap();
    assert_eq!(cfg.mode, CellMode::AsCoded);
    let m = CellToken::<Cpu>::init(&cfg, RngKey::new(0), &CpuDevice).unwrap();
    assert_eq!(m.num_params(), 626_337);
    // at the byte vocabulary the tied embedding grows by (256 − 29)·128
    let bytes = CellTokenConfig { vocab_size: 256, ..cfg.clone() };
    assert_eq!(CellToken::<Cpu>::init(&bytes, RngKey::new(0), &CpuDevice).unwrap().num_params(), 655_393);
    // the sound mode adds the per-block stimulus projection (128·6 + 6)
    let sound = CellTokenConfig { mode: CellMode::Sound, ..bytes };
    assert_eq!(CellToken::<Cpu>::init(&sound, RngKey::new(0), &CpuDevice).unwrap().num_params(), 656_167);
}

/// The seed's printed parameter counts: 401,942 (baseline) and 270,454 (cellular) at 22 symbols.
#[test]
fn cellular_transformer_seed_parameter_counts() {
    for (preset, want) in [("seed", 270_454), ("baseline", 401_942)] {
        let cfg: CellularTransformerConfig =
            serde_json::from_value(registry::preset("cellular-transformer", Some(preset)).unwrap().model).unwrap();
        let m = CellularTransformer::<Cpu>::init(&cfg, RngKey::new(0), &CpuDevice).unwrap();
        assert_eq!(m.num_params(), want, "{preset}");
    }
}

fn run_tiny(model: &str, sets: &[(&str, serde_json::Value)], steps: u64) -> (f64, f64, Vec<f64>) {
    let mut v = registry::preset(model, Some("tiny")).unwrap().to_value();
    v["train"]["steps"] = json!(steps);
    for (k, val) in sets {
        let mut slot = &mut v;
        for part in k.split('.') {
            slot = &mut slot[part];
        }
        *slot = val.clone();
    }
    let mut s = new_session(RunConfig::from_value(v).unwrap(), Device::Cpu).unwrap();
    let before = s.evaluate().unwrap();
    let losses: Vec<f64> = (0..steps).map(|_| s.train_step().unwrap().loss).collect();
    (before, s.evaluate().unwrap(), losses)
}

/// Every cell mode trains: validation loss falls by at least a third from ln 256 in 80 steps.
#[test]
fn cell_token_trains_in_every_mode() {
    for mode in ["sound", "as-described", "as-coded"] {
        let (before, after, losses) = run_tiny("cell-token", &[("model.mode", json!(mode))], 80);
        assert!(losses.iter().all(|l| l.is_finite()));
        assert!(before > 5.0 && after < 0.67 * before, "{mode}: val {before:.3} -> {after:.3}");
    }
}

/// The seed corpus with the seed's character vocabulary (29 symbols) is learnt fast.
#[test]
fn cell_token_learns_the_seed_corpus() {
    let (before, after, _) = run_tiny(
        "cell-token",
        &[
            ("train.data.corpus", json!("seed-sentences")),
            ("train.data.corpus_bytes", json!(40)),
            ("train.data.tokenizer", json!("chars")),
            ("model.mode", json!("as-coded")),
        ],
        80,
    );
    // ln 29 = 3.37 at init; 80 tiny steps reach ~2.77, so a drop of 0.4 nats must be learning.
    assert!(before > 3.0 && after < before - 0.4, "val {before:.3} -> {after:.3}");
}

/// The Cellular Transformer trains on the seed's phrase data with epoch sampling.
#[test]
fn cellular_transformer_trains() {
    let (before, after, losses) = run_tiny("cellular-transformer", &[], 60);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(after < 0.7 * before, "val {before:.3} -> {after:.3}");
}

/// Aggressive pruning kills blocks, and the model reports the alive fractions it logged.
#[test]
fn pruning_masks_blocks_and_is_logged() {
    let cfg = CellTokenConfig {
        vocab_size: 32,
        ctx_len: 16,
        d_model: 16,
        num_blocks: 4,
        inner_steps: 4,
        n_head: 2,
        depth: 1,
        pruning: Some(Pruning { rate: 0.6, threshold: 0.5 }),
        ..CellTokenConfig::default()
    };
    let m = CellToken::<Cpu>::init(&cfg, RngKey::new(3), &CpuDevice).unwrap();
    let ids = Ids::<Cpu>::from_u32(&(0..32u32).collect::<Vec<_>>(), &[2, 16], &CpuDevice).unwrap();
    let mut ctx = ForwardCtx::eval();
    let logits = m.forward(&ids, &mut ctx).unwrap();
    assert!(logits.to_vec().unwrap().iter().all(|v| v.is_finite()));
    let stats: std::collections::HashMap<_, _> = ctx.stats().iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let alive = stats["alive_blocks"];
    assert!((0.0..1.0).contains(&alive), "alive fraction {alive}");
    assert!(stats["alive_tokens"] >= alive);
    // the same model without pruning keeps every block
    let m2 = CellToken::<Cpu>::init(&CellTokenConfig { pruning: None, ..cfg }, RngKey::new(3), &CpuDevice).unwrap();
    let mut ctx2 = ForwardCtx::eval();
    m2.forward(&ids, &mut ctx2).unwrap();
    assert!(ctx2.stats().is_empty());
}

/// The grid keeps every channel in [0, 1]; the stem cell's energy dies out; cells under the
/// toxin die (P saturates while E stays near zero).
#[test]
fn epgl_grid_dynamics() {
    let mut g = Grid::<Cpu>::new(GridConfig { size: 20, theta: 0.85, seed: 4 }, &CpuDevice).unwrap();
    let start = g.channel_means().unwrap();
    assert!(start[0] > 0.0 && start[1] == 0.0);
    let mut died = 0;
    for t in 0..60 {
        let s = g.stimulus(t).unwrap();
        died += g.step(&s).unwrap();
        assert!(g.h.to_vec().unwrap().iter().all(|&v| (0.0..=1.0).contains(&v)), "frame {t}");
    }
    let end = g.channel_means().unwrap();
    assert!(end[0] < 0.05, "energy should die out: {end:?}");
    assert!(end[1] > 0.01, "pressure diffuses from the stimulated squares: {end:?}");
    assert!(died > 0, "no apoptosis under the toxin");
    // invalid sizes are rejected
    assert!(Grid::<Cpu>::new(GridConfig { size: 3, theta: 0.85, seed: 0 }, &CpuDevice).is_err());
}

#[test]
fn colony_step_matches_the_scalar_rule() {
    let cfg = ColonyConfig { mode: CellMode::AsDescribed, inner_steps: 3, ..ColonyConfig::new(4) };
    let mut c = Colony::<Cpu>::new(cfg, &CpuDevice).unwrap();
    let drive = [0.3f32, 0.0, 0.7, 0.1];
    c.step(&drive).unwrap();
    let spec = cfg.spec();
    let mut traj = scalar::Trajectory::<f64>::new(4, 3);
    let cf: Vec<f64> = cfg.coeffs.iter().map(|&x| x as f64).collect();
    let s: Vec<f64> = drive.iter().map(|&x| x as f64).collect();
    let h0 = vec![0.5f64; 16];
    let w0: Vec<f64> = scalar::initial_mucus(cfg.mode, 4).iter().map(|&x| x as f64).collect();
    scalar::forward(&spec, &cf, &s, &h0, &w0, &mut traj);
    for (a, b) in c.state().unwrap().iter().zip(traj.h_final()) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
    for (a, b) in c.mucus().unwrap().iter().zip(traj.w_final()) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(c.steps_done(), 1);
}

#[test]
fn colony_rejects_bad_input() {
    let dev = CpuDevice;
    assert!(Colony::<Cpu>::new(ColonyConfig::new(0), &dev).is_err());
    let neg = ColonyConfig { coeffs: [-0.1; N_COEFFS], ..ColonyConfig::new(3) };
    assert!(Colony::<Cpu>::new(neg, &dev).unwrap_err().to_string().contains("non-negative"));
    let mut c = Colony::<Cpu>::new(ColonyConfig::new(3), &dev).unwrap();
    assert!(c.step(&[0.1, 0.2]).is_err());
    assert!(c.step(&[0.1, f32::NAN, 0.2]).is_err());
    assert!(c.set_state(&[2.0; 12]).is_err());
    assert!(c.set_mucus(&[0.5; 9]).unwrap_err().to_string().contains("diagonal"));
    assert!(c.set_mucus(&[0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).is_err());
    c.set_mucus(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
    c.set_state(&[0.25; 12]).unwrap();
    assert_eq!(c.state().unwrap(), vec![0.25; 12]);
    c.step(&[0.1, 0.2, 0.3]).unwrap();
    assert!(c.state().unwrap().iter().all(|v| (0.0..=1.0).contains(v)));
}
