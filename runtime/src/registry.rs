//! The models this build knows, their presets, and run-time dispatch over
//! (device × architecture) to monomorphised code.
use crate::config::{Corpus, DataConfig, RunConfig, SamplingKind, TokenizerKind, TrainConfig};
use protocell_core::cell::CellMode;
use protocell_core::error::{Error, Result};
use protocell_core::models::{CellTokenConfig, CellularTransformerConfig, GptConfig};
use protocell_core::optim::{AdamWConfig, DecayFilter};
use serde_json::Value;

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
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "cell-token",
        about:
            "CellToken (seed 000): tokens as colonies of EPGL cells with mucus rewiring, then a pre-norm transformer",
        presets: &[
            (
                "default",
                "sound cell mode, width 128, 6 blocks × 5 inner steps, depth 3, context 128, batch 16, built-in corpus",
            ),
            ("seed", "the seed's run: as-coded cells, seed corpus (29 characters), 500 steps, AdamW 3e-4 → 1e-5"),
            ("described", "the seed's run with the seed paper's equations (as-described cells)"),
            ("tiny", "width 32, 4 blocks × 2 steps, depth 1, context 32 (CI)"),
        ],
    },
    ModelEntry {
        name: "cellular-transformer",
        about:
            "Cellular Transformer (seed 001): in-token attention over organelles, then post-norm attention-only layers",
        presets: &[
            ("seed", "the seed's cellular model: 8 organelles × 16, 2 macro layers, seed phrases, Adam 2e-3, 5 epochs"),
            ("baseline", "the seed's baseline: no organelles, 4 macro layers, same data and training"),
            ("tiny", "width 32, 4 organelles, 1 macro layer (CI)"),
        ],
    },
    ModelEntry {
        name: "gpt",
        about: "baseline pre-norm decoder-only transformer (GPT-2 style, byte-level)",
        presets: &[
            ("bench", "depth 4, width 128, 4 heads, context 256, batch 4 (the benchmark configuration)"),
            ("tiny", "depth 2, width 64, 2 heads, context 64, batch 8, 200 steps (seconds on a laptop; CI)"),
        ],
    },
];

/// The model trained when `--model` is not given.
pub const DEFAULT_MODEL: &str = "cell-token";

/// The CellToken seed's training recipe (`cellular.md` §2.5) for a cell mode.
fn cell_token_seed(mode: CellMode) -> (CellTokenConfig, TrainConfig) {
    let model = CellTokenConfig { mode, vocab_size: 29, ..CellTokenConfig::default() };
    let train = TrainConfig {
        steps: 500,
        batch_size: 16,
        seq_len: 128,
        lr: 3e-4,
        min_lr: 1e-5,
        warmup: 0,
        optim: AdamWConfig { weight_decay: 0.01, decay: DecayFilter::All, ..AdamWConfig::default() },
        eval_every: 50,
        eval_batches: 8,
        checkpoint_every: 0,
        data: DataConfig {
            corpus: Corpus::SeedSentences,
            corpus_bytes: 300,
            tokenizer: TokenizerKind::Chars,
            ..DataConfig::default()
        },
        ..TrainConfig::default()
    };
    (model, train)
}

/// The Cellular Transformer seed's recipe (`cellular.md` §3.6): Adam 2e-3, constant rate, no
/// weight decay or clipping, batches of 64 windows of 32, 5 epochs. The held-out tail (10 %)
/// is extra: 22,222 characters leave the seed's 20,000 for training.
fn cellular_seed(model: CellularTransformerConfig) -> (CellularTransformerConfig, TrainConfig) {
    let data = DataConfig {
        corpus: Corpus::SeedPhrases,
        corpus_bytes: 22_222,
        tokenizer: TokenizerKind::Chars,
        ..DataConfig::default()
    };
    let epochs = 5 * protocell_core::data::steps_per_epoch(20_000, 64, 32);
    let train = TrainConfig {
        steps: epochs,
        batch_size: 64,
        seq_len: 32,
        lr: 2e-3,
        min_lr: 2e-3,
        warmup: 0,
        optim: AdamWConfig { weight_decay: 0.0, grad_clip: 0.0, ..AdamWConfig::default() },
        eval_every: epochs / 5,
        eval_batches: 8,
        checkpoint_every: 0,
        sampling: SamplingKind::Epochs,
        data,
        ..TrainConfig::default()
    };
    (CellularTransformerConfig { vocab_size: 22, ..model }, train)
}

fn json<T: serde::Serialize>(x: T) -> Value {
    serde_json::to_value(x).expect("config serialises")
}

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
    let (model, train): (Value, TrainConfig) = match (entry.name, p) {
        ("cell-token", "default") => (
            json(CellTokenConfig::default()),
            TrainConfig { batch_size: 16, seq_len: 128, steps: 1000, ..TrainConfig::default() },
        ),
        ("cell-token", "seed") => {
            let (m, t) = cell_token_seed(CellMode::AsCoded);
            (json(m), t)
        }
        ("cell-token", "described") => {
            let (m, t) = cell_token_seed(CellMode::AsDescribed);
            (json(m), t)
        }
        ("cell-token", "tiny") => (
            json(CellTokenConfig {
                ctx_len: 32,
                d_model: 32,
                num_blocks: 4,
                inner_steps: 2,
                n_head: 2,
                depth: 1,
                ..CellTokenConfig::default()
            }),
            TrainConfig {
                steps: 100,
                batch_size: 8,
                seq_len: 32,
                lr: 2e-3,
                min_lr: 2e-4,
                warmup: 10,
                eval_every: 50,
                eval_batches: 4,
                data: DataConfig { corpus_bytes: 64 << 10, ..DataConfig::default() },
                ..TrainConfig::default()
            },
        ),
        ("cellular-transformer", "seed") => {
            let (m, t) = cellular_seed(CellularTransformerConfig::default());
            (json(m), t)
        }
        ("cellular-transformer", "baseline") => {
            let (m, t) =
                cellular_seed(CellularTransformerConfig { organelles: 0, macro_layers: 4, ..Default::default() });
            (json(m), t)
        }
        ("cellular-transformer", "tiny") => {
            let (m, mut t) = cellular_seed(CellularTransformerConfig {
                ctx_len: 32,
                d_model: 32,
                organelles: 4,
                organelle_heads: 2,
                macro_layers: 1,
                macro_heads: 4,
                ..Default::default()
            });
            t.steps = 60;
            t.eval_every = 30;
            t.batch_size = 16;
            (json(m), t)
        }
        ("gpt", "bench") => (json(GptConfig::default()), TrainConfig::default()),
        ("gpt", "tiny") => (
            json(GptConfig { ctx_len: 64, n_layer: 2, n_head: 2, d_model: 64, ..GptConfig::default() }),
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
    Ok(RunConfig { arch: entry.name.to_string(), preset: p.to_string(), model, train })
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
            "cell-token" => {
                type $M = protocell_core::models::CellToken<$B>;
                $body
            }
            "cellular-transformer" => {
                type $M = protocell_core::models::CellularTransformer<$B>;
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
                type $B = $crate::backends::protocell_cpu::Cpu;
                let $dev = $crate::backends::protocell_cpu::CpuDevice;
                $body
            }
            $crate::Device::Wgpu(index) => match $crate::backends::protocell_wgpu::WgpuDevice::new(index) {
                Ok($dev) => {
                    type $B = $crate::backends::protocell_wgpu::Wgpu;
                    $body
                }
                Err(e) => Err(e),
            },
            $crate::Device::Cuda(index) => match $crate::backends::protocell_cuda::CudaDevice::new(index) {
                Ok($dev) => {
                    type $B = $crate::backends::protocell_cuda::Cuda;
                    $body
                }
                Err(e) => Err(e),
            },
        }
    };
}
