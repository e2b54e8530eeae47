//! End-to-end training properties: determinism, bit-exact resume, learning, checkpoint
//! compatibility checks.
use protocell_core::record::Checkpoint;
use protocell_runtime::{new_session, registry, resume_session, Device, RunConfig, Session};
use serde_json::json;

/// A small GPT run: 2 layers, width 32, sequences of 32, batches of 4.
fn small_run(steps: u64, dropout: f32) -> RunConfig {
    let mut v = registry::preset("gpt", Some("tiny")).unwrap().to_value();
    v["model"]["d_model"] = json!(32);
    v["model"]["ctx_len"] = json!(32);
    v["model"]["dropout"] = json!(dropout);
    v["train"]["seq_len"] = json!(32);
    v["train"]["batch_size"] = json!(4);
    v["train"]["steps"] = json!(steps);
    v["train"]["warmup"] = json!(3);
    v["train"]["eval_batches"] = json!(2);
    v["train"]["data"]["corpus_bytes"] = json!(20_000);
    RunConfig::from_value(v).unwrap()
}

fn run_steps(s: &mut dyn Session, n: u64) -> Vec<f64> {
    (0..n).map(|_| s.train_step().unwrap().loss).collect()
}

fn tensors_bitwise_equal(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!((&x.path, x.role, x.id), (&y.path, y.role, y.id));
        assert_eq!(x.shape, y.shape);
        let (p, q) = (x.data.as_f32().unwrap(), y.data.as_f32().unwrap());
        let same = p.iter().zip(q).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "tensor {} differs", x.path);
    }
}

#[test]
fn same_seed_same_run() {
    let mut a = new_session(small_run(6, 0.1), Device::Cpu).unwrap();
    let mut b = new_session(small_run(6, 0.1), Device::Cpu).unwrap();
    let la = run_steps(a.as_mut(), 6);
    let lb = run_steps(b.as_mut(), 6);
    assert_eq!(la.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), lb.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    tensors_bitwise_equal(&a.checkpoint().unwrap(), &b.checkpoint().unwrap());
}

/// 2·N straight steps == N steps, save, encode, decode, load, N steps (with dropout on, so
/// the dropout stream must be resumed too).
#[test]
fn resume_is_bit_exact() {
    let n = 8;
    let mut straight = new_session(small_run(2 * n, 0.1), Device::Cpu).unwrap();
    let all = run_steps(straight.as_mut(), 2 * n);

    let mut first = new_session(small_run(2 * n, 0.1), Device::Cpu).unwrap();
    let head = run_steps(first.as_mut(), n);
    let bytes = first.checkpoint().unwrap().encode().unwrap();
    drop(first);
    let ckpt = Checkpoint::decode(&bytes).unwrap();
    let mut second = resume_session(&ckpt, Device::Cpu, None).unwrap();
    assert_eq!(second.step(), n);
    let tail = run_steps(second.as_mut(), n);

    let joined: Vec<u64> = head.iter().chain(&tail).map(|x| x.to_bits()).collect();
    assert_eq!(joined, all.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    tensors_bitwise_equal(&straight.checkpoint().unwrap(), &second.checkpoint().unwrap());
}

#[test]
fn training_reduces_loss() {
    let mut s = new_session(small_run(60, 0.0), Device::Cpu).unwrap();
    let before = s.evaluate().unwrap();
    let losses = run_steps(s.as_mut(), 60);
    let after = s.evaluate().unwrap();
    // ln 256 = 5.55 at init; 60 steps on the synthetic corpus reach well under 3.5 nats
    assert!(before > 5.0, "initial val loss {before}");
    assert!(after < 3.5, "val loss after 60 steps {after} (train {:?})", &losses[losses.len() - 5..]);
    assert!(losses.iter().all(|l| l.is_finite()));
}

#[test]
fn resume_rejects_other_data_and_missing_state() {
    let mut s = new_session(small_run(4, 0.0), Device::Cpu).unwrap();
    run_steps(s.as_mut(), 2);
    let mut ckpt = s.checkpoint().unwrap();
    let mut meta = ckpt.train_meta().unwrap().unwrap();
    meta.data_hash ^= 1;
    ckpt.set_train_meta(&meta).unwrap();
    let err = resume_session(&ckpt, Device::Cpu, None).err().unwrap().to_string();
    assert!(err.contains("differs"), "{err}");
    assert!(ckpt.remove_section("train"));
    assert!(resume_session(&ckpt, Device::Cpu, None).is_err());
}

#[test]
fn checkpoint_of_another_shape_is_rejected_on_load() {
    let s = new_session(small_run(2, 0.0), Device::Cpu).unwrap();
    let mut ckpt = s.checkpoint().unwrap();
    // claim a wider model than the tensors hold
    let mut cfg: serde_json::Value = serde_json::from_str(&ckpt.model_config).unwrap();
    cfg["d_model"] = json!(64);
    ckpt.model_config = cfg.to_string();
    let err = protocell_runtime::load_model(&ckpt, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("shape"), "{err}");
    ckpt.arch = "no-such-model".into();
    let err = protocell_runtime::load_model(&ckpt, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("unknown model"), "{err}");
}

#[test]
fn unavailable_backends_are_clear_errors() {
    let e = new_session(small_run(2, 0.0), Device::Cuda(0)).err().unwrap().to_string();
    assert!(e.contains("CUDA unavailable"), "{e}");
    let e = new_session(small_run(2, 0.0), Device::Wgpu(99)).err().unwrap().to_string();
    assert!(e.contains("wgpu"), "{e}");
}

/// The library snippet of README.md, verbatim.
#[test]
fn readme_library_example() -> protocell_core::Result<()> {
    use protocell_core::{
        models::{Gpt, GptConfig, LanguageModel},
        nn::ForwardCtx,
        Autodiff, Ids, RngKey,
    };
    use protocell_cpu::{Cpu, CpuDevice};

    type B = Autodiff<Cpu>;
    let model = Gpt::<B>::init(&GptConfig::default(), RngKey::new(0), &CpuDevice)?;
    let x = Ids::<B>::from_u32(&[1, 2, 3], &[1, 3], &CpuDevice)?;
    let logits = model.forward(&x, &mut ForwardCtx::eval())?; // [1, 3, 256]
    assert_eq!(logits.shape(), &[1, 3, 256]);
    Ok(())
}

/// The entry points the C ABI drives: training on caller-provided ids, evaluation of
/// arbitrary tokens, and raw logits of a loaded checkpoint.
#[test]
fn caller_provided_batches_and_logits() {
    let mut s = new_session(small_run(4, 0.0), Device::Cpu).unwrap();
    let ids: Vec<u32> = (0..4 * 32 + 1).map(|i| (i * 7 % 256) as u32).collect();
    let (x, y) = (&ids[..128], &ids[1..129]);
    let a = s.train_on(x, y, 4, 32).unwrap();
    let b = s.train_on(x, y, 4, 32).unwrap();
    assert!(b.loss < a.loss, "the same batch twice must lower its loss: {} then {}", a.loss, b.loss);
    assert!(s.train_on(x, y, 4, 31).is_err());
    assert!(s.train_on(&ids[..33], &ids[1..34], 1, 33).is_err(), "longer than the context");
    let bad: Vec<u32> = vec![300; 32];
    assert!(s.train_on(&bad, &bad, 1, 32).is_err(), "ids outside the vocabulary");
    let r = s.evaluate_tokens(&ids, 2).unwrap();
    assert_eq!(r.tokens, ids.len() - 1);
    assert!((r.bits_per_byte - r.loss / std::f64::consts::LN_2).abs() < 1e-9);

    let ckpt = s.checkpoint().unwrap();
    let m = protocell_runtime::load_model(&ckpt, Device::Cpu).unwrap();
    let logits = m.logits(&ids[..64], 2, 32).unwrap();
    assert_eq!(logits.len(), 2 * 32 * 256);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert!(m.logits(&ids[..64], 3, 32).is_err());
    // the loaded model continues exactly where the session's own model would
    let s1 = protocell_runtime::infer::Sampling { temperature: 0.0, top_k: 0, seed: 3 };
    assert_eq!(m.generate(&ids[..8], 10, &s1).unwrap(), s.generate(&ids[..8], 10, &s1).unwrap());
}
