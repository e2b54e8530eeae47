//! The models this build knows, their presets, and run-time dispatch over
//! (device × architecture) to monomorphised code.
use crate::config::{RunConfig, TrainConfig};
use protocell_core::error::{Error, Result};
use protocell_core::models::GptConfig;

/// A model the CLI can train.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    /// Architecture id (also the `--model` name).
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// `(preset, description)` pairs; the first is the default.
    pub presets: &'static [(&'static str, &'static str)],
}

/// Every model of this build.
pub const MODELS: &[ModelEntry] = &[ModelEntry {
    name: "gpt",
    about: "baseline pre-norm decoder-only transformer (GPT-2 style, byte-level)",
    presets: &[
        ("bench", "depth 4, width 128, 4 heads, context 256, batch 4 (the benchmark configuration)"),
        ("tiny", "depth 2, width 64, 2 heads, context 64, batch 8, 200 steps (seconds on a laptop; CI)"),
    ],
}];

/// The model trained when `--model` is not given.
pub const DEFAULT_MODEL: &str = "gpt";

/// Looks a model up by name.
pub fn model(name: &str) -> Result<&'static ModelEntry> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown model {name:?}; available: {}",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The run configuration of `model` at `preset` (`None`: the model's default preset).
pub fn preset(model_name: &str, preset: Option<&str>) -> Result<RunConfig> {
    let entry = model(model_name)?;
    let p = preset.unwrap_or(entry.presets[0].0);
    let unknown = || {
        Error::Config(format!(
            "unknown preset {p:?} for model {model_name}; available: {}",
            entry.presets.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    };
    let (model, train) = match (entry.name, p) {
        ("gpt", "bench") => (GptConfig::default(), TrainConfig::default()),
        ("gpt", "tiny") => (
            GptConfig { ctx_len: 64, n_layer: 2, n_head: 2, d_model: 64, ..GptConfig::default() },
            TrainConfig {
                steps: 200,
                batch_size: 8,
                seq_len: 64,
                lr: 2e-3,
                min_lr: 2e-4,
                warmup: 20,
                eval_every: 50,
                eval_batches: 4,
                data: crate::config::DataConfig { corpus_bytes: 256 << 10, ..Default::default() },
                ..TrainConfig::default()
            },
        ),
        _ => return Err(unknown()),
    };
    Ok(RunConfig {
        arch: entry.name.to_string(),
        preset: p.to_string(),
        model: serde_json::to_value(model).expect("config serialises"),
        train,
    })
}

/// Runs `$body` with `$M` bound to the model type of architecture `$arch` on backend `$B`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_arch {
    ($arch:expr, $B:ty, |$M:ident| $body:expr) => {
        match $arch {
            "gpt" => {
                type $M = protocell_core::models::Gpt<$B>;
                $body
            }
            other => Err($crate::registry::model(other).err().unwrap_or_else(|| {
                protocell_core::Error::Config(format!("model {other:?} is not wired into this build"))
            })),
        }
    };
}

/// Runs `$body` with `$B` bound to the backend type and `$dev` to the device value of `$device`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_device {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {
        match $device {
            $crate::Device::Cpu => {
                type $B = protocell_cpu::Cpu;
                let $dev = protocell_cpu::CpuDevice;
                $body
            }
            other => Err(other.unavailable()),
        }
    };
}
