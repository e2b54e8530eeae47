//! The `protocell` binary end to end: a tiny training run, generation, evaluation,
//! inspection, resume, and every kind of bad input (clear error, non-zero exit, no panic).
use protocell_core::record::{Checkpoint, Role, TensorData};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_protocell"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("protocell-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed run: non-zero exit, an `error:` line mentioning `needle`, and no panic.
fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains("error:"), "no error line: {err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "expected {needle:?} in: {err}");
}

/// The tiny preset cut down further so that a debug build trains it in a second or two.
const SMALL: &[&str] = &[
    "--model",
    "gpt",
    "--preset",
    "tiny",
    "--set",
    "model.d_model=32",
    "--set",
    "model.ctx_len=32",
    "--set",
    "train.seq_len=32",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.data.corpus_bytes=20000",
    "--set",
    "train.eval_every=10",
    "--set",
    "train.checkpoint_every=10",
    "--set",
    "train.eval_batches=2",
];

fn train(out: &Path, steps: u64, extra: &[&str]) -> Output {
    bin()
        .args(["train", "--json", "--steps", &steps.to_string(), "--sample-tokens", "20", "--out"])
        .arg(out)
        .args(SMALL)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn train_generate_eval_inspect() {
    let dir = tmp("main");
    let out = dir.join("run");
    let o = train(&out, 30, &[]);
    let summary: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    for key in ["final_loss", "val_loss", "params", "tokens_per_s", "peak_rss_bytes"] {
        assert!(!summary[key].is_null(), "summary lacks {key}: {summary}");
    }
    assert!(summary["val_loss"].as_f64().unwrap() < 5.0);
    for f in ["model.ckpt", "metrics.jsonl", "loss.png", "config.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("\"loss\"")).count(), 30);
    assert!(metrics.lines().any(|l| l.contains("val_loss")));
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let ckpt = out.join("model.ckpt");
    let gen = |seed: &str, temp: &str| {
        let o = bin()
            .args(["generate", "--json", "--prompt", "The ", "--tokens", "24", "--seed", seed, "--temperature", temp])
            .arg("--checkpoint")
            .arg(&ckpt)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
        v["tokens"].as_array().unwrap().len()
    };
    assert_eq!(gen("1", "0.8"), 24);
    let a =
        bin().args(["generate", "--temperature", "0", "--tokens", "16", "--checkpoint"]).arg(&ckpt).output().unwrap();
    let b =
        bin().args(["generate", "--temperature", "0", "--tokens", "16", "--checkpoint"]).arg(&ckpt).output().unwrap();
    assert_eq!(ok(&a), ok(&b));

    let text = dir.join("eval.txt");
    std::fs::write(&text, "The quiet cat slept near the old river. A bird sang at night.\n".repeat(20)).unwrap();
    let o = bin().args(["eval", "--json", "--checkpoint"]).arg(&ckpt).arg("--data").arg(&text).output().unwrap();
    let e: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    let (loss, bpb) = (e["loss"].as_f64().unwrap(), e["bits_per_byte"].as_f64().unwrap());
    assert!(loss.is_finite() && loss > 0.0 && (bpb - loss / std::f64::consts::LN_2).abs() < 1e-9);

    let o = bin().args(["inspect", "--json"]).arg(&ckpt).output().unwrap();
    let i: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(i["arch"], "gpt");
    assert_eq!(i["train"]["step"], 30);
    let o = bin().args(["inspect"]).arg(&ckpt).output().unwrap();
    assert!(ok(&o).contains("architecture  gpt"));
}

/// `train --stop-after N` then `train --resume` ends in exactly the state of a straight run.
#[test]
fn cli_resume_matches_straight_run() {
    let dir = tmp("resume");
    ok(&train(&dir.join("straight"), 20, &[]));
    ok(&train(&dir.join("split"), 20, &["--stop-after", "10"]));
    let o = bin()
        .args(["train", "--json", "--sample-tokens", "0", "--resume"])
        .arg(dir.join("split/model.ckpt"))
        .output()
        .unwrap();
    ok(&o);
    let a = Checkpoint::decode(&std::fs::read(dir.join("straight/model.ckpt")).unwrap()).unwrap();
    let b = Checkpoint::decode(&std::fs::read(dir.join("split/model.ckpt")).unwrap()).unwrap();
    assert_eq!(a.train_meta().unwrap().unwrap().step, 20);
    assert_eq!(b.train_meta().unwrap().unwrap().step, 20);
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (x, y) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!((&x.path, x.role, x.id), (&y.path, y.role, y.id));
        let (p, q) = (x.data.as_f32().unwrap(), y.data.as_f32().unwrap());
        assert!(p.iter().zip(q).all(|(p, q)| p.to_bits() == q.to_bits()), "{} differs", x.path);
    }
}

#[test]
fn bad_data_files() {
    let dir = tmp("data");
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty.txt", b"", "empty"),
        ("binary.bin", &[0x7f, b'E', b'L', b'F', 0, 1, 2], "binary"),
        ("latin1.txt", &[b'c', b'a', b'f', 0xe9, b' ', b'!'], "UTF-8"),
        ("short.txt", b"too short to hold a window", "too short"),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = train(&dir.join("out"), 5, &["--data", p.to_str().unwrap()]);
        fails_with(&o, needle);
    }
    fails_with(&train(&dir.join("out"), 5, &["--data", "/nonexistent/file.txt"]), "cannot open");
}

#[test]
fn bad_configuration() {
    let dir = tmp("config");
    let out = dir.join("out");
    fails_with(&bin().args(["train", "--model", "no-such-model"]).output().unwrap(), "unknown model");
    fails_with(&bin().args(["train", "--model", "gpt", "--preset", "huge"]).output().unwrap(), "unknown preset");
    fails_with(&train(&out, 5, &["--set", "train.lr=-1"]), "learning rate");
    fails_with(&train(&out, 5, &["--set", "model.n_head=3"]), "divisible");
    fails_with(&train(&out, 5, &["--set", "no_such_key=1"]), "unknown configuration key");
    fails_with(&train(&out, 5, &["--set", "train.batch_size=0"]), "batch_size");
    fails_with(&train(&out, 5, &["--set", "model.dropout=1.5"]), "dropout");
    fails_with(&train(&out, 5, &["--set", "train.seq_len=64"]), "context length");
    fails_with(&train(&out, 5, &["--backend", "tpu"]), "unknown backend");
    fails_with(&train(&out, 5, &["--backend", "cuda"]), "CUDA unavailable");
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "[train\nlr = ").unwrap();
    fails_with(&train(&out, 5, &["--config", bad_toml.to_str().unwrap()]), "invalid TOML");
    let good = dir.join("good.json");
    std::fs::write(&good, r#"{"train": {"optim": {"weight_decay": 0.0}}, "model": {"n_layer": 1}}"#).unwrap();
    let o = train(&out, 3, &["--config", good.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert!(v["params"].as_u64().unwrap() < 30_000, "n_layer=1 from the config file was not applied: {v}");
}

#[test]
fn bad_checkpoints() {
    let dir = tmp("ckpt");
    let run = dir.join("run");
    ok(&train(&run, 4, &[]));
    let good = std::fs::read(run.join("model.ckpt")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let truncated = write("truncated.ckpt", &good[..good.len() / 2]);
    let mut flipped_bytes = good.clone();
    let mid = flipped_bytes.len() - 100;
    flipped_bytes[mid] ^= 0x40;
    let flipped = write("flipped.ckpt", &flipped_bytes);
    let random =
        write("random.ckpt", &(0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>());
    let text = write("text.ckpt", b"hello, I am not a checkpoint");
    for (p, needle) in
        [(&truncated, "truncated"), (&flipped, "corrupted"), (&random, "not a protocell"), (&text, "not a protocell")]
    {
        for cmd in [&["inspect"][..], &["generate", "--checkpoint"][..]] {
            let o = bin().args(cmd).arg(p).output().unwrap();
            fails_with(&o, needle);
        }
        let o = bin().args(["train", "--resume"]).arg(p).output().unwrap();
        fails_with(&o, needle);
    }
    fails_with(&bin().args(["inspect", "/nonexistent.ckpt"]).output().unwrap(), "cannot read");
    let good_path = run.join("model.ckpt");
    let o = bin().args(["train", "--model", "cell-token", "--resume"]).arg(&good_path).output().unwrap();
    fails_with(&o, "holds a gpt model");
    let o = bin().args(["train", "--set", "lr=0.1", "--resume"]).arg(&good_path).output().unwrap();
    fails_with(&o, "cannot be combined with --resume");
    let o = bin().args(["generate", "--temperature=-1", "--checkpoint"]).arg(run.join("model.ckpt")).output().unwrap();
    fails_with(&o, "temperature");
    let o = bin().args(["generate", "--prompt", "", "--checkpoint"]).arg(run.join("model.ckpt")).output().unwrap();
    fails_with(&o, "empty");
}

/// A run that diverges to a non-finite loss stops with a message and keeps the last good
/// checkpoint. The divergence is real: the resumed weights hold a finite value so large
/// (3·10³⁸) that the embedding sum overflows to infinity in the forward pass.
#[test]
fn non_finite_loss_stops_and_keeps_last_good_checkpoint() {
    let dir = tmp("nan");
    let run = dir.join("run");
    ok(&train(&run, 10, &["--stop-after", "4"]));
    let path = run.join("model.ckpt");
    let mut c = Checkpoint::decode(&std::fs::read(&path).unwrap()).unwrap();
    let Some(TensorData::F32(wte)) = c.data_mut(Role::Param, "wte.weight") else { panic!("no wte.weight") };
    wte.iter_mut().for_each(|v| *v = 3.0e38);
    let poisoned = c.encode().unwrap();
    std::fs::write(&path, &poisoned).unwrap();
    let o = bin().args(["train", "--resume"]).arg(&path).output().unwrap();
    fails_with(&o, "non-finite");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("training stopped"), "{err}");
    // nothing overwrote the checkpoint the run started from
    assert_eq!(std::fs::read(&path).unwrap(), poisoned);
}

/// Training and evaluation on real text (`../shared/data/shakespeare.txt` when present).
#[test]
fn trains_on_shared_corpus_when_present() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/shakespeare.txt");
    if !path.exists() {
        println!("skipped: {} is not present (it ships with the project's shared/ folder)", path.display());
        return;
    }
    let dir = tmp("shakespeare");
    let o = train(&dir.join("run"), 12, &["--data", path.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert!(v["val_loss"].as_f64().unwrap() < 5.5, "{v}");
    let o = bin()
        .args(["eval", "--json", "--batch", "16", "--checkpoint"])
        .arg(dir.join("run/model.ckpt"))
        .arg("--data")
        .arg(&path)
        .output()
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert!(e["tokens"].as_u64().unwrap() > 900_000, "{e}");
}

#[test]
fn default_model_is_cell_token_and_pruning_is_logged() {
    let out = tmp("cell-token");
    let o = bin()
        .args(["train", "--json", "--preset", "tiny", "--steps", "4", "--sample-tokens", "5", "--out"])
        .arg(&out)
        .args(["--set", r#"model.pruning={"rate":0.2,"threshold":0.3}"#, "--set", "train.data.corpus_bytes=20000"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(v["model"], "cell-token", "{v}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .collect();
    assert_eq!(steps.len(), 4);
    for s in &steps {
        let a = s["alive_blocks"].as_f64().expect("alive_blocks logged");
        assert!((0.0..=1.0).contains(&a), "{s}");
        assert!(s["alive_tokens"].as_f64().is_some(), "{s}");
    }
}

#[test]
fn epgl_grid_writes_gif_png_and_metrics() {
    let out = tmp("grid");
    let o = bin()
        .args(["sim", "epgl-grid", "--size", "12", "--steps", "6", "--scale", "2", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(v["frames"], 6);
    let gif = std::fs::read(out.join("epgl_grid.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a"));
    // one image descriptor (0x2C after a graphic control extension) per frame
    let frames = gif.windows(2).filter(|w| w == b"\x00\x2c").count();
    assert!(frames >= 6, "{frames} frames");
    let png = std::fs::read(out.join("epgl_grid_final.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let lines = std::fs::read_to_string(out.join("epgl_grid.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 6);
    let bad = bin().args(["sim", "epgl-grid", "--size", "0", "--out"]).arg(tmp("grid-bad")).output().unwrap();
    fails_with(&bad, "size");
    let bad = bin().args(["sim", "epgl-grid", "--backend", "cuda", "--out"]).arg(tmp("grid-cuda")).output().unwrap();
    fails_with(&bad, "cuda");
}

/// The synaptic GPT trains from the command line and draws its vitals (per-layer pools,
/// calcium, energy, fast-weight norm) next to the loss curve; a model without vitals draws none.
#[test]
fn synaptic_gpt_trains_and_draws_vitals() {
    let dir = tmp("synaptic");
    let o = bin()
        .args(["train", "--model", "synaptic-gpt", "--preset", "tiny", "--steps", "6", "--json", "--quiet"])
        .args(["--sample-tokens", "0", "--set", "train.data.corpus_bytes=20000", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    let png = std::fs::read(dir.join("run/vitals.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(v["vitals_png"].is_string(), "{v}");
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for k in ["l0.rrp", "l0.reserve", "l0.calcium", "l0.energy", "l0.fast_norm", "l1.rrp"] {
        assert!(first[k].as_f64().is_some_and(f64::is_finite), "{k} missing: {first}");
    }
    let o = bin()
        .arg("train")
        .args(SMALL)
        .args(["--steps", "2", "--json", "--quiet", "--sample-tokens", "0", "--out"])
        .arg(dir.join("gpt"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert!(v["vitals_png"].is_null() && !dir.join("gpt/vitals.png").exists());
}

/// `tune` runs CMA-ES on held-out recall and writes a configuration that `train --config`
/// and `experiment synapses --tuned` read; the experiment reports every variant.
#[test]
fn tune_writes_a_usable_configuration_and_the_experiment_reads_it() {
    let dir = tmp("tune");
    let small = [
        "--set",
        "model.n_layer=1",
        "--set",
        "model.d_model=16",
        "--set",
        "model.n_head=2",
        "--set",
        "model.ctx_len=32",
    ];
    let out = dir.join("tuned.json");
    let o = bin()
        .args(["tune", "--population", "2", "--generations", "1", "--steps", "2", "--json", "--out"])
        .arg(&out)
        .args(small)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    assert_eq!(v["history"].as_array().unwrap().len(), 2, "{v}");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let syn = &written["model"]["synaptic"];
    for f in ["tau_c", "alpha_ca", "lambda_loge", "prime_rate"] {
        assert!(syn[f].as_f64().is_some(), "{f} missing from {written}");
    }
    // the file is a --config for the synaptic GPT
    let o = bin()
        .args(["train", "--model", "synaptic-gpt", "--preset", "tiny", "--steps", "2", "--json", "--quiet"])
        .args(["--sample-tokens", "0", "--set", "train.data.corpus_bytes=20000", "--config"])
        .arg(&out)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    ok(&o);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"]["synaptic"]["tau_c"], syn["tau_c"]);
    // the experiment with the tuned variant
    let o = bin()
        .args(["experiment", "synapses", "--seeds", "1", "--recall-steps", "2", "--text-steps", "2", "--json"])
        .args(["--variants", "off,causal", "--tuned"])
        .arg(&out)
        .args(small)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
    let names: Vec<&str> = v["variants"].as_array().unwrap().iter().map(|x| x["variant"].as_str().unwrap()).collect();
    assert_eq!(names, ["off", "causal", "causal (tuned)"]);
    fails_with(&bin().args(["tune", "--population", "1"]).output().unwrap(), "population");
    fails_with(&bin().args(["experiment", "synapses", "--variants", "wild"]).output().unwrap(), "unknown variant");
}

/// `bench generate` decodes with the cache and recomputes, and both give the same tokens;
/// bad sizes and bad recall settings are refused.
#[test]
fn bench_generate_reports_the_same_tokens_as_recomputation() {
    for model in ["gpt", "synaptic-gpt"] {
        let o = bin()
            .args(["bench", "generate", "--model", model, "--preset", "tiny", "--prompt", "5", "--new", "70", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(ok(&o).trim()).unwrap();
        assert_eq!(v["same_tokens"], true, "{model}: {v}");
        assert!(v["cached_tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(v["speedup_vs_recompute"].as_f64().unwrap() > 0.0);
    }
    fails_with(&bin().args(["bench", "generate", "--new", "0"]).output().unwrap(), "at least 1");
    fails_with(
        &bin()
            .args(["experiment", "synapses", "--variants", "off", "--seeds", "1", "--recall-steps", "1"])
            .args(["--text-steps", "1", "--recall-lr", "5"])
            .output()
            .unwrap(),
        "lr",
    );
    fails_with(&bin().args(["tune", "--lr", "5"]).output().unwrap(), "--lr");
    fails_with(&bin().args(["tune", "--batch", "0"]).output().unwrap(), "--batch");
}
