//! `protocell experiment`: the seeds' claims, re-run like for like, with the numbers the
//! seeds report printed beside ours.
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::data::{phrase_process_floor, seed_phrases, SEED_PHRASES};
use protocell_core::error::{Error, Result};
use protocell_runtime::config::apply_set;
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Experiments.
#[derive(Subcommand)]
pub enum ExperimentCmd {
    /// Seed 001: the 4-layer baseline vs the 2-layer Cellular Transformer on the seed's data
    /// (several seeds) and on real text.
    DepthCollapse(DepthArgs),
    /// Seed 000: the CellToken seed run, then each cell mode vs a matched GPT on real text.
    CellToken(CellTokenArgs),
    /// Seed 003: synapses off vs the seed's presynaptic step vs causal depletion (and a tuned
    /// configuration): held-out associative recall, validation loss on real text, speed, memory.
    Synapses(SynapsesArgs),
}

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

/// Arguments of `experiment depth-collapse`.
#[derive(Args)]
pub struct DepthArgs {
    /// Seeds per model.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Training steps on real text (batches of 64 × 32 as in the seed).
    #[arg(long, default_value_t = 1560)]
    real_steps: u64,
    /// Real text for the second part (default: ../shared/data/shakespeare.txt when present).
    #[arg(long)]
    real_data: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `experiment cell-token`.
#[derive(Args)]
pub struct CellTokenArgs {
    /// Seeds of the seed-corpus run.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Training steps on real text for the mode comparison.
    #[arg(long, default_value_t = 1000)]
    real_steps: u64,
    /// Seeds of each model in the mode comparison.
    #[arg(long, default_value_t = 3)]
    compare_seeds: u64,
    /// Real text for the comparison (default: ../shared/data/shakespeare.txt when present,
    /// else the built-in corpus).
    #[arg(long)]
    real_data: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: ExperimentCmd) -> Result<()> {
    match cmd {
        ExperimentCmd::DepthCollapse(a) => depth_collapse(a),
        ExperimentCmd::CellToken(a) => cell_token(a),
        ExperimentCmd::Synapses(a) => crate::synapses::experiment(a),
    }
}

/// What one training run produced.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) label: String,
    pub(crate) params: usize,
    /// `(step, training loss)` of every step.
    pub(crate) losses: Vec<(u64, f64)>,
    pub(crate) val_loss: f64,
    pub(crate) seconds: f64,
    pub(crate) tokens_per_s: f64,
    pub(crate) peak_tensor_bytes: usize,
}

impl RunResult {
    fn mean_loss(&self, from: u64, to: u64) -> f64 {
        let v: Vec<f64> = self.losses.iter().filter(|(s, _)| *s > from && *s <= to).map(|x| x.1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
    fn loss_at(&self, step: u64) -> f64 {
        self.losses.iter().find(|(s, _)| *s == step).map_or(f64::NAN, |x| x.1)
    }
    fn to_json(&self) -> Value {
        json!({"label": self.label, "params": self.params, "val_loss": self.val_loss, "seconds": self.seconds,
               "tokens_per_s": self.tokens_per_s, "peak_tensor_bytes": self.peak_tensor_bytes,
               "losses": self.losses.iter().filter(|(s, _)| s % 50 == 0 || *s == 1).collect::<Vec<_>>()})
    }
}

pub(crate) fn config(model: &str, preset: &str, sets: &[String]) -> Result<RunConfig> {
    let mut v = registry::preset(model, Some(preset))?.to_value();
    for s in sets {
        apply_set(&mut v, s)?;
    }
    RunConfig::from_value(v)
}

/// Trains `run` to its planned steps on the CPU with a progress bar; evaluates at the end.
pub(crate) fn train(label: &str, run: RunConfig, quiet: bool) -> Result<RunResult> {
    let mut s = new_session(run.clone(), Device::Cpu)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(run.train.steps) };
    bar.set_style(ProgressStyle::with_template("{prefix:>34} {bar:24} {pos}/{len} {msg}").expect("template"));
    bar.set_prefix(label.to_string());
    protocell_cpu::reset_peak();
    let t0 = Instant::now();
    let (mut losses, mut secs, mut tokens) = (Vec::new(), 0.0, 0u64);
    while s.step() < run.train.steps {
        let st = s.train_step()?;
        losses.push((st.step, st.loss));
        secs += st.seconds;
        tokens += st.tokens;
        bar.inc(1);
        if st.step % 20 == 0 {
            bar.set_message(format!("loss {:.3}", st.loss));
        }
    }
    let val_loss = s.evaluate()?;
    bar.finish_and_clear();
    Ok(RunResult {
        label: label.to_string(),
        params: s.num_params(),
        losses,
        val_loss,
        seconds: t0.elapsed().as_secs_f64(),
        tokens_per_s: tokens as f64 / secs,
        peak_tensor_bytes: protocell_cpu::memory_stats().peak_bytes,
    })
}

pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

pub(crate) fn shared_text(given: &Option<PathBuf>) -> Option<PathBuf> {
    given.clone().or_else(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/shakespeare.txt");
        p.canonicalize().ok()
    })
}

/// The models of seed 001's comparison: the seed's two, plus a 2-layer baseline as the control
/// that separates "fewer layers" from "organelles".
const MODELS_001: [(&str, &str, &[&str]); 3] = [
    ("baseline (4 macro layers)", "baseline", &[]),
    ("baseline (2 macro layers)", "baseline", &["model.macro_layers=2"]),
    ("cellular (2 macro layers)", "seed", &[]),
];

fn depth_collapse(a: DepthArgs) -> Result<()> {
    if a.seeds == 0 {
        return Err(Error::InvalidArgument("--seeds must be at least 1".into()));
    }
    let mut rows: Vec<(String, Vec<RunResult>)> = Vec::new();
    let mut floors = Vec::new();
    for (label, preset, extra) in MODELS_001 {
        let mut runs = Vec::new();
        for seed in 1..=a.seeds {
            let mut sets = vec![format!("train.seed={seed}"), format!("train.data.corpus_seed={seed}")];
            sets.extend(extra.iter().map(|s| s.to_string()));
            let run = config("cellular-transformer", preset, &sets)?;
            let text = seed_phrases(seed, run.train.data.corpus_bytes);
            let train_part: String = text.chars().take((text.chars().count() as f64 * 0.9) as usize).collect();
            if rows.is_empty() {
                floors.push(phrase_process_floor(&train_part, &SEED_PHRASES, run.train.seq_len));
            }
            runs.push(train(&format!("{label}, seed {seed}"), run, a.json)?);
        }
        rows.push((label.to_string(), runs));
    }
    let (floor, _) = mean_sd(&floors);
    let steps = rows[0].1[0].losses.len() as u64;
    let epoch = steps / 5;
    let mut real: Vec<(String, Vec<RunResult>)> = Vec::new();
    if let Some(path) = shared_text(&a.real_data) {
        for (label, preset, extra) in MODELS_001 {
            let mut runs = Vec::new();
            for seed in 1..=a.seeds {
                let mut sets = vec![
                    format!("train.data.path={}", path.display()),
                    "train.sampling=random".to_string(),
                    format!("train.steps={}", a.real_steps),
                    format!("train.eval_every={}", a.real_steps),
                    format!("train.seed={seed}"),
                ];
                sets.extend(extra.iter().map(|s| s.to_string()));
                let run = config("cellular-transformer", preset, &sets)?;
                runs.push(train(&format!("{label}, real text, seed {seed}"), run, a.json)?);
            }
            real.push((label.to_string(), runs));
        }
    }
    if a.json {
        let v = json!({
            "entropy_floor": floor,
            "claimed": {"baseline": {"params": 401942, "loss": 0.2106}, "cellular": {"params": 270454, "loss": 0.2142}},
            "seed_data": rows.iter().map(|(l, r)| json!({"model": l, "runs": r.iter().map(RunResult::to_json).collect::<Vec<_>>(),
                "epoch5_train_loss": r.iter().map(|x| x.mean_loss(steps - epoch, steps)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "real_text": real.iter().map(|(l, r)| json!({"model": l,
                "runs": r.iter().map(RunResult::to_json).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "Seed 001 depth collapse on the seed's phrase data ({} seeds; batch 64 × 32, Adam 2e-3, 5 epochs)",
        a.seeds
    );
    println!("entropy floor of the data (exact Bayes filter, 32-character windows): {floor:.4} nats/char\n");
    println!("| model | params | epoch-5 train loss | val loss | wall s/run | tokens/s | seed's claim |");
    println!("|---|---|---|---|---|---|---|");
    for ((label, runs), claim) in
        rows.iter().zip(["401,942 params, 0.2106", "— (control, not in the seed)", "270,454 params, 0.2142"])
    {
        let tl: Vec<f64> = runs.iter().map(|r| r.mean_loss(steps - epoch, steps)).collect();
        let vl: Vec<f64> = runs.iter().map(|r| r.val_loss).collect();
        let (tm, ts) = mean_sd(&tl);
        let (vm, vs) = mean_sd(&vl);
        let wall = runs.iter().map(|r| r.seconds).sum::<f64>() / runs.len() as f64;
        let tps = runs.iter().map(|r| r.tokens_per_s).sum::<f64>() / runs.len() as f64;
        println!(
            "| {label} | {} | {tm:.4} ± {ts:.4} | {vm:.4} ± {vs:.4} | {wall:.1} | {tps:.0} | {claim} |",
            runs[0].params
        );
    }
    if !real.is_empty() {
        println!(
            "\nSame models and optimiser on real text ({} steps of 64 × 32 characters, random windows; mean ± sd over {} seeds):\n",
            a.real_steps, a.seeds
        );
        comparison_table(&real);
    } else {
        println!("\n(real-text part skipped: pass --real-data FILE or provide ../shared/data/shakespeare.txt)");
    }
    Ok(())
}

fn cell_token(a: CellTokenArgs) -> Result<()> {
    if a.seeds == 0 || a.compare_seeds == 0 {
        return Err(Error::InvalidArgument("--seeds and --compare-seeds must be at least 1".into()));
    }
    // part 1: the seed run
    let mut seed_runs = Vec::new();
    for seed in 1..=a.seeds {
        let run = config("cell-token", "seed", &[format!("train.seed={seed}")])?;
        seed_runs.push(train(&format!("seed run, seed {seed}"), run, a.json)?);
    }
    // part 2: real text, each cell mode vs a GPT of about the same size, same token budget
    let real = shared_text(&a.real_data);
    let data_sets: Vec<String> = match &real {
        Some(p) => vec![format!("train.data.path={}", p.display())],
        None => vec![],
    };
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v = data_sets.clone();
        v.extend([
            format!("train.steps={}", a.real_steps),
            format!("train.eval_every={}", a.real_steps),
            "train.data.tokenizer=bytes".into(),
        ]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ct = |mode: &str, extra: &[&str]| -> Result<RunConfig> {
        let mut sets = common(extra);
        sets.push(format!("model.mode={mode}"));
        config("cell-token", "default", &sets)
    };
    let variants: Vec<(&str, RunConfig)> = vec![
        ("cell-token, as-coded", ct("as-coded", &[])?),
        ("cell-token, as-described", ct("as-described", &[])?),
        ("cell-token, sound (default)", ct("sound", &[])?),
        ("cell-token, sound, 1 inner step (control)", ct("sound", &["model.inner_steps=1"])?),
        ("cell-token, no cell path (ablation)", ct("sound", &["model.cell_path=false"])?),
        (
            "GPT, depth 3 (matched size)",
            config(
                "gpt",
                "bench",
                &common(&[
                    "model.n_layer=3",
                    "model.ctx_len=128",
                    "model.dropout=0.1",
                    "train.seq_len=128",
                    "train.batch_size=16",
                ]),
            )?,
        ),
    ];
    let mut comparison: Vec<(String, Vec<RunResult>)> = Vec::new();
    for (label, run) in variants {
        let mut runs = Vec::new();
        for seed in 1..=a.compare_seeds {
            let mut run = run.clone();
            run.train.seed = seed;
            runs.push(train(&format!("{label}, seed {seed}"), run, a.json)?);
        }
        comparison.push((label.to_string(), runs));
    }
    if a.json {
        println!(
            "{}",
            json!({"seed_runs": seed_runs.iter().map(RunResult::to_json).collect::<Vec<_>>(),
                   "real_text": real.as_ref().map(|p| p.display().to_string()),
                   "comparison": comparison.iter().map(|(l, r)| json!({"model": l,
                       "runs": r.iter().map(RunResult::to_json).collect::<Vec<_>>()})).collect::<Vec<_>>()})
        );
        return Ok(());
    }
    let claimed =
        [(0u64, 3.5470), (50, 2.5231), (100, 2.0225), (200, 1.2232), (300, 0.6914), (400, 0.5415), (499, 0.4913)];
    println!("Seed 000 CellToken run (as-coded cells, seed corpus, 500 steps of 16 × 128; {} seeds)\n", a.seeds);
    print!("| step | seed's paper |");
    for r in &seed_runs {
        print!(" {} |", r.label);
    }
    println!("\n|---|---|{}", "---|".repeat(seed_runs.len()));
    for (step, c) in claimed {
        print!("| {step} | {c:.4} |");
        for r in &seed_runs {
            print!(" {:.4} |", r.loss_at(step + 1));
        }
        println!();
    }
    print!("| val @ 500 | — (seed code measured 0.32–0.39) |");
    for r in &seed_runs {
        print!(" {:.4} |", r.val_loss);
    }
    println!("\n");
    let data = real.as_ref().map_or("the built-in corpus".to_string(), |p| p.display().to_string());
    println!(
        "Cell modes vs a matched GPT on {data} ({} steps of 16 × 128 bytes each; mean ± sd over {} seeds):\n",
        a.real_steps, a.compare_seeds
    );
    comparison_table(&comparison);
    Ok(())
}

/// A markdown table of repeated runs: validation and final training loss as mean ± sd.
fn comparison_table(rows: &[(String, Vec<RunResult>)]) {
    println!("| model | params | val loss | train loss (last 50 steps) | wall s/run | tokens/s | peak tensor memory |");
    println!("|---|---|---|---|---|---|---|");
    for (label, runs) in rows {
        let (vm, vs) = mean_sd(&runs.iter().map(|r| r.val_loss).collect::<Vec<_>>());
        let train: Vec<f64> = runs
            .iter()
            .map(|r| {
                let n = r.losses.len() as u64;
                r.mean_loss(n.saturating_sub(50), n)
            })
            .collect();
        let (tm, ts) = mean_sd(&train);
        let tps = runs.iter().map(|r| r.tokens_per_s).sum::<f64>() / runs.len() as f64;
        let wall = runs.iter().map(|r| r.seconds).sum::<f64>() / runs.len() as f64;
        let peak = runs.iter().map(|r| r.peak_tensor_bytes).max().unwrap_or(0);
        println!(
            "| {label} | {} | {vm:.4} ± {vs:.4} | {tm:.4} ± {ts:.4} | {wall:.1} | {tps:.0} | {:.1} MiB |",
            runs[0].params,
            peak as f64 / 1048576.0
        );
    }
}
