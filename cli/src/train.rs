//! `protocell train`: configuration, the training loop with progress, metrics, periodic
//! evaluation and checkpoints, and the end-of-run report.
use crate::plot;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::error::{Error, Result};
use protocell_runtime::config::{apply_set, merge, read_config_file, RunConfig};
use protocell_runtime::infer::Sampling;
use protocell_runtime::{io, new_session, registry, resume_session, sys, Device, Session};
use serde_json::{json, Value};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `protocell train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model to train (`protocell models` lists them).
    #[arg(long)]
    model: Option<String>,
    /// Preset of the model (default: the model's first preset).
    #[arg(long)]
    preset: Option<String>,
    /// Planned optimiser steps (length of the learning-rate schedule).
    #[arg(long)]
    steps: Option<u64>,
    /// UTF-8 text file to train on (default: the built-in synthetic corpus).
    #[arg(long)]
    data: Option<PathBuf>,
    /// cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Seed of initialisation, batches and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory (default: runs/<model>-<n>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override any configuration field: `--set train.lr=3e-4 --set n_layer=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// TOML or JSON file with `[model]` / `[train]` tables (applied before flags and --set).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from a checkpoint written by `protocell train` (same data, exact continuation).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop after this many completed steps (the schedule still spans --steps).
    #[arg(long)]
    stop_after: Option<u64>,
    /// Tokens of the sample printed at the end (0: none).
    #[arg(long, default_value_t = 200)]
    sample_tokens: usize,
    /// Prompt of the end-of-run sample.
    #[arg(long, default_value = "The ")]
    prompt: String,
    /// Print a JSON summary on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn build_config(a: &TrainArgs) -> Result<RunConfig> {
    let file = a.config.as_deref().map(read_config_file).transpose()?;
    let arch = a
        .model
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.get("arch")).and_then(Value::as_str).map(String::from))
        .unwrap_or_else(|| registry::default_model().to_string());
    let preset_name = a
        .preset
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.get("preset")).and_then(Value::as_str).map(String::from));
    let mut v = registry::preset(&arch, preset_name.as_deref())?.to_value();
    if let Some(f) = &file {
        let mut f = f.clone();
        if let Some(o) = f.as_object_mut() {
            o.remove("arch");
            o.remove("preset");
        }
        merge(&mut v, &f);
    }
    if let Some(s) = a.steps {
        v["train"]["steps"] = json!(s);
    }
    if let Some(s) = a.seed {
        v["train"]["seed"] = json!(s);
    }
    if let Some(d) = &a.data {
        v["train"]["data"]["path"] = json!(d.to_string_lossy());
    }
    for s in &a.sets {
        apply_set(&mut v, s)?;
    }
    let run = RunConfig::from_value(v)?;
    run.train.validate()?;
    Ok(run)
}

/// `runs/<model>-<n>` with the first unused `n`.
fn default_out(model: &str) -> PathBuf {
    let base = Path::new("runs");
    (1..).map(|n| base.join(format!("{model}-{n}"))).find(|p| !p.exists()).expect("an unused run directory")
}

struct Metrics {
    file: BufWriter<fs::File>,
    train: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
    /// Per step, the model's statistics (for the vitals chart).
    model: Vec<(f64, Vec<(String, f64)>)>,
}

impl Metrics {
    fn open(path: &Path, append: bool) -> Result<Self> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)
            .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self { file: BufWriter::new(f), train: Vec::new(), val: Vec::new(), model: Vec::new() })
    }
    fn log(&mut self, v: Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|e| Error::Io(e.to_string()))
    }
    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::Io(e.to_string()))
    }
}

fn save(session: &dyn Session, path: &Path) -> Result<()> {
    io::write_checkpoint(path, &session.checkpoint()?)
}

pub fn run(a: TrainArgs) -> Result<()> {
    let device: Device = a.backend.parse()?;
    let (mut session, out) = match &a.resume {
        Some(ck) => {
            // a resumed run continues its stored configuration: options that would change it are refused
            let conflicting = [
                ("--preset", a.preset.is_some()),
                ("--data", a.data.is_some()),
                ("--seed", a.seed.is_some()),
                ("--set", !a.sets.is_empty()),
                ("--config", a.config.is_some()),
            ];
            if let Some((flag, _)) = conflicting.iter().find(|(_, given)| *given) {
                return Err(Error::Config(format!(
                    "{flag} cannot be combined with --resume: a resumed run continues the configuration stored in the checkpoint"
                )));
            }
            let c = io::read_checkpoint(ck)?;
            if let Some(m) = &a.model {
                if *m != c.arch {
                    return Err(Error::Checkpoint(format!("{} holds a {} model, not {m}", ck.display(), c.arch)));
                }
            }
            let s = resume_session(&c, device, a.steps)?;
            let out = a.out.clone().unwrap_or_else(|| ck.parent().map(Path::to_path_buf).unwrap_or_default());
            (s, out)
        }
        None => {
            let run = build_config(&a)?;
            let out = a.out.clone().unwrap_or_else(|| default_out(&run.arch));
            (new_session(run, device)?, out)
        }
    };
    fs::create_dir_all(&out).map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let ckpt_path = out.join("model.ckpt");
    io::write_atomic(&out.join("config.json"), session.config().to_json().as_bytes())?;
    let mut metrics = Metrics::open(&out.join("metrics.jsonl"), a.resume.is_some())?;
    let cfg = session.config().clone();
    let t = &cfg.train;
    let start_step = session.step();
    let end = a.stop_after.map_or(t.steps, |s| s.min(t.steps));
    if !a.json {
        eprintln!(
            "training {} ({} preset, {} parameters) on {} with {} for steps {}..{} of {}; output in {}",
            cfg.arch,
            cfg.preset,
            session.num_params(),
            session.data_source(),
            device,
            start_step,
            end,
            t.steps,
            out.display()
        );
    }
    let bar = if a.quiet || a.json { ProgressBar::hidden() } else { ProgressBar::new(end.saturating_sub(start_step)) };
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid template"),
    );
    let t0 = Instant::now();
    let mut train_secs = 0.0;
    let mut train_tokens = 0u64;
    let mut last_good: Option<u64> = None;
    while session.step() < end {
        let stats = match session.train_step() {
            Ok(s) => s,
            Err(e @ Error::NonFinite(_)) => {
                bar.abandon();
                metrics.flush()?;
                let keep = match last_good {
                    Some(s) => format!("the last good checkpoint (step {s}) is kept at {}", ckpt_path.display()),
                    None if ckpt_path.exists() => {
                        format!("the previous checkpoint is kept at {}", ckpt_path.display())
                    }
                    None => "no checkpoint was written yet".to_string(),
                };
                return Err(Error::NonFinite(format!(
                    "{}; training stopped, {keep}",
                    e.to_string().trim_start_matches("non-finite value: ")
                )));
            }
            Err(e) => return Err(e),
        };
        train_secs += stats.seconds;
        train_tokens += stats.tokens;
        metrics.train.push((stats.step as f64, stats.loss));
        let mut line = json!({"step": stats.step, "loss": stats.loss, "lr": stats.lr, "grad_norm": stats.grad_norm,
                              "tokens_per_s": stats.tokens as f64 / stats.seconds, "elapsed_s": t0.elapsed().as_secs_f64()});
        // model-specific statistics (e.g. the alive fractions of pruned cell blocks), averaged
        // over the forward passes of the step when a model logs a name more than once
        let model_stats = mean_stats(&stats.model_stats);
        for (name, value) in &model_stats {
            line[name.as_str()] = json!(value);
        }
        metrics.model.push((stats.step as f64, model_stats));
        metrics.log(line)?;
        bar.inc(1);
        bar.set_message(format!("loss {:.4}  {:.0} tok/s", stats.loss, train_tokens as f64 / train_secs));
        let s = stats.step;
        if t.eval_every > 0 && s % t.eval_every == 0 && s < end {
            let v = session.evaluate()?;
            metrics.val.push((s as f64, v));
            metrics.log(json!({"step": s, "val_loss": v}))?;
            bar.println(format!("step {s:>6}  train {:.4}  val {v:.4}", stats.loss));
        }
        if t.checkpoint_every > 0 && s % t.checkpoint_every == 0 && s < end {
            save(session.as_ref(), &ckpt_path)?;
            last_good = Some(s);
            metrics.flush()?;
        }
    }
    bar.finish_and_clear();
    let val = session.evaluate()?;
    metrics.val.push((session.step() as f64, val));
    metrics.log(json!({"step": session.step(), "val_loss": val}))?;
    metrics.flush()?;
    save(session.as_ref(), &ckpt_path)?;
    let png = out.join("loss.png");
    let title = format!("{} ({})", cfg.arch, cfg.preset);
    plot::loss_curve(&png, &metrics.train, &metrics.val, &title)?;
    let vitals_png = out.join("vitals.png");
    let vitals = plot::vitals(&vitals_png, &metrics.model, &title)?.then_some(vitals_png);
    let sample = if a.sample_tokens > 0 {
        let tok = session.tokenizer().clone();
        let prompt = tok.encode(&a.prompt)?;
        let ids = session.generate(&prompt, a.sample_tokens, &Sampling { temperature: 0.8, top_k: 0, seed: t.seed })?;
        Some(format!("{}{}", a.prompt, tok.decode(&ids)?))
    } else {
        None
    };
    let tps = if train_secs > 0.0 { train_tokens as f64 / train_secs } else { 0.0 };
    let rss = sys::peak_rss_bytes();
    let mem = session.memory();
    if a.json {
        println!(
            "{}",
            json!({
                "model": cfg.arch, "preset": cfg.preset, "backend": device.to_string(), "params": session.num_params(),
                "steps": session.step(), "final_loss": session.last_loss(), "val_loss": val, "tokens_per_s": tps,
                "train_seconds": train_secs, "peak_rss_bytes": rss, "peak_tensor_bytes": mem.map(|m| m.peak_bytes),
                "checkpoint": ckpt_path, "metrics": out.join("metrics.jsonl"), "loss_png": png, "vitals_png": vitals, "sample": sample,
            })
        );
    } else {
        println!("steps        {}", session.step());
        println!("train loss   {:.4}", session.last_loss().unwrap_or(f64::NAN));
        println!("val loss     {val:.4}");
        println!("throughput   {tps:.0} tokens/s");
        if let Some(r) = rss {
            println!("peak RSS     {:.1} MiB", r as f64 / 1048576.0);
        }
        println!("checkpoint   {}", ckpt_path.display());
        println!("metrics      {}", out.join("metrics.jsonl").display());
        println!("loss curve   {}", png.display());
        if let Some(v) = &vitals {
            println!("vitals       {}", v.display());
        }
        if let Some(s) = sample {
            println!("--- sample ---\n{s}");
        }
    }
    Ok(())
}

/// Means of repeated `(name, value)` entries, in first-seen order.
fn mean_stats(stats: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64, usize)> = Vec::new();
    for (name, v) in stats {
        match out.iter_mut().find(|e| e.0 == *name) {
            Some(e) => {
                e.1 += v;
                e.2 += 1;
            }
            None => out.push((name.clone(), *v, 1)),
        }
    }
    out.into_iter().map(|(n, s, c)| (n, s / c as f64)).collect()
}
