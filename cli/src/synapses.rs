//! Seed 003 at the command line: `experiment synapses` (does live depletion help?) and
//! `tune` (CMA-ES over the presynaptic parameters on held-out recall).
use crate::runs::{config, mean_sd, shared_text, train};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::data::tasks::{accuracy, Recall, Split};
use protocell_core::error::{Error, Result};
use protocell_core::rng::RngKey;
use protocell_runtime::config::read_config_file;
use protocell_runtime::embed::{self, ModelSpec, Optimizer, OptimizerConfig};
use protocell_runtime::Device;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `experiment synapses`.
#[derive(Args)]
pub struct SynapsesArgs {
    /// Seeds per variant.
    #[arg(long, default_value_t = 3)]
    pub(crate) seeds: u64,
    /// Training steps on the recall task.
    #[arg(long, default_value_t = 400)]
    pub(crate) recall_steps: u64,
    /// Recall: sequences per training batch.
    #[arg(long, default_value_t = 64)]
    pub(crate) recall_batch: usize,
    /// Recall: peak learning rate (warmup over 5 % of the steps, cosine to a tenth).
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) recall_lr: f64,
    /// Training steps on real text (batches of 8 × 128 tokens).
    #[arg(long, default_value_t = 400)]
    pub(crate) text_steps: u64,
    /// Model overrides for every variant (`--set model.n_layer=4`); the default shape is depth 2,
    /// width 64, 4 heads, context 128.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) sets: Vec<String>,
    /// A configuration written by `protocell tune`: adds the variant "causal (tuned)".
    #[arg(long)]
    pub(crate) tuned: Option<PathBuf>,
    /// The variants to run, comma-separated, among off, seed, causal.
    #[arg(long, default_value = "off,seed,causal", value_delimiter = ',')]
    pub(crate) variants: Vec<String>,
    /// Recall: key→value pairs per sequence (as many queries follow).
    #[arg(long, default_value_t = 8)]
    pub(crate) pairs: usize,
    /// Recall: size of the key and of the value alphabets.
    #[arg(long, default_value_t = 16)]
    pub(crate) alphabet: u32,
    /// Real text (default: ../shared/data/shakespeare.txt when present, else the built-in corpus).
    #[arg(long)]
    pub(crate) text: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    pub(crate) json: bool,
}

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
    (batch, lr): (usize, f64),
    seed: u64,
    bar: &ProgressBar,
) -> Result<RecallResult> {
    if batch == 0 || batch > 4096 || !(lr > 0.0 && lr < 1.0) {
        return Err(Error::InvalidArgument(format!("recall batch {batch} must be in 1..=4096 and lr {lr} in (0, 1)")));
    }
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
    let opt_cfg = json!({"lr": lr, "min_lr": lr / 10.0, "warmup": (steps / 20).max(1), "total_steps": steps});
    let mut opt = Optimizer::new(OptimizerConfig::from_json(&opt_cfg.to_string())?)?;
    let key = RngKey::new(seed).fold(77);
    let (mut secs, mut tokens) = (0.0, 0u64);
    for i in 0..steps {
        let tb = task.batch(batch, key, Split::Train, i);
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
    for mode in &a.variants {
        if !["off", "seed", "causal"].contains(&mode.as_str()) {
            return Err(Error::InvalidArgument(format!("unknown variant {mode:?} (off, seed, causal)")));
        }
        variants.push((mode.to_string(), variant_model(mode, &a.sets, None)?));
    }
    if let Some(t) = &tuned {
        variants.push(("causal (tuned)".into(), variant_model("causal", &a.sets, Some(t))?));
    }
    let text = shared_text(&a.text);
    let task = Recall { keys: a.alphabet, values: a.alphabet, pairs: a.pairs, queries: a.pairs };
    task.validate(256)?;
    let mut rows = Vec::new();
    for (label, model) in &variants {
        let (mut acc, mut recall_tps, mut val, mut text_tps, mut peak) = (vec![], vec![], vec![], vec![], vec![]);
        for seed in 0..a.seeds {
            let b = bar(a.json, a.recall_steps, &format!("{label} recall, seed {seed}"));
            let r = recall_run(model, &task, a.recall_steps, (a.recall_batch, a.recall_lr), seed, &b)?;
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
            json!({"task": task, "recall_steps": a.recall_steps, "recall_batch": a.recall_batch, "recall_lr": a.recall_lr, "text_steps": a.text_steps, "seeds": a.seeds,
                   "text": text_name, "shape": SHAPE, "sets": a.sets, "variants": out})
        );
        return Ok(());
    }
    println!(
        "synaptic-gpt, {} seeds; recall: {} keys × {} values, {} pairs, {} queries, {} steps of {} sequences, \
         lr {}, held-out accuracy on {} fresh batches of {}; text: {} steps of 8 × 128 on {text_name}",
        a.seeds,
        task.keys,
        task.values,
        task.pairs,
        task.queries,
        a.recall_steps,
        a.recall_batch,
        a.recall_lr,
        RECALL_EVAL_BATCHES,
        RECALL_BATCH,
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

/// Arguments of `protocell tune`.
#[derive(Args)]
pub struct TuneArgs {
    /// Candidates per generation.
    #[arg(long, default_value_t = 8)]
    population: usize,
    /// Generations.
    #[arg(long, default_value_t = 10)]
    generations: usize,
    /// Training steps of each candidate on the recall task before its held-out accuracy is
    /// measured (the default task is learnt between ~2,000 and 5,000 steps of 64 sequences at
    /// lr 1e-3: a shorter budget ranks candidates by how early learning starts).
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// Recall sequences per training batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Recall peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the search (and of every candidate's model and batches, so that candidates differ
    /// only in their parameters).
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Model overrides (`--set model.synapses=seed` tunes the seed mode's six effective fields).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Where to write the best configuration (JSON or TOML by extension; usable with
    /// `protocell train --config` and `experiment synapses --tuned`).
    #[arg(long, default_value = "tuned.json")]
    out: PathBuf,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// A tuned field: name, bounds, and whether it is searched in log space.
struct Field {
    name: &'static str,
    lo: f64,
    hi: f64,
    log: bool,
    /// Changes the output of a fresh-state (seed-mode) forward.
    fresh: bool,
}

/// The seed's ten tuned fields and bounds (`synapse.md` §4). In the seed mode four of them
/// cannot change anything (the state is fresh every forward); they are left out there.
const FIELDS: &[Field] = &[
    Field { name: "tau_c", lo: 2.0, hi: 20.0, log: true, fresh: false },
    Field { name: "alpha_ca", lo: 0.05, hi: 2.0, log: true, fresh: true },
    Field { name: "syt_fast_kd", lo: 0.1, hi: 2.0, log: true, fresh: true },
    Field { name: "syt_slow_kd", lo: 0.2, hi: 5.0, log: true, fresh: true },
    Field { name: "doc2_gain", lo: 0.0, hi: 0.5, log: false, fresh: true },
    Field { name: "complexin_bias", lo: 0.0, hi: 2.0, log: false, fresh: true },
    Field { name: "prime_rate", lo: 0.005, hi: 0.3, log: true, fresh: false },
    Field { name: "unprime_per_release", lo: 0.001, hi: 0.3, log: true, fresh: false },
    Field { name: "nsf_recover", lo: 0.001, hi: 0.3, log: true, fresh: false },
    Field { name: "lambda_loge", lo: 0.0, hi: 5.0, log: false, fresh: true },
];

impl Field {
    fn enc(&self, v: f64) -> f64 {
        if self.log {
            v.ln()
        } else {
            v
        }
    }
    /// `v` mapped to `[0, 1]` across the bounds (in log space for log fields).
    fn to_unit(&self, v: f64) -> f64 {
        ((self.enc(v) - self.enc(self.lo)) / (self.enc(self.hi) - self.enc(self.lo))).clamp(0.0, 1.0)
    }
    /// The value at `u` (clamped to `[0, 1]`, i.e. to the bounds).
    fn value_at(&self, u: f64) -> f64 {
        let e = self.enc(self.lo) + u.clamp(0.0, 1.0) * (self.enc(self.hi) - self.enc(self.lo));
        if self.log {
            e.exp()
        } else {
            e
        }
    }
}

/// `protocell tune`: CMA-ES (population, generations, seed) over the live presynaptic fields,
/// each searched in `[0, 1]` across its bounds (log-scaled where marked; σ₀ = 0.2), maximising
/// held-out recall accuracy after a short training run; writes the best configuration.
pub(crate) fn tune(a: TuneArgs) -> Result<()> {
    if a.population < 2 || a.generations == 0 || a.steps == 0 {
        return Err(Error::InvalidArgument("--population must be >= 2, --generations and --steps >= 1".into()));
    }
    if a.batch == 0 || a.batch > 4096 || !(a.lr > 0.0 && a.lr < 1.0) {
        return Err(Error::InvalidArgument(format!(
            "--batch {} must be in 1..=4096 and --lr {} in (0, 1)",
            a.batch, a.lr
        )));
    }
    let base = variant_model("causal", &a.sets, None)?;
    let mode = base["synapses"].as_str().unwrap_or("causal").to_string();
    if mode == "off" {
        return Err(Error::Config("there is nothing to tune with synapses off".into()));
    }
    let fields: Vec<&Field> = FIELDS.iter().filter(|f| mode == "causal" || f.fresh).collect();
    let start: Vec<f64> = fields.iter().map(|f| f.to_unit(base["synaptic"][f.name].as_f64().unwrap_or(f.lo))).collect();
    let task = Recall::default();
    let total = (a.population * a.generations) as u64;
    let bar = if a.json { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("tune {bar:30} {pos}/{len} candidates [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("template"),
    );
    let silent = ProgressBar::hidden();
    let decode = |u: &[f64]| -> Value {
        let mut m = serde_json::Map::new();
        for (f, x) in fields.iter().zip(u) {
            m.insert(f.name.to_string(), json!(f.value_at(*x)));
        }
        Value::Object(m)
    };
    let mut failure: Option<Error> = None;
    let mut best = (f64::INFINITY, decode(&start));
    let mut history = Vec::new();
    let objective = |x: &cmaes::DVector<f64>| -> f64 {
        let u: Vec<f64> = x.iter().copied().collect();
        let cand = decode(&u);
        let mut model = base.clone();
        protocell_runtime::config::merge(&mut model["synaptic"], &cand);
        let fitness = match recall_run(&model, &task, a.steps, (a.batch, a.lr), a.seed, &silent) {
            Ok(r) => 1.0 - r.accuracy,
            Err(e) => {
                failure.get_or_insert(e);
                2.0
            }
        };
        if fitness < best.0 {
            best = (fitness, cand.clone());
        }
        history.push(json!({"candidate": cand, "recall_accuracy": 1.0 - fitness}));
        bar.inc(1);
        bar.set_message(format!("best accuracy {:.3}", 1.0 - best.0));
        fitness
    };
    let mut state = cmaes::CMAESOptions::new(start.clone(), 0.2)
        .population_size(a.population)
        .max_generations(a.generations)
        .seed(a.seed)
        .build(objective)
        .map_err(|e| Error::Config(format!("CMA-ES options: {e:?}")))?;
    state.run();
    drop(state);
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let (fitness, params) = best;
    let file = json!({"model": {"synaptic": params}});
    let text = if a.out.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
        toml::to_string_pretty(&file).map_err(|e| Error::Config(format!("cannot write TOML: {e}")))?
    } else {
        serde_json::to_string_pretty(&file).map_err(|e| Error::Config(e.to_string()))? + "\n"
    };
    protocell_runtime::io::write_atomic(&a.out, text.as_bytes())?;
    if a.json {
        println!(
            "{}",
            json!({"best_recall_accuracy": 1.0 - fitness, "best": file, "out": a.out, "mode": mode,
                   "population": a.population, "generations": a.generations, "steps": a.steps, "seed": a.seed,
                   "history": history})
        );
    } else {
        println!("best held-out recall accuracy {:.3} ({} candidates, {mode} mode)", 1.0 - fitness, history.len());
        println!("{}", serde_json::to_string_pretty(&file["model"]["synaptic"]).unwrap_or_default());
        println!("written to {}", a.out.display());
    }
    Ok(())
}
