//! The synaptic GPT: `synapses = off` is the GPT; both synaptic modes train; the causal
//! mode is causal; Hebbian writes happen in training steps only (evaluation and generation
//! leave every weight as it was; a failed step writes nothing); vitals are logged.
use protocell_core::autodiff::Autodiff;
use protocell_core::error::Error;
use protocell_core::models::{Gpt, LanguageModel, SynapticGpt, SynapticGptConfig};
use protocell_core::nn::{ForwardCtx, Module};
use protocell_core::optim::{AdamWConfig, OptimizerSettings, Schedule};
use protocell_core::synapse::{PresynMode, SynapticConfig};
use protocell_core::train::Trainer;
use protocell_core::{Ids, RngKey};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_runtime::infer::Sampling;
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::json;

fn tiny(mode: PresynMode) -> SynapticGptConfig {
    SynapticGptConfig {
        vocab_size: 32,
        ctx_len: 16,
        n_layer: 2,
        n_head: 2,
        d_model: 16,
        synapses: mode,
        synaptic: SynapticConfig { attn_topk: 4, ..SynapticConfig::default() },
        ..SynapticGptConfig::default()
    }
}

fn ids<B: protocell_core::Backend<Device = CpuDevice>>(v: &[u32], b: usize, t: usize) -> Ids<B> {
    Ids::<B>::from_u32(v, &[b, t], &CpuDevice).unwrap()
}

fn tokens(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7 + salt * 3 + i * i) % 32).collect()
}

#[test]
fn synapses_off_is_the_gpt_of_the_same_shape() {
    let cfg = tiny(PresynMode::Off);
    let syn = SynapticGpt::<Cpu>::init(&cfg, RngKey::new(9), &CpuDevice).unwrap();
    let gpt = Gpt::<Cpu>::init(&cfg.gpt(), RngKey::new(9), &CpuDevice).unwrap();
    assert_eq!(syn.num_params(), gpt.num_params());
    let x = ids::<Cpu>(&tokens(32, 1), 2, 16);
    let a = syn.forward(&x, &mut ForwardCtx::eval()).unwrap().to_vec().unwrap();
    let b = gpt.forward(&x, &mut ForwardCtx::eval()).unwrap().to_vec().unwrap();
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "off differs from the GPT");
    let mut n = 0;
    syn.for_each_buffer(&mut |_, _| n += 1);
    assert_eq!(n, 2, "only the two attention normalisers are buffers with synapses off");
}

/// With causal synapses, the logits of positions before `t` do not depend on the token at `t`.
#[test]
fn the_causal_model_is_causal() {
    for mode in [PresynMode::Causal, PresynMode::Seed] {
        let m = SynapticGpt::<Cpu>::init(&tiny(mode), RngKey::new(2), &CpuDevice).unwrap();
        let base = tokens(16, 4);
        let run = |v: &[u32]| m.forward(&ids::<Cpu>(v, 1, 16), &mut ForwardCtx::eval()).unwrap().to_vec().unwrap();
        let l0 = run(&base);
        for t in [3usize, 9, 15] {
            let mut v = base.clone();
            v[t] = (v[t] + 5) % 32;
            let l1 = run(&v);
            assert_eq!(&l1[..t * 32], &l0[..t * 32], "{mode:?}: position {t} changed earlier logits");
            assert_ne!(&l1[t * 32..], &l0[t * 32..], "{mode:?}: position {t} changed nothing");
        }
    }
}

fn run_cfg(preset: &str, steps: u64) -> RunConfig {
    let mut v = registry::preset("synaptic-gpt", Some(preset)).unwrap().to_value();
    v["train"]["steps"] = json!(steps);
    v["train"]["batch_size"] = json!(4);
    v["train"]["eval_batches"] = json!(2);
    v["train"]["data"]["corpus_bytes"] = json!(30_000);
    RunConfig::from_value(v).unwrap()
}

/// Both synaptic modes learn: validation loss falls by a third from ln 256 in 60 steps, and
/// the vitals of every layer are logged.
#[test]
fn both_modes_train_and_log_vitals() {
    for mode in ["causal", "seed"] {
        let mut run = run_cfg("tiny", 60);
        run.model["synapses"] = json!(mode);
        let mut s = new_session(run, Device::Cpu).unwrap();
        let before = s.evaluate().unwrap();
        let mut last = None;
        for _ in 0..60 {
            last = Some(s.train_step().unwrap());
        }
        let after = s.evaluate().unwrap();
        assert!(before > 5.0 && after < before * 2.0 / 3.0, "{mode}: val loss {before} → {after}");
        let stats = last.unwrap().model_stats;
        for name in ["l0.rrp", "l1.reserve", "l0.calcium", "l1.energy", "l0.fast_norm"] {
            let v = stats.iter().find(|(n, _)| n == name).map(|x| x.1);
            assert!(v.is_some_and(f64::is_finite), "{mode}: {name} missing from {stats:?}");
        }
        let rrp = stats.iter().find(|(n, _)| n == "l0.rrp").unwrap().1;
        assert!(rrp < 6.0, "{mode}: the pools never depleted (mean RRP {rrp})");
    }
}

fn all_bits<B: protocell_core::Backend, M: Module<B>>(m: &M) -> Vec<Vec<u32>> {
    let mut v = Vec::new();
    m.for_each_param(&mut |_, p| v.push(p.to_vec().unwrap().iter().map(|x| x.to_bits()).collect()));
    m.for_each_buffer(&mut |_, b| v.push(b.to_vec().unwrap().iter().map(|x| x.to_bits()).collect()));
    v
}

/// Evaluation and generation leave every parameter and buffer as it was; a training step
/// writes the Hebbian buffers; a failed step writes nothing.
#[test]
fn weights_change_only_in_training_steps() {
    type A = Autodiff<Cpu>;
    let mut m = SynapticGpt::<A>::init(&tiny(PresynMode::Causal), RngKey::new(5), &CpuDevice).unwrap();
    m.for_each_param_mut(&mut |_, p| {
        let v = p.require_grad();
        p.set(v)
    });
    let settings = OptimizerSettings {
        adamw: AdamWConfig::default(),
        schedule: Schedule { lr: 1e-3, min_lr: 1e-3, warmup: 0, total: 0 },
    };
    let mut tr = Trainer::<Cpu>::new(settings).unwrap();
    let (x, y) = (tokens(32, 1), tokens(32, 2));
    let (xi, yi) = (ids::<A>(&x, 2, 16), ids::<A>(&y, 2, 16));
    tr.step_with::<A, _>(&mut m, RngKey::new(1), |m, ctx| m.loss(&xi, &yi, ctx)).unwrap();
    let before = all_bits(&m);
    // evaluation and generation
    for _ in 0..3 {
        m.loss(&xi, &yi, &mut ForwardCtx::eval()).unwrap();
    }
    let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 0 };
    protocell_runtime::infer::generate::<A, _>(&m, &x[..5], 6, &greedy, &CpuDevice).unwrap();
    assert_eq!(all_bits(&m), before, "evaluation or generation changed a weight");
    // a failed step: the forward stages Hebbian writes, the loss is not finite
    let e = tr
        .step_with::<A, _>(&mut m, RngKey::new(2), |m, ctx| m.loss(&xi, &yi, ctx)?.mul_scalar(1e30)?.exp())
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert_eq!(all_bits(&m), before, "a failed step changed a weight");
    // a good step writes the fast weights
    let norm0 = m.blocks[0].mlp.fc.fast_norm().unwrap();
    tr.step_with::<A, _>(&mut m, RngKey::new(3), |m, ctx| m.loss(&xi, &yi, ctx)).unwrap();
    let norm1 = m.blocks[0].mlp.fc.fast_norm().unwrap();
    assert!(norm1 > norm0 && norm1 > 0.0, "fast weights did not move: {norm0} → {norm1}");
    let ema = m.blocks[0].attn.ema.to_scalar().unwrap();
    assert!(ema != 1.0 && ema.is_finite(), "the normaliser did not move: {ema}");
}

/// The Hebbian loop stays bounded under aggressive training: fast weights within their norm
/// ceiling, gains within their bound, everything finite (the seed's unbounded writes diverge).
#[test]
fn hebbian_state_stays_bounded() {
    let mut run = run_cfg("tiny", 150);
    run.train.lr = 1e-2;
    run.train.min_lr = 1e-2;
    let mut s = new_session(run, Device::Cpu).unwrap();
    for _ in 0..150 {
        let st = s.train_step().unwrap();
        assert!(st.loss.is_finite());
    }
    let ck = s.checkpoint().unwrap();
    let cfg = SynapticConfig::default();
    let mut checked = 0;
    for t in ck.tensors().iter().filter(|t| t.role == protocell_core::record::Role::Buffer) {
        let v = t.data.as_f32().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{} holds a non-finite value", t.path);
        if t.path.ends_with("w_fast") {
            let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            assert!(norm <= cfg.fast_weight_max_norm * (1.0 + 1e-5), "{}: |W_fast| = {norm}", t.path);
            checked += 1;
        }
        if t.path.ends_with("_gain") {
            assert!(v.iter().all(|x| x.abs() as f64 <= cfg.post_gain_bound + 1e-6), "{} out of bounds", t.path);
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "2 layers × 2 Hebbian linears × (fast weights + 2 gains)");
}
