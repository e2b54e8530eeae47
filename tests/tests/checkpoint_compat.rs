//! Checkpoint compatibility: version-1 files written by the previous format (a training
//! session's, and an embedded model's with its optimizer; `tests/data/v1/`) load, resume and
//! keep training to the same bits as the code that wrote them (figures in
//! `tests/data/v1/expected.json`); the optimizer of a training session's checkpoint loads
//! through the embedding API; version 2 round-trips all of it; restoring is an index lookup.
use protocell_core::autodiff::Autodiff;
use protocell_core::nn::{Param, ParamIds};
use protocell_core::optim::AdamWConfig;
use protocell_core::optim::Schedule;
use protocell_core::record::Checkpoint;
use protocell_core::train::checkpoint::{restore_trainer, save_trainer};
use protocell_core::train::{OptimizerSettings, Trainer};
use protocell_core::{RngKey, Tensor};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_runtime::{embed, load_model, resume_session, Device};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/v1")
}

fn read(name: &str) -> Checkpoint {
    Checkpoint::decode(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn fnv(v: &[f32]) -> String {
    protocell_core::record::fnv1a(v.iter().flat_map(|x| x.to_bits().to_le_bytes())).to_string()
}

fn bits(x: f64) -> String {
    x.to_bits().to_string()
}

fn ids(e: &Value, key: &str) -> Vec<u32> {
    e[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

#[test]
fn a_version_1_training_checkpoint_loads_resumes_and_trains_to_the_same_bits() {
    let e = expected();
    let want = &e["gpt-session"];
    let x = ids(&e, "ids");
    let ck = read("gpt-session.ckpt");
    assert_eq!(ck.version, 1);
    let logits = load_model(&ck, Device::Cpu).unwrap().logits(&x, 2, 16).unwrap();
    assert_eq!(fnv(&logits), want["logits_fnv"], "logits of the migrated model");
    let mut s = resume_session(&ck, Device::Cpu, None).unwrap();
    let losses: Vec<String> = (0..3).map(|_| bits(s.train_step().unwrap().loss)).collect();
    assert_eq!(serde_json::json!(losses), want["resumed_losses"], "resumed losses");
    // saved again (now version 2) and reloaded, it continues identically
    let mut s = resume_session(&ck, Device::Cpu, None).unwrap();
    s.train_step().unwrap();
    let v2 = Checkpoint::decode(&s.checkpoint().unwrap().encode().unwrap()).unwrap();
    assert_eq!(v2.version, 2);
    let mut s2 = resume_session(&v2, Device::Cpu, None).unwrap();
    let tail: Vec<String> = (0..2).map(|_| bits(s2.train_step().unwrap().loss)).collect();
    assert_eq!(serde_json::json!(tail), serde_json::json!(want["resumed_losses"].as_array().unwrap()[1..]));
}

/// The bug this format fixes: the embedding API (and the C ABI's `protocell_optimizer_load`)
/// could not read the optimizer of a checkpoint written by `protocell train`.
#[test]
fn the_embedding_api_reads_a_training_sessions_optimizer_v1_and_v2() {
    let e = expected();
    let want = &e["gpt-session"];
    let (x, y) = (ids(&e, "ids"), ids(&e, "targets"));
    let ck = read("gpt-session.ckpt");
    let v2 = resume_session(&ck, Device::Cpu, None).unwrap().checkpoint().unwrap();
    for c in [ck, v2] {
        let mut m = embed::load(&c, Device::Cpu).unwrap();
        let mut opt = m.restore_optimizer(&c).unwrap();
        assert_eq!(opt.steps(), 3);
        let st = m.train_step(&mut opt, &x, &y, 2, 16).unwrap();
        assert_eq!(bits(st.loss), want["train_on_loss"], "loss of a step after the stored state");
        assert_eq!(bits(st.lr), want["train_on_lr"], "learning rate of the stored schedule");
        let after = m.logits(&x, 2, 16).unwrap();
        assert_eq!(fnv(&after), want["after_train_on_logits_fnv"], "weights after the step");
    }
}

#[test]
fn a_version_1_embedded_checkpoint_with_its_optimizer_keeps_training() {
    let e = expected();
    let want = &e["cell-token-embed"];
    let (x, y) = (ids(&e, "ids"), ids(&e, "targets"));
    let ck = read("cell-token-embed.ckpt");
    let mut m = embed::load(&ck, Device::Cpu).unwrap();
    assert_eq!(fnv(&m.logits(&x, 2, 16).unwrap()), want["logits_fnv"]);
    let mut opt = m.restore_optimizer(&ck).unwrap();
    assert_eq!(opt.steps(), 2);
    let st = m.train_step(&mut opt, &x, &y, 2, 16).unwrap();
    assert_eq!(bits(st.loss), want["next_loss"]);
    assert_eq!(fnv(&m.logits(&x, 2, 16).unwrap()), want["after_next_logits_fnv"]);
    // and through a version-2 save of model + optimizer
    let m2 = embed::load(&ck, Device::Cpu).unwrap();
    let o2 = m2.restore_optimizer(&ck).unwrap();
    let v2 = Checkpoint::decode(&m2.checkpoint(Some(&o2)).unwrap().encode().unwrap()).unwrap();
    let mut m3 = embed::load(&v2, Device::Cpu).unwrap();
    let mut o3 = m3.restore_optimizer(&v2).unwrap();
    assert_eq!(bits(m3.train_step(&mut o3, &x, &y, 2, 16).unwrap().loss), want["next_loss"]);
}

/// A module of many small parameters, for the restore-cost test.
#[derive(Clone)]
struct Many<B: protocell_core::Backend> {
    ps: Vec<Param<B>>,
}
protocell_core::module!(Many { ps });

fn many(n: usize) -> (Many<Autodiff<Cpu>>, Checkpoint) {
    let mut m = Many {
        ps: (0..n).map(|i| Param::new(Tensor::full(i as f32, &[2], &CpuDevice).unwrap().require_grad())).collect(),
    };
    ParamIds::default().assign(&mut m);
    let settings = OptimizerSettings {
        adamw: AdamWConfig::default(),
        schedule: Schedule { lr: 1e-3, min_lr: 1e-4, warmup: 0, total: 10 },
    };
    let mut tr = Trainer::<Cpu>::new(settings).unwrap();
    // one step on Σ params² gives every parameter moments
    tr.step_with::<Autodiff<Cpu>, _>(&mut m, RngKey::new(0), |m, _| {
        let mut acc = m.ps[0].square()?.sum_all()?;
        for p in &m.ps[1..] {
            acc = acc.add(&p.square()?.sum_all()?)?;
        }
        Ok(acc)
    })
    .unwrap();
    let mut ck = Checkpoint::new("many", "{}", protocell_core::data::Tokenizer::Bytes);
    save_trainer::<Cpu, _, Autodiff<Cpu>>(&tr, &m, &mut ck).unwrap();
    (m, Checkpoint::decode(&ck.encode().unwrap()).unwrap())
}

fn restore_seconds(n: usize) -> f64 {
    let (m, ck) = many(n);
    let t0 = Instant::now();
    let tr = restore_trainer::<Cpu, Autodiff<Cpu>, _>(&ck, &m, &CpuDevice, None).unwrap();
    let dt = t0.elapsed().as_secs_f64();
    assert_eq!(tr.steps(), 1);
    assert_eq!(tr.optimizer().states().count(), n);
    dt
}

/// Restoring 10,000 parameters' optimizer state is near-linear in their number (lookups by id
/// go through an index, O(log n) each): a linear scan per parameter would make 10× the
/// parameters cost 100×; the bound leaves room for the log factor, cache effects and noise.
#[test]
fn restoring_ten_thousand_parameters_is_fast() {
    restore_seconds(1000); // warm the allocator
    let small = (0..3).map(|_| restore_seconds(1000)).fold(f64::INFINITY, f64::min);
    let large = (0..3).map(|_| restore_seconds(10_000)).fold(f64::INFINITY, f64::min);
    println!("optimizer restore: 1,000 parameters {:.2} ms, 10,000 parameters {:.2} ms", small * 1e3, large * 1e3);
    assert!(large < 1.0, "10,000 parameters took {large:.3} s");
    assert!(
        large < 50.0 * small,
        "10× the parameters cost {:.1}× the time ({small:.4} s → {large:.4} s)",
        large / small
    );
}
