//! Bit-level regression pins: every model × preset trains a few steps on the CPU and its
//! losses, gradient norms, validation loss and reloaded logits must equal the figures
//! recorded in `tests/data/golden.json` to the last bit (on a CPU of the recorded SIMD level;
//! elsewhere to 1e-5 relative, since the vectorised kernels round differently per level).
//!
//! `PROTOCELL_BLESS=1 cargo test -p protocell-tests --test golden` rewrites the file; do that
//! only for a change that is meant to change the numbers, and say so in the commit.
use protocell_runtime::{load_model, new_session, registry, Device, RunConfig};
use serde_json::{json, Value};
use std::path::PathBuf;

fn data_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/golden.json")
}

/// The SIMD level the CPU kernels dispatch to (the part of the machine that changes bits).
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "x86-v4";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "x86-v3";
        }
        "x86"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// The preset cut to 3 steps of 2 × ≤32 tokens on a small corpus (same code paths).
fn small(model: &str, preset: &str) -> RunConfig {
    let mut v = registry::preset(model, Some(preset)).unwrap().to_value();
    let ctx = v["model"]["ctx_len"].as_u64().unwrap_or(32);
    v["train"]["steps"] = json!(3);
    v["train"]["batch_size"] = json!(2);
    v["train"]["seq_len"] = json!(ctx.min(32));
    v["train"]["eval_batches"] = json!(1);
    v["train"]["warmup"] = json!(1);
    if v["train"]["data"]["corpus"] != "seed-sentences" {
        v["train"]["data"]["corpus_bytes"] = json!(20_000);
    }
    RunConfig::from_value(v).unwrap()
}

fn fnv(words: impl IntoIterator<Item = u32>) -> u64 {
    protocell_core::record::fnv1a(words.into_iter().flat_map(u32::to_le_bytes))
}

/// Runs every model × preset and returns the record `{ "<model>/<preset>": {...} }`.
fn record() -> Value {
    let mut out = serde_json::Map::new();
    for m in registry::models() {
        for (preset, _) in &m.presets {
            let run = small(m.name, preset);
            let mut s = new_session(run, Device::Cpu).unwrap();
            let mut steps = Vec::new();
            for _ in 0..3 {
                let st = s.train_step().unwrap();
                steps.push(json!([st.loss.to_bits().to_string(), st.grad_norm.to_bits().to_string()]));
            }
            let val = s.evaluate().unwrap();
            let ckpt = s.checkpoint().unwrap();
            let model = load_model(&ckpt, Device::Cpu).unwrap();
            let seq = model.context_len().min(16);
            let ids: Vec<u32> = (0..2 * seq).map(|i| (i * 7 % model.vocab_size()) as u32).collect();
            let logits = model.logits(&ids, 2, seq).unwrap();
            out.insert(
                format!("{}/{preset}", m.name),
                json!({
                    "steps": steps,
                    "val_loss": val.to_bits().to_string(),
                    "logits_fnv": fnv(logits.iter().map(|x| x.to_bits())).to_string(),
                    "logits_head": logits[..8].to_vec(),
                }),
            );
        }
    }
    json!({ "simd": simd_level(), "runs": out })
}

#[test]
fn losses_and_logits_match_the_recorded_bits() {
    let got = record();
    if std::env::var("PROTOCELL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(data_path().parent().unwrap()).unwrap();
        std::fs::write(data_path(), serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        return;
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(data_path()).unwrap()).unwrap();
    let exact = want["simd"] == got["simd"];
    if !exact {
        eprintln!("golden: recorded on {}, this CPU is {}: comparing to 1e-5 relative", want["simd"], got["simd"]);
    }
    let f = |v: &Value| f64::from_bits(v.as_str().unwrap().parse().unwrap());
    let close =
        |a: f64, b: f64| if exact { a.to_bits() == b.to_bits() } else { (a - b).abs() <= 1e-5 * b.abs().max(1.0) };
    let runs = want["runs"].as_object().unwrap();
    assert_eq!(runs.len(), got["runs"].as_object().unwrap().len(), "the set of model × preset runs changed");
    for (name, w) in runs {
        let g = &got["runs"][name];
        for (i, (ws, gs)) in w["steps"].as_array().unwrap().iter().zip(g["steps"].as_array().unwrap()).enumerate() {
            for (k, what) in ["loss", "grad_norm"].iter().enumerate() {
                let (a, b) = (f(&gs[k]), f(&ws[k]));
                assert!(close(a, b), "{name}: step {} {what} {a} vs recorded {b}", i + 1);
            }
        }
        let (a, b) = (f(&g["val_loss"]), f(&w["val_loss"]));
        assert!(close(a, b), "{name}: val loss {a} vs recorded {b}");
        if exact {
            assert_eq!(g["logits_fnv"], w["logits_fnv"], "{name}: reloaded logits differ from the recorded bits");
        } else {
            for (a, b) in g["logits_head"].as_array().unwrap().iter().zip(w["logits_head"].as_array().unwrap()) {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{name}: logits {a} vs {b}");
            }
        }
    }
}
