//! Muon (the nanochat recipe's optimiser for block matrices): the Newton–Schulz
//! orthogonalisation against an f64 host reference, the update formula on one step, AdamW
//! untouched on every other parameter, training, determinism and resume.
use protocell_core::autodiff::Autodiff;
use protocell_core::data::Batch;
use protocell_core::models::{Gpt, GptConfig, LanguageModel, SynapticGpt, SynapticGptConfig};
use protocell_core::nn::{ForwardCtx, Module};
use protocell_core::optim::{newton_schulz, AdamWConfig, MuonConfig, Schedule};
use protocell_core::record::Checkpoint;
use protocell_core::rng::{Philox, RngKey};
use protocell_core::train::checkpoint::{restore_trainer, save_trainer};
use protocell_core::train::{OptimizerSettings, Trainer};
use protocell_core::Tensor;
use protocell_cpu::{Cpu, CpuDevice};
use std::collections::BTreeMap;

type A = Autodiff<Cpu>;

fn randn(r: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut p = Philox::new(RngKey::new(seed));
    (0..r * c).map(|_| (p.next_f64() * 2.0 - 1.0) as f32).collect()
}

/// `NS₅` in f64 on the host, written from the formula.
fn ns_ref(g: &[f32], r: usize, c: usize, steps: usize) -> Vec<f64> {
    let (a, b, cc) = (3.4445f64, -4.7750f64, 2.0315f64);
    let tall = r > c;
    let (rr, kk) = if tall { (c, r) } else { (r, c) };
    let mut x: Vec<f64> = (0..rr * kk)
        .map(|i| {
            let (p, q) = (i / kk, i % kk);
            (if tall { g[q * c + p] } else { g[p * c + q] }) as f64
        })
        .collect();
    let n = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    x.iter_mut().for_each(|v| *v /= n + 1e-7);
    let mm = |a: &[f64], b: &[f64], n: usize, k: usize, m: usize| {
        let mut o = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                o[i * m + j] = (0..k).map(|l| a[i * k + l] * b[l * m + j]).sum();
            }
        }
        o
    };
    for _ in 0..steps {
        let xt: Vec<f64> = (0..kk * rr).map(|i| x[(i % rr) * kk + i / rr]).collect();
        let am = mm(&x, &xt, rr, kk, rr);
        let a2 = mm(&am, &am, rr, rr, rr);
        let bm: Vec<f64> = am.iter().zip(&a2).map(|(p, q)| b * p + cc * q).collect();
        let bx = mm(&bm, &x, rr, rr, kk);
        x = x.iter().zip(&bx).map(|(p, q)| a * p + q).collect();
    }
    if tall {
        (0..r * c).map(|i| x[(i % c) * kk + i / c]).collect()
    } else {
        x
    }
}

#[test]
fn newton_schulz_matches_the_f64_formula_and_orthogonalises() {
    for (r, c, seed) in [(8, 8, 1), (5, 12, 2), (24, 7, 3), (1, 9, 4), (64, 32, 5)] {
        let g = randn(r, c, seed);
        let t = Tensor::<Cpu>::from_f32(&g, &[r, c], &CpuDevice).unwrap();
        let o = newton_schulz(&t, 5).unwrap();
        assert_eq!(o.shape(), &[r, c]);
        let got = o.to_vec().unwrap();
        let want = ns_ref(&g, r, c, 5);
        // f32 products of unit-norm matrices over 5 iterations: 1e-4 absolute
        for (a, b) in got.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-4, "{r}x{c}: {a} vs {b}");
        }
        // the wide Gram matrix has eigenvalues near 1 (NS₅ aims at [0.7, 1.2] for σ ≥ 0.1·σmax):
        // its trace per row is in that band
        let k = r.min(c) as f64;
        let fro2: f64 = got.iter().map(|v| (*v as f64).powi(2)).sum();
        assert!(fro2 / k > 0.3 && fro2 / k < 1.5, "{r}x{c}: ‖O‖²/k = {}", fro2 / k);
    }
}

/// The model with its parameters as gradient leaves.
fn trainable<M: Module<A>>(mut m: M) -> M {
    m.for_each_param_mut(&mut |_, p| {
        let v = p.require_grad();
        p.set(v)
    });
    m
}

fn cfg() -> GptConfig {
    GptConfig { vocab_size: 16, ctx_len: 8, n_layer: 2, n_head: 2, d_model: 8, ..GptConfig::default() }
}

fn settings(muon: bool) -> OptimizerSettings {
    OptimizerSettings {
        adamw: AdamWConfig {
            weight_decay: 0.0,
            muon: MuonConfig { enabled: muon, ..MuonConfig::default() },
            ..AdamWConfig::default()
        },
        schedule: Schedule { lr: 1e-3, min_lr: 1e-3, warmup: 0, total: 0 },
    }
}

fn batch(k: u32) -> Batch {
    let inputs: Vec<u32> = (0..16).map(|i| (i * 3 + k) % 16).collect();
    let targets: Vec<u32> = (0..16).map(|i| (i * 5 + k) % 16).collect();
    Batch { batch: 2, seq: 8, inputs, targets }
}

fn params(m: &Gpt<A>) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = BTreeMap::new();
    m.for_each_param(&mut |path, p| {
        out.insert(path.to_string(), (p.shape().to_vec(), p.to_vec().unwrap()));
    });
    out
}

#[test]
fn one_muon_step_orthogonalises_block_matrices_and_leaves_the_rest_to_adamw() {
    let m0 = trainable(Gpt::<A>::init(&cfg(), RngKey::new(3), &CpuDevice).unwrap());
    let before = params(&m0);
    // the gradients of the batch (no clipping: the norm stays under 1 at this size? clip off)
    let mut no_clip = settings(true);
    no_clip.adamw.grad_clip = 0.0;
    let mut plain = settings(false);
    plain.adamw.grad_clip = 0.0;
    let (mut ma, mut mb) = (m0.clone(), m0.clone());
    let mut ta = Trainer::<Cpu>::new(no_clip.clone()).unwrap();
    let mut tb = Trainer::<Cpu>::new(plain).unwrap();
    ta.step::<A, _>(&mut ma, &batch(0), RngKey::new(0), &CpuDevice).unwrap();
    tb.step::<A, _>(&mut mb, &batch(0), RngKey::new(0), &CpuDevice).unwrap();
    // gradients for the formula
    let x = protocell_core::Ids::<A>::from_u32(&batch(0).inputs, &[2, 8], &CpuDevice).unwrap();
    let y = protocell_core::Ids::<A>::from_u32(&batch(0).targets, &[2, 8], &CpuDevice).unwrap();
    let grads = m0.loss(&x, &y, &mut ForwardCtx::train(RngKey::new(0))).unwrap().backward().unwrap();
    let mut gmap = BTreeMap::new();
    m0.for_each_param(&mut |path, p| {
        gmap.insert(path.to_string(), grads.get(p.value()).unwrap().to_vec().unwrap());
    });
    let (a, b) = (params(&ma), params(&mb));
    let mu = MuonConfig::default();
    let mut n_muon = 0;
    for (path, (shape, w0)) in &before {
        let muon = mu.clone();
        let is_muon = MuonConfig { enabled: true, ..muon }.applies(path, shape);
        if !is_muon {
            // AdamW's update, bit for bit the plain optimiser's
            assert_eq!(a[path].1, b[path].1, "{path} should be AdamW's");
            continue;
        }
        n_muon += 1;
        assert!(path.starts_with("blocks.") && shape.len() == 2, "{path}");
        // first step: M = (1 − μ₀)G, U = (1 − μ₀)G + μ₀M; NS₅ is scale-invariant: O = NS₅(G)
        let o = ns_ref(&gmap[path], shape[0], shape[1], 5);
        let eta = 0.02 * ((shape[0] as f64 / shape[1] as f64).max(1.0)).sqrt();
        for ((w, w1), o) in w0.iter().zip(&a[path].1).zip(&o) {
            let want = *w as f64 - eta * o;
            assert!((*w1 as f64 - want).abs() < 1e-5, "{path}: {w1} vs {want}");
        }
    }
    // qkv, proj, fc, proj per block
    assert_eq!(n_muon, 4 * 2);
    assert!(before.keys().any(|p| p == "wte.weight") && !mu.applies("wte.weight", &[16, 8]));
}

#[test]
fn muon_trains_deterministically_and_resumes_bit_exactly() {
    let run = |steps: u64, resume_at: Option<u64>| -> (Vec<f64>, Vec<f32>) {
        let pc = SynapticGptConfig::default();
        let c = SynapticGptConfig { vocab_size: 256, ctx_len: 8, n_layer: 1, n_head: 2, d_model: 8, ..pc };
        let mut m = trainable(SynapticGpt::<A>::init(&c, RngKey::new(4), &CpuDevice).unwrap());
        let mut t = Trainer::<Cpu>::new(settings(true)).unwrap();
        let mut losses = Vec::new();
        for k in 0..steps {
            if resume_at == Some(k) {
                let tok = protocell_core::data::Tokenizer::Bytes;
                let mut ck = protocell_core::train::checkpoint::model_checkpoint::<A, _>(&m, &tok).unwrap();
                save_trainer(&t, &m, &mut ck).unwrap();
                let ck = Checkpoint::decode(&ck.encode().unwrap()).unwrap();
                m = trainable(
                    protocell_core::train::checkpoint::load_model::<A, SynapticGpt<A>>(&ck, &CpuDevice).unwrap(),
                );
                t = restore_trainer::<Cpu, A, _>(&ck, &m, &CpuDevice, None).unwrap();
            }
            let r = t.step::<A, _>(&mut m, &batch(k as u32), RngKey::new(k), &CpuDevice).unwrap();
            losses.push(r.loss);
        }
        let mut w = Vec::new();
        m.for_each_param(&mut |_, p| w.extend(p.to_vec().unwrap()));
        (losses, w)
    };
    let (l1, w1) = run(40, None);
    assert!(l1[39] < l1[0] - 0.1, "Muon should learn the batches: {} → {}", l1[0], l1[39]);
    let (l2, w2) = run(40, None);
    assert_eq!(l1, l2);
    assert_eq!(w1, w2);
    let (l3, w3) = run(40, Some(17));
    assert_eq!(l1, l3, "resumed run differs");
    assert_eq!(w1, w3);
}

#[test]
fn muon_settings_are_validated() {
    for bad in [
        MuonConfig { lr: -1.0, ..MuonConfig::default() },
        MuonConfig { momentum: 1.0, ..MuonConfig::default() },
        MuonConfig { ns_steps: 0, ..MuonConfig::default() },
        MuonConfig { weight_decay: f64::NAN, ..MuonConfig::default() },
    ] {
        let s = AdamWConfig { muon: bad, ..AdamWConfig::default() };
        assert!(s.validate().is_err());
    }
    let m = MuonConfig { enabled: true, ..MuonConfig::default() };
    assert!(m.applies("blocks.0.attn.qkv.weight", &[24, 8]));
    assert!(!m.applies("blocks.0.attn.qkv.bias", &[24]));
    assert!(!m.applies("wpe.weight", &[8, 8]));
    assert!(m.applies("wpex.weight", &[8, 8]), "a prefix matches whole path segments only");
    assert_eq!(m.momentum_at(0), 0.85);
    assert!((m.momentum_at(150) - 0.90).abs() < 1e-12);
    assert_eq!(m.momentum_at(10_000), 0.95);
}
