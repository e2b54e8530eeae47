//! Seed 003 at the command line: `experiment synapses` (does live depletion help?) and
//! `tune` (CMA-ES over the presynaptic parameters on held-out recall).
use crate::experiment::{config, mean_sd, shared_text, train, SynapsesArgs};
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::data::tasks::{accuracy, Recall, Split};
use protocell_core::error::{Error, Result};
use protocell_core::rng::RngKey;
use protocell_runtime::config::read_config_file;
use protocell_runtime::embed::{self, ModelSpec, Optimizer, OptimizerConfig};
use protocell_runtime::Device;
use serde_json::{json, Value};
use std::time::Instant;

/// The experiment's model shape unless `--set` says otherwise: depth 2, width 64, 4 heads,
/// context 128 (a quarter of the seed's measured shape, so that several seeds of every
/// variant run in minutes on two cores).
const SHAPE: &[&str] = &["model.n_layer=2", "model.d_model=64", "model.n_head=4", "model.ctx_len=128"];

/// Recall batches of this many sequences.
const RECALL_BATCH: usize = 16;
/// Held-out recall batches evaluated.
const RECALL_EVAL_BATCHES: u64 = 8;

/// The model settings (JSON overrides of the `synaptic-gpt` preset) of a variant.
pub(crate) fn variant_model(mode: &str, sets: &[String], tuned: Option<&Value>) -> Result<Value> {
    let mut all: Vec<String> = SHAPE.iter().map(|s| s.to_string()).collect();
    all.extend(sets.iter().cloned());
    all.push(format!("model.synapses={mode}"));
    let run = config("synaptic-gpt", "default", &all)?;
    let mut model = run.model;
    if let Some(t) = tuned {
        protocell_runtime::config::merge(&mut model["synaptic"], t);
    }
    Ok(model)
}

/// Result of training one model on recall.
pub(crate) struct RecallResult {
    pub(crate) accuracy: f64,
    pub(crate) tokens_per_s: f64,
}

/// Trains a fresh model with `model` settings on `steps` recall batches (seed `seed`) and
/// returns its held-out recall accuracy.
pub(crate) fn recall_run(
    model: &Value,
    task: &Recall,
    steps: u64,
    seed: u64,
    bar: &ProgressBar,
) -> Result<RecallResult> {
    let spec = ModelSpec {
        arch: "synaptic-gpt".into(),
        preset: Some("default".into()),
        model: model.clone(),
        seed,
        chars: None,
    };
    let mut m = embed::create(&spec, Device::Cpu)?;
    task.validate(m.vocab_size())?;
    if task.seq_len() > m.context_len() {
        return Err(Error::Config(format!(
            "recall sequences of {} tokens exceed the context of {}",
            task.seq_len(),
            m.context_len()
        )));
    }
    let opt_cfg = json!({"lr": 1e-3, "min_lr": 1e-4, "warmup": (steps / 20).max(1), "total_steps": steps});
    let mut opt = Optimizer::new(OptimizerConfig::from_json(&opt_cfg.to_string())?)?;
    let key = RngKey::new(seed).fold(77);
    let (mut secs, mut tokens) = (0.0, 0u64);
    for i in 0..steps {
        let tb = task.batch(RECALL_BATCH, key, Split::Train, i);
        let b = &tb.batch;
        let t0 = Instant::now();
        let st = m.train_step(&mut opt, &b.inputs, &b.targets, b.batch, b.seq)?;
        secs += t0.elapsed().as_secs_f64();
        tokens += st.tokens;
        bar.inc(1);
    }
    let (mut correct, mut total) = (0, 0);
    for i in 0..RECALL_EVAL_BATCHES {
        let tb = task.batch(RECALL_BATCH, key, Split::HeldOut, i);
        let logits = m.logits(&tb.batch.inputs, tb.batch.batch, tb.batch.seq)?;
        let (c, t) = accuracy(&logits, m.vocab_size(), &tb);
        correct += c;
        total += t;
    }
    Ok(RecallResult { accuracy: correct as f64 / total as f64, tokens_per_s: tokens as f64 / secs })
}

fn bar(quiet: bool, len: u64, label: &str) -> ProgressBar {
    let b = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    b.set_style(ProgressStyle::with_template("{prefix:>34} {bar:24} {pos}/{len}").expect("template"));
    b.set_prefix(label.to_string());
    b
}

/// `protocell experiment synapses`.
pub(crate) fn experiment(a: SynapsesArgs) -> Result<()> {
    if a.seeds == 0 || a.recall_steps == 0 || a.text_steps == 0 {
        return Err(Error::InvalidArgument("--seeds, --recall-steps and --text-steps must be at least 1".into()));
    }
    let tuned = match &a.tuned {
        Some(p) => {
            let v = read_config_file(p)?;
            Some(v.get("model").and_then(|m| m.get("synaptic")).cloned().unwrap_or(v))
        }
        None => None,
    };
    let mut variants: Vec<(String, Value)> = Vec::new();
    for mode in ["off", "seed", "causal"] {
        variants.push((mode.to_string(), variant_model(mode, &a.sets, None)?));
    }
    if let Some(t) = &tuned {
        variants.push(("causal (tuned)".into(), variant_model("causal", &a.sets, Some(t))?));
    }
    let text = shared_text(&a.text);
    let task = Recall::default();
    let mut rows = Vec::new();
    for (label, model) in &variants {
        let (mut acc, mut recall_tps, mut val, mut text_tps, mut peak) = (vec![], vec![], vec![], vec![], vec![]);
        for seed in 0..a.seeds {
            let b = bar(a.json, a.recall_steps, &format!("{label} recall, seed {seed}"));
            let r = recall_run(model, &task, a.recall_steps, seed, &b)?;
            b.finish_and_clear();
            acc.push(r.accuracy);
            recall_tps.push(r.tokens_per_s);
            let mut run = config("synaptic-gpt", "default", &[])?;
            run.model = model.clone();
            run.train.steps = a.text_steps;
            run.train.seed = seed;
            run.train.batch_size = 8;
            run.train.seq_len = 128.min(model["ctx_len"].as_u64().unwrap_or(128) as usize);
            run.train.warmup = (a.text_steps / 20).max(1);
            run.train.eval_every = 0;
            run.train.eval_batches = 16;
            if let Some(t) = &text {
                run.train.data.path = Some(t.to_string_lossy().into_owned());
            }
            let t = train(&format!("{label} text, seed {seed}"), run, a.json)?;
            val.push(t.val_loss);
            text_tps.push(t.tokens_per_s);
            peak.push(t.peak_tensor_bytes as f64 / 1048576.0);
        }
        rows.push((label.clone(), acc, recall_tps, val, text_tps, peak));
    }
    let text_name = text.as_ref().map_or("the built-in corpus".to_string(), |p| p.display().to_string());
    if a.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(l, acc, rt, v, tt, p)| {
                json!({"variant": l, "recall_accuracy": acc, "recall_tokens_per_s": rt, "val_loss": v,
                       "text_tokens_per_s": tt, "peak_tensor_mib": p})
            })
            .collect();
        println!(
            "{}",
            json!({"task": task, "recall_steps": a.recall_steps, "text_steps": a.text_steps, "seeds": a.seeds,
                   "text": text_name, "shape": SHAPE, "sets": a.sets, "variants": out})
        );
        return Ok(());
    }
    println!(
        "synaptic-gpt, {} seeds; recall: {} keys × {} values, {} pairs, {} queries, {} steps of {} sequences, \
         held-out accuracy on {} fresh batches; text: {} steps of 8 × 128 on {text_name}",
        a.seeds,
        task.keys,
        task.values,
        task.pairs,
        task.queries,
        a.recall_steps,
        RECALL_BATCH,
        RECALL_EVAL_BATCHES,
        a.text_steps
    );
    println!(
        "{:<16} {:>18} {:>14} {:>18} {:>14} {:>12}",
        "variant", "recall accuracy", "recall tok/s", "val loss", "text tok/s", "peak MiB"
    );
    for (l, acc, rt, v, tt, p) in &rows {
        let (am, asd) = mean_sd(acc);
        let (vm, vsd) = mean_sd(v);
        println!(
            "{l:<16} {:>9.3} ± {:<6.3} {:>14.0} {:>9.4} ± {:<6.4} {:>14.0} {:>12.1}",
            am,
            asd,
            mean_sd(rt).0,
            vm,
            vsd,
            mean_sd(tt).0,
            mean_sd(p).0
        );
    }
    println!("(recall chance: 1/{} = {:.3})", task.values, 1.0 / task.values as f64);
    Ok(())
}
