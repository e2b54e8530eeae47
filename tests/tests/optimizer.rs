//! The optimiser and the trainer: state keyed by parameter id, per-parameter bias correction,
//! transactional steps (injected kernel failures and failed checks leave everything as it
//! was), the moment rules of structural edits, and transactional structural edits that
//! survive a checkpoint.
use protocell_core::autodiff::Autodiff;
use protocell_core::backend::Backend;
use protocell_core::data::Batch;
use protocell_core::error::{Error, Result};
use protocell_core::lifecycle::{EditKind, LineageEvent};
use protocell_core::models::{Architecture, Gpt, GptConfig, LanguageModel};
use protocell_core::nn::{Module, Param, ParamId, ParamIds};
use protocell_core::optim::{AdamW, AdamWConfig, ParamState, Schedule};
use protocell_core::record::Checkpoint;
use protocell_core::train::checkpoint::{restore_trainer, save_trainer};
use protocell_core::train::{OptimizerSettings, Trainer};
use protocell_core::{RngKey, Tensor};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_tests::spy::{fail_at, Spy};
use std::collections::BTreeMap;

type AS = Autodiff<Spy>;

fn settings(lr: f64, wd: f64) -> OptimizerSettings {
    OptimizerSettings {
        adamw: AdamWConfig { weight_decay: wd, ..AdamWConfig::default() },
        schedule: Schedule { lr, min_lr: lr, warmup: 0, total: 0 },
    }
}

/// Everything observable of a model and its trainer: every parameter's id, path and bits,
/// every state's bits and step count, the step count.
fn snapshot<B: Backend, AB: Backend, M: Module<AB>>(m: &M, t: &Trainer<B>) -> Vec<String> {
    let mut out = vec![format!("steps {}", t.steps())];
    m.for_each_param(&mut |path, p| {
        let v: Vec<u32> = p.to_vec().unwrap().iter().map(|x| x.to_bits()).collect();
        out.push(format!("{path} {} {v:?}", p.id()));
    });
    for (id, st) in t.optimizer().states() {
        let m: Vec<u32> = st.m.to_vec().unwrap().iter().map(|x| x.to_bits()).collect();
        let v: Vec<u32> = st.v.to_vec().unwrap().iter().map(|x| x.to_bits()).collect();
        out.push(format!("state {id} t={} {m:?} {v:?}", st.t));
    }
    out
}

fn tiny_cfg() -> GptConfig {
    GptConfig { vocab_size: 16, ctx_len: 8, n_layer: 1, n_head: 2, d_model: 8, ..GptConfig::default() }
}

/// A small GPT whose parameters are gradient leaves.
fn tiny_gpt<B: protocell_core::autodiff::AutodiffBackend<Device = CpuDevice>>() -> Gpt<B> {
    let mut m = Gpt::<B>::init(&tiny_cfg(), RngKey::new(3), &CpuDevice).unwrap();
    m.for_each_param_mut(&mut |_, p| {
        let v = p.require_grad();
        p.set(v)
    });
    m
}

fn batch(k: u32) -> Batch {
    let inputs: Vec<u32> = (0..16).map(|i| (i * 3 + k) % 16).collect();
    let targets: Vec<u32> = (0..16).map(|i| (i * 5 + k) % 16).collect();
    Batch { batch: 2, seq: 8, inputs, targets }
}

/// A kernel failure in the middle of the update (the third parameter's AdamW kernel) is an
/// error, and the model and the optimiser are exactly as before; the step then succeeds and
/// equals a step that never failed.
#[test]
fn an_injected_kernel_failure_leaves_model_and_optimizer_untouched() {
    let mut m = tiny_gpt::<AS>();
    let mut t = Trainer::<Spy>::new(settings(1e-2, 0.1)).unwrap();
    for k in 0..2 {
        t.step::<AS, _>(&mut m, &batch(k), RngKey::new(k as u64), &CpuDevice).unwrap();
    }
    let before = snapshot(&m, &t);
    for skip in [0, 2, 7] {
        fail_at("adamw_step", skip);
        let e = t.step::<AS, _>(&mut m, &batch(9), RngKey::new(9), &CpuDevice).unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        assert_eq!(snapshot(&m, &t), before, "a failure at kernel {skip} changed the state");
    }
    // the same step without a failure, on the untouched state and on a clean copy of it
    let r = t.step::<AS, _>(&mut m, &batch(9), RngKey::new(9), &CpuDevice).unwrap();
    let mut t2 = Trainer::<Spy>::new(settings(1e-2, 0.1)).unwrap();
    let mut m2 = tiny_gpt::<AS>();
    for k in 0..2 {
        t2.step::<AS, _>(&mut m2, &batch(k), RngKey::new(k as u64), &CpuDevice).unwrap();
    }
    let r2 = t2.step::<AS, _>(&mut m2, &batch(9), RngKey::new(9), &CpuDevice).unwrap();
    assert_eq!(r.loss.to_bits(), r2.loss.to_bits());
    assert_eq!(snapshot(&m, &t), snapshot(&m2, &t2));
}

/// Checks fail before anything changes: a misshapen moment (of the last parameter), a
/// non-finite gradient, a bad learning rate.
#[test]
fn failed_checks_leave_model_and_optimizer_untouched() {
    let mut m = tiny_gpt::<Autodiff<Cpu>>();
    let mut t = Trainer::<Cpu>::new(settings(1e-2, 0.0)).unwrap();
    t.step::<Autodiff<Cpu>, _>(&mut m, &batch(0), RngKey::new(0), &CpuDevice).unwrap();
    // forge a checkpoint whose last parameter's moments have the wrong shape
    let mut ck = Checkpoint::new("gpt", "{}", protocell_core::data::Tokenizer::Bytes);
    save_trainer::<Cpu, _, Autodiff<Cpu>>(&t, &m, &mut ck).unwrap();
    let mut last = None;
    m.for_each_param(&mut |_, p| last = Some(p.id()));
    let last = last.unwrap();
    let mut states: BTreeMap<ParamId, ParamState<Cpu>> =
        t.optimizer().states().map(|(id, s)| (*id, s.clone())).collect();
    let bad = states.get_mut(&last).unwrap();
    bad.m = Tensor::zeros(&[3], &CpuDevice).unwrap();
    let mut opt = AdamW::<Cpu>::new(AdamWConfig::default()).unwrap();
    opt.restore(1, states);
    let mut grads = {
        let (x, y) = ids(&batch(1));
        let loss = m.loss(&x, &y, &mut protocell_core::nn::ForwardCtx::eval()).unwrap();
        loss.backward().unwrap()
    };
    let before: Vec<Vec<u32>> = params_bits(&m);
    let e = opt.step::<Autodiff<Cpu>, _>(&mut m, &mut grads, 1e-2).unwrap_err();
    assert!(e.to_string().contains("moments"), "{e}");
    assert_eq!(params_bits(&m), before);
    assert_eq!(opt.steps(), 1);
    // a non-finite loss through the trainer
    let before = snapshot(&m, &t);
    let e = t
        .step_with::<Autodiff<Cpu>, _>(&mut m, RngKey::new(0), |m, _| m.wte.weight.sum_all()?.add_scalar(1000.0)?.exp())
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert_eq!(snapshot(&m, &t), before);
    // a non-finite gradient with a finite loss: d/dx sqrt(x) at 0 is infinite
    let e = t
        .step_with::<Autodiff<Cpu>, _>(&mut m, RngKey::new(0), |m, _| m.ln_f.beta.mul_scalar(0.0)?.sqrt()?.sum_all())
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
    assert_eq!(snapshot(&m, &t), before);
}

fn ids(b: &Batch) -> (protocell_core::Ids<Autodiff<Cpu>>, protocell_core::Ids<Autodiff<Cpu>>) {
    let s = [b.batch, b.seq];
    (
        protocell_core::Ids::from_u32(&b.inputs, &s, &CpuDevice).unwrap(),
        protocell_core::Ids::from_u32(&b.targets, &s, &CpuDevice).unwrap(),
    )
}

fn params_bits<M: Module<Autodiff<Cpu>>>(m: &M) -> Vec<Vec<u32>> {
    let mut v = Vec::new();
    m.for_each_param(&mut |_, p| v.push(p.to_vec().unwrap().iter().map(|x| x.to_bits()).collect()));
    v
}

/// A toy module: a growable list of parameters (the shape of an expert pool).
#[derive(Clone)]
struct Pool<B: Backend> {
    ps: Vec<Param<B>>,
    ids: ParamIds,
}
protocell_core::module!(Pool { ps });

type A = Autodiff<Cpu>;

impl Pool<A> {
    fn new(values: &[f32]) -> Self {
        let mut p = Pool { ps: values.iter().map(|&v| param(v)).collect(), ids: ParamIds::default() };
        let mut ids = p.ids;
        ids.assign(&mut p);
        p.ids = ids;
        p
    }
    /// Loss `Σ_i (p_i − target_i)²` over the parameters listed in `active`.
    fn loss(&self, active: &[usize]) -> Result<Tensor<A>> {
        let mut acc: Option<Tensor<A>> = None;
        for &i in active {
            let d = self.ps[i].add_scalar(-1.0 - i as f32)?.square()?.sum_all()?;
            acc = Some(match acc {
                Some(a) => a.add(&d)?,
                None => d,
            });
        }
        acc.ok_or_else(|| Error::InvalidArgument("no active parameter".into()))
    }
}

fn param(v: f32) -> Param<A> {
    Param::new(Tensor::full(v, &[2], &CpuDevice).unwrap().require_grad())
}

/// A parameter that first gets a gradient at step 5,000 is updated with its own first-step
/// bias correction: Adam's first update is `lr·g/(|g| + ε)`, i.e. `lr` in magnitude, not the
/// `lr·(1 − β₁)/√(1 − β₂)`-sized update a global step count of 5,000 would give.
#[test]
fn a_parameter_born_late_gets_its_own_bias_correction() {
    let mut pool = Pool::new(&[0.0, 0.0]);
    let mut t = Trainer::<Cpu>::new(settings(1e-3, 0.0)).unwrap();
    for k in 0..5000u64 {
        t.step_with::<A, _>(&mut pool, RngKey::new(k), |m, _| m.loss(&[0])).unwrap();
    }
    assert_eq!(t.steps(), 5000);
    let id1 = pool.ps[1].id();
    assert!(t.optimizer().state(id1).is_none(), "an unused parameter has no state");
    let before = pool.ps[1].to_vec().unwrap()[0];
    t.step_with::<A, _>(&mut pool, RngKey::new(0), |m, _| m.loss(&[0, 1])).unwrap();
    let after = pool.ps[1].to_vec().unwrap()[0];
    assert_eq!(t.optimizer().state(id1).unwrap().t, 1);
    assert_eq!(t.optimizer().state(pool.ps[0].id()).unwrap().t, 5001);
    let step = after - before;
    assert!((step - 1e-3).abs() < 1e-6, "first update of a late parameter moved it by {step}, want 1e-3");
}

fn state(t: u64, m: f32, v: f32) -> ParamState<Cpu> {
    ParamState { m: Tensor::full(m, &[2], &CpuDevice).unwrap(), v: Tensor::full(v, &[2], &CpuDevice).unwrap(), t }
}

fn vals(o: &AdamW<Cpu>, id: u64) -> Option<(u64, f32, f32)> {
    o.state(ParamId(id)).map(|s| (s.t, s.m.to_vec().unwrap()[0], s.v.to_vec().unwrap()[0]))
}

/// The stated rules: clone → copy, split → copy to each child, merge → weighted average (and
/// the largest step count), cull → dropped, birth → no state; invalid edits change nothing.
#[test]
fn structural_edit_rules_for_moments() {
    let mut o = AdamW::<Cpu>::new(AdamWConfig::default()).unwrap();
    let st: BTreeMap<ParamId, ParamState<Cpu>> =
        [(ParamId(0), state(10, 1.0, 4.0)), (ParamId(1), state(3, 3.0, 8.0))].into_iter().collect();
    o.restore(10, st);
    o.clone_state(ParamId(0), ParamId(5)).unwrap();
    assert_eq!(vals(&o, 5), Some((10, 1.0, 4.0)));
    o.split(ParamId(5), &[ParamId(6), ParamId(7)]).unwrap();
    assert_eq!((vals(&o, 5), vals(&o, 6), vals(&o, 7)), (None, Some((10, 1.0, 4.0)), Some((10, 1.0, 4.0))));
    assert!(o.split(ParamId(6), &[ParamId(8), ParamId(8)]).is_err());
    assert_eq!(vals(&o, 6), Some((10, 1.0, 4.0)), "an invalid split changed the state");
    o.merge(&[(ParamId(0), 3.0), (ParamId(1), 1.0)], ParamId(9)).unwrap();
    assert_eq!(vals(&o, 9), Some((10, 0.75 * 1.0 + 0.25 * 3.0, 0.75 * 4.0 + 0.25 * 8.0)));
    assert_eq!((vals(&o, 0), vals(&o, 1)), (None, None));
    assert!(o.merge(&[(ParamId(6), -1.0)], ParamId(10)).is_err());
    assert!(o.merge(&[(ParamId(6), 0.0)], ParamId(10)).is_err());
    assert_eq!(vals(&o, 6), Some((10, 1.0, 4.0)));
    o.cull(ParamId(6));
    assert_eq!(vals(&o, 6), None);
    assert_eq!(o.steps(), 10);
}

/// An edit through the trainer's hook is a transaction: on an error the model, the optimiser
/// and the lineage log are as before; on success new parameters get fresh ids from the
/// model's counter (never a culled one's), dropped parameters lose their state, and the
/// lineage survives a checkpoint.
#[test]
fn structural_edits_are_transactions_and_are_checkpointed() {
    let mut pool = Pool::new(&[0.0, 0.0, 0.0]);
    let mut t = Trainer::<Cpu>::new(settings(1e-2, 0.0)).unwrap();
    for k in 0..3u64 {
        t.step_with::<A, _>(&mut pool, RngKey::new(k), |m, _| m.loss(&[0, 1, 2])).unwrap();
    }
    let before = snapshot(&pool, &t);
    let e = t
        .edit::<A, _, ()>(&mut pool, |m, opt, log| {
            m.ps[0].set(Tensor::full(42.0, &[2], &CpuDevice)?.require_grad());
            opt.cull(m.ps[1].id());
            log.push(event(EditKind::Cull, 1));
            Err(Error::InvalidArgument("the edit found a problem half-way".into()))
        })
        .unwrap_err();
    assert!(e.to_string().contains("half-way"));
    assert_eq!(snapshot(&pool, &t), before);
    assert!(t.lifecycle().lineage.is_empty());
    // cull parameter 1, split parameter 0 into itself and a newborn copy
    t.edit::<A, _, ()>(&mut pool, |m, opt, log| {
        let culled = m.ps.remove(1);
        let mut child = m.ps[0].clone();
        let mut ids = m.ids;
        child = Param::with_id(ids.fresh(), child.value().clone());
        m.ids = ids;
        opt.split(m.ps[0].id(), &[m.ps[0].id(), child.id()])?;
        log.push(event(EditKind::Cull, culled.id().0));
        log.push(LineageEvent {
            step: 3,
            kind: EditKind::Split,
            parents: vec![m.ps[0].id().0],
            children: vec![m.ps[0].id().0, child.id().0],
            reason: "test".into(),
            health: vec![(0, 0.5)],
        });
        m.ps.push(child);
        Ok(())
    })
    .unwrap();
    let ids: Vec<u64> = pool.ps.iter().map(|p| p.id().0).collect();
    assert_eq!(ids, vec![0, 2, 3], "the newborn takes id 3, never the culled 1");
    assert!(t.optimizer().state(ParamId(1)).is_none());
    assert_eq!(t.optimizer().state(ParamId(3)).unwrap().t, 3);
    // checkpoint the trainer; the restored one continues identically
    let mut ck = Checkpoint::new("pool", "{}", protocell_core::data::Tokenizer::Bytes);
    save_trainer::<Cpu, _, A>(&t, &pool, &mut ck).unwrap();
    let ck = Checkpoint::decode(&ck.encode().unwrap()).unwrap();
    let mut t2 = restore_trainer::<Cpu, A, _>(&ck, &pool, &CpuDevice, None).unwrap();
    assert_eq!(t2.lifecycle(), t.lifecycle());
    assert_eq!(t2.lifecycle().lineage.len(), 2);
    let mut pool2 = pool.clone();
    t.step_with::<A, _>(&mut pool, RngKey::new(9), |m, _| m.loss(&[0, 1, 2])).unwrap();
    t2.step_with::<A, _>(&mut pool2, RngKey::new(9), |m, _| m.loss(&[0, 1, 2])).unwrap();
    assert_eq!(snapshot(&pool, &t), snapshot(&pool2, &t2));
}

fn event(kind: EditKind, id: u64) -> LineageEvent {
    LineageEvent { step: 0, kind, parents: vec![id], children: vec![], reason: "test".into(), health: vec![] }
}

/// Ids are stable across a checkpoint of a real model: the same ids by path after reload,
/// and the counter continues where it stopped.
#[test]
fn model_ids_survive_a_checkpoint() {
    let m = Gpt::<Cpu>::init(&tiny_cfg(), RngKey::new(3), &CpuDevice).unwrap();
    let mut paths = Vec::new();
    m.for_each_param(&mut |path, p| paths.push((path.to_string(), p.id())));
    assert_eq!(paths.iter().map(|p| p.1 .0).collect::<Vec<_>>(), (0..paths.len() as u64).collect::<Vec<_>>());
    let tok =
        protocell_core::data::Tokenizer::Chars(protocell_core::data::CharTokenizer::from_text("abcdefghijklmnop"));
    let ck = protocell_core::train::checkpoint::model_checkpoint::<Cpu, _>(&m, &tok).unwrap();
    let ck = Checkpoint::decode(&ck.encode().unwrap()).unwrap();
    let m2: Gpt<Cpu> = protocell_core::train::checkpoint::load_model::<Cpu, Gpt<Cpu>>(&ck, &CpuDevice).unwrap();
    let mut paths2 = Vec::new();
    m2.for_each_param(&mut |path, p| paths2.push((path.to_string(), p.id())));
    assert_eq!(paths, paths2);
    assert_eq!(m2.param_ids().next(), paths.len() as u64);
    assert_eq!(GptConfig::ARCH, "gpt");
}
