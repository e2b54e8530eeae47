//! Training runs shared by the experiments: a preset with overrides, a run to its planned
//! steps with a progress bar and its result, and the statistics the tables print.
use indicatif::{ProgressBar, ProgressStyle};
use protocell_core::error::Result;
use protocell_runtime::config::apply_set;
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

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
    pub(crate) fn mean_loss(&self, from: u64, to: u64) -> f64 {
        let v: Vec<f64> = self.losses.iter().filter(|(s, _)| *s > from && *s <= to).map(|x| x.1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
    pub(crate) fn loss_at(&self, step: u64) -> f64 {
        self.losses.iter().find(|(s, _)| *s == step).map_or(f64::NAN, |x| x.1)
    }
    pub(crate) fn to_json(&self) -> Value {
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
