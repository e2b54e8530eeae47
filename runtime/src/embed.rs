//! The embedding API behind the C ABI: a model that can be trained on caller-provided token
//! buffers with a separate optimiser object, generate and be saved, and a free-standing cell
//! colony — all chosen at run time by (device, architecture) and type-erased.
//!
//! Unlike a [`crate::Session`], nothing here reads training data: the caller feeds tokens.
use crate::config::{merge, RunConfig};
use crate::infer::{self, Sampling};
use crate::registry;
use crate::session::{check_batch, track, StepStats};
use crate::{with_arch, with_device, Device};
use protocell_core::autodiff::{Autodiff, AutodiffBackend};
use protocell_core::backend::Backend;
use protocell_core::cell::colony::{Colony, ColonyConfig};
use protocell_core::data::{Batch, CharTokenizer, Tokenizer};
use protocell_core::error::{Error, Result};
use protocell_core::models::LanguageModel;
use protocell_core::nn::ForwardCtx;
use protocell_core::optim::{AdamWConfig, DecayFilter, MuonConfig, Schedule};
use protocell_core::record::Checkpoint;
use protocell_core::rng::RngKey;
use protocell_core::train::checkpoint::{has_optimizer, load_model, model_checkpoint, restore_trainer, save_trainer};
use protocell_core::train::{OptimizerSettings, Trainer};
use protocell_core::{Ids, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Sub-stream tags of a model's seed.
const INIT_STREAM: u64 = 1;
const DROPOUT_STREAM: u64 = 3;

/// How to build a model. As JSON:
/// `{"arch": "gpt", "preset": "tiny", "model": {"n_layer": 2}, "seed": 7, "chars": null}`;
/// every field has a default (`arch` = the default model, its first preset, no overrides,
/// seed 0, byte tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Architecture id (see [`registry::models`]).
    #[serde(default = "default_arch")]
    pub arch: String,
    /// Preset of that architecture whose model settings are the starting point.
    #[serde(default)]
    pub preset: Option<String>,
    /// Overrides merged into the preset's model settings.
    #[serde(default)]
    pub model: Value,
    /// Seed of the initialisation (and of dropout during training).
    #[serde(default)]
    pub seed: u64,
    /// Character vocabulary (the distinct characters of this text, sorted); `null` for
    /// UTF-8 byte tokens (vocabulary 256).
    #[serde(default)]
    pub chars: Option<String>,
}

fn default_arch() -> String {
    registry::default_model().to_string()
}

impl ModelSpec {
    /// Parses JSON text; unknown fields are errors.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("model spec: {e}")))
    }

    fn tokenizer(&self) -> Result<Tokenizer> {
        match &self.chars {
            None => Ok(Tokenizer::Bytes),
            Some(t) if t.is_empty() => Err(Error::Config("model spec: chars is empty".into())),
            Some(t) => Ok(Tokenizer::Chars(CharTokenizer::from_text(t))),
        }
    }

    /// The model settings as the architecture's config JSON, vocabulary set by the tokenizer.
    fn model_config(&self, tok: &Tokenizer) -> Result<Value> {
        let base: RunConfig = registry::preset(&self.arch, self.preset.as_deref())?;
        let mut model = base.model;
        if !self.model.is_null() {
            if !self.model.is_object() {
                return Err(Error::Config("model spec: \"model\" must be an object of overrides".into()));
            }
            merge(&mut model, &self.model);
        }
        if let Some(v) = model.get_mut("vocab_size") {
            *v = serde_json::json!(tok.vocab_size());
        }
        Ok(model)
    }
}

/// Optimiser settings. As JSON, every field optional:
/// `{"lr": 1e-3, "min_lr": 1e-4, "warmup": 0, "total_steps": 0, "beta1": 0.9, "beta2": 0.999,
/// "eps": 1e-8, "weight_decay": 0.01, "grad_clip": 1.0, "muon": {"enabled": false}}`. With `total_steps` 0 the learning
/// rate stays at `lr` after the warmup; otherwise it follows a cosine to `min_lr` at
/// `total_steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine (with `total_steps` > 0).
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// Length of the cosine schedule (0: constant after warmup).
    pub total_steps: u64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Which parameters decay: `"matrices"` (matrices and embeddings, the default) or `"all"`.
    pub decay: DecayFilter,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Muon for the block matrices (`{"enabled": true}` turns it on with the nanochat
    /// recipe's settings; see `protocell_core::optim::MuonConfig`).
    pub muon: MuonConfig,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        let a = AdamWConfig::default();
        Self {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 0,
            total_steps: 0,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            weight_decay: a.weight_decay,
            decay: DecayFilter::Matrices,
            grad_clip: a.grad_clip,
            muon: a.muon,
        }
    }
}

impl OptimizerConfig {
    /// Parses JSON text (an empty object gives the defaults); unknown fields are errors.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::Config(format!("optimizer: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// The optimiser settings (AdamW and schedule) these fields describe.
    pub fn settings(&self) -> OptimizerSettings {
        OptimizerSettings {
            adamw: AdamWConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                decay: self.decay,
                grad_clip: self.grad_clip,
                muon: self.muon.clone(),
            },
            schedule: Schedule { lr: self.lr, min_lr: self.min_lr, warmup: self.warmup, total: self.total_steps },
        }
    }

    /// The fields of optimiser settings (from a checkpoint written by any front end).
    pub fn from_settings(s: &OptimizerSettings) -> Self {
        let (a, sc) = (&s.adamw, &s.schedule);
        Self {
            lr: sc.lr,
            min_lr: sc.min_lr,
            warmup: sc.warmup,
            total_steps: sc.total,
            beta1: a.beta1,
            beta2: a.beta2,
            eps: a.eps,
            weight_decay: a.weight_decay,
            decay: a.decay,
            grad_clip: a.grad_clip,
            muon: a.muon.clone(),
        }
    }

    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        self.settings().validate()?;
        if self.total_steps > 0 && self.warmup > self.total_steps {
            return Err(Error::Config(format!(
                "optimizer warmup {} exceeds total_steps {}",
                self.warmup, self.total_steps
            )));
        }
        Ok(())
    }

    /// Learning rate at 0-based step `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        self.settings().schedule.at(t)
    }
}

/// An optimiser for one model: core's [`Trainer`] (AdamW state keyed by parameter id, the
/// schedule, the step count) behind a type-erased handle. It binds to the first model it
/// updates; using it with another model is an error (its moments belong to that model's
/// parameters).
pub struct Optimizer {
    cfg: OptimizerConfig,
    owner: Option<u64>,
    steps: u64,
    state: Option<Box<dyn Any + Send>>,
}

impl Optimizer {
    /// A fresh optimiser.
    pub fn new(cfg: OptimizerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, owner: None, steps: 0, state: None })
    }
    /// Its settings.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }
    /// Updates applied.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

/// A model for embedding programs: inference, training on caller tokens, checkpoints.
pub trait Model: Send {
    /// Architecture id.
    fn arch(&self) -> &str;
    /// Device it lives on.
    fn device(&self) -> Device;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Longest sequence a forward pass accepts.
    fn context_len(&self) -> usize;
    /// Trainable scalars.
    fn num_params(&self) -> usize;
    /// Tokenizer.
    fn tokenizer(&self) -> &Tokenizer;
    /// Logits `[batch, seq, vocab]` (row-major) for ids `[batch, seq]`.
    fn logits(&self, ids: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>>;
    /// `n_new` sampled tokens after `prompt`.
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>>;
    /// One AdamW step on `inputs`/`targets` `[batch, seq]`. A failed step (bad input,
    /// non-finite loss or gradient) leaves the model and the optimiser as they were.
    fn train_step(
        &mut self,
        opt: &mut Optimizer,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<StepStats>;
    /// Weights, tokenizer and config (and the optimiser's moments when `opt` has updated
    /// this model), readable by [`load`] and by `protocell generate`.
    fn checkpoint(&self, opt: Option<&Optimizer>) -> Result<Checkpoint>;
    /// The optimiser saved with this model in `ckpt` (settings, step count and moments),
    /// bound to this model, so that training resumes exactly.
    fn restore_optimizer(&self, ckpt: &Checkpoint) -> Result<Optimizer>;
}

struct Embedded<AB: AutodiffBackend, M> {
    id: u64,
    device: Device,
    model: M,
    tok: Tokenizer,
    seed: u64,
    dev: AB::Device,
}

impl<AB: AutodiffBackend, M: LanguageModel<AB>> Embedded<AB, M> {
    fn check_ids(&self, what: &str, ids: &[u32], batch: usize, seq: usize) -> Result<()> {
        check_batch(ids, ids, batch, seq, self.model.context_len(), self.model.vocab_size())
            .map_err(|e| Error::InvalidArgument(e.to_string().replace("inputs", what)))
    }
}

impl<AB, M> Model for Embedded<AB, M>
where
    AB: AutodiffBackend,
    AB::Device: Send,
    M: LanguageModel<AB> + Send,
{
    fn arch(&self) -> &str {
        M::ARCH
    }
    fn device(&self) -> Device {
        self.device
    }
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    fn context_len(&self) -> usize {
        self.model.context_len()
    }
    fn num_params(&self) -> usize {
        self.model.num_params()
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }
    fn logits(&self, ids: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        self.check_ids("ids", ids, batch, seq)?;
        let x = Ids::<AB>::from_u32(ids, &[batch, seq], &self.dev)?;
        self.model.forward(&x, &mut ForwardCtx::eval())?.to_vec()
    }
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("generation needs a prompt of at least one token".into()));
        }
        infer::generate::<AB, M>(&self.model, prompt, n_new, s, &self.dev)
    }
    fn train_step(
        &mut self,
        opt: &mut Optimizer,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<StepStats> {
        let started = Instant::now();
        check_batch(inputs, targets, batch, seq, self.model.context_len(), self.model.vocab_size())?;
        if opt.owner.is_some_and(|o| o != self.id) {
            return Err(Error::InvalidArgument("this optimizer holds the state of another model".into()));
        }
        if opt.state.is_none() {
            opt.state = Some(Box::new(Trainer::<AB::Inner>::new(opt.cfg.settings())?));
        }
        let trainer = opt
            .state
            .as_mut()
            .and_then(|s| s.downcast_mut::<Trainer<AB::Inner>>())
            .ok_or_else(|| Error::InvalidArgument("this optimizer belongs to a model on another backend".into()))?;
        let key = RngKey::new(self.seed).fold(DROPOUT_STREAM).fold(trainer.steps());
        let b = Batch { batch, seq, inputs: inputs.to_vec(), targets: targets.to_vec() };
        let rec = trainer.step::<AB, M>(&mut self.model, &b, key, &self.dev)?;
        opt.owner = Some(self.id);
        opt.steps = trainer.steps();
        Ok(StepStats::from_record(rec, started))
    }
    fn checkpoint(&self, opt: Option<&Optimizer>) -> Result<Checkpoint> {
        let mut ck = model_checkpoint::<AB, M>(&self.model, &self.tok)?;
        ck.meta.push(("backend".to_string(), AB::Inner::name()));
        // the seed keys the dropout stream: a reloaded model continues it
        ck.meta.push(("seed".to_string(), self.seed.to_string()));
        if let Some(o) = opt.filter(|o| o.owner == Some(self.id)) {
            if let Some(trainer) = o.state.as_ref().and_then(|s| s.downcast_ref::<Trainer<AB::Inner>>()) {
                save_trainer::<AB::Inner, M, AB>(trainer, &self.model, &mut ck)?;
            }
        }
        Ok(ck)
    }
    fn restore_optimizer(&self, ckpt: &Checkpoint) -> Result<Optimizer> {
        // version-1 files: the embedding API kept the settings in `optim.*` metadata, a
        // training session in its run configuration
        let legacy = if has_optimizer(ckpt) {
            None
        } else if let (Some(cfg), Some(steps)) = (ckpt.meta_value("optim.config"), ckpt.meta_value("optim.steps")) {
            let cfg =
                OptimizerConfig::from_json(cfg).map_err(|e| Error::Checkpoint(format!("optimizer settings: {e}")))?;
            let steps: u64 = steps.parse().map_err(|_| Error::Checkpoint(format!("optimizer step count {steps:?}")))?;
            Some((cfg.settings(), steps))
        } else if let Some(meta) = ckpt.train_meta()? {
            let run = RunConfig::from_value(
                serde_json::from_str(&meta.run_config)
                    .map_err(|e| Error::Checkpoint(format!("stored run configuration: {e}")))?,
            )?;
            Some((run.train.optimizer(), meta.step))
        } else {
            return Err(Error::Checkpoint("this checkpoint holds no optimizer state".into()));
        };
        let trainer = restore_trainer::<AB::Inner, AB, M>(ckpt, &self.model, &self.dev, legacy)?;
        let cfg = OptimizerConfig::from_settings(trainer.settings());
        cfg.validate().map_err(|e| Error::Checkpoint(format!("optimizer settings: {e}")))?;
        Ok(Optimizer { cfg, owner: Some(self.id), steps: trainer.steps(), state: Some(Box::new(trainer)) })
    }
}

/// A freshly initialised model on `device`.
pub fn create(spec: &ModelSpec, device: Device) -> Result<Box<dyn Model>> {
    let tok = spec.tokenizer()?;
    let cfg_json = spec.model_config(&tok)?;
    let seed = spec.seed;
    with_device!(device, |B, dev| {
        type AB = Autodiff<B>;
        with_arch!(spec.arch.as_str(), AB, |M| {
            let cfg: <M as LanguageModel<AB>>::Config = serde_json::from_value(cfg_json)
                .map_err(|e| Error::Config(format!("{} model settings: {e}", spec.arch)))?;
            let mut model = M::init(&cfg, RngKey::new(seed).fold(INIT_STREAM), &dev)?;
            track::<AB, M>(&mut model);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            Ok(Box::new(Embedded::<AB, M> { id, device, model, tok, seed, dev }) as Box<dyn Model>)
        })
    })
}

/// The model of a checkpoint (from `protocell train` or [`Model::checkpoint`]) on `device`,
/// ready to generate or to go on training with a fresh optimiser.
pub fn load(ckpt: &Checkpoint, device: Device) -> Result<Box<dyn Model>> {
    let seed = match (ckpt.train_meta()?, ckpt.meta_value("seed")) {
        (Some(t), _) => t.seed,
        (None, Some(s)) => s.parse().map_err(|_| Error::Checkpoint(format!("seed {s:?} is not a number")))?,
        (None, None) => 0,
    };
    with_device!(device, |B, dev| {
        type AB = Autodiff<B>;
        with_arch!(ckpt.arch.as_str(), AB, |M| {
            let mut model = load_model::<AB, M>(ckpt, &dev)?;
            track::<AB, M>(&mut model);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let tok = ckpt.tokenizer.clone();
            Ok(Box::new(Embedded::<AB, M> { id, device, model, tok, seed, dev }) as Box<dyn Model>)
        })
    })
}

/// Checks that `device` can run protocell in this build.
pub fn check_device(device: Device) -> Result<()> {
    with_device!(device, |B, _dev| {
        let _ = B::name();
        Ok(())
    })
}

/// A cell colony for embedding programs (see [`Colony`]).
pub trait ColonyHandle: Send {
    /// Blocks `N`.
    fn blocks(&self) -> usize;
    /// Settings.
    fn config(&self) -> &ColonyConfig;
    /// `K` inner steps with drive `s: [N]`.
    fn step(&mut self, drive: &[f32]) -> Result<()>;
    /// State `[N, 4]`.
    fn state(&self) -> Result<Vec<f32>>;
    /// Mucus `[N, N]`.
    fn mucus(&self) -> Result<Vec<f32>>;
    /// Replaces the state (values in `[0, 1]`).
    fn set_state(&mut self, h: &[f32]) -> Result<()>;
    /// Replaces the mucus matrix (non-negative, zero diagonal).
    fn set_mucus(&mut self, w: &[f32]) -> Result<()>;
}

impl<B: Backend + protocell_core::cell::CellOps<B>> ColonyHandle for Colony<B>
where
    Tensor<B>: Send,
{
    fn blocks(&self) -> usize {
        Colony::blocks(self)
    }
    fn config(&self) -> &ColonyConfig {
        Colony::config(self)
    }
    fn step(&mut self, drive: &[f32]) -> Result<()> {
        Colony::step(self, drive)
    }
    fn state(&self) -> Result<Vec<f32>> {
        Colony::state(self)
    }
    fn mucus(&self) -> Result<Vec<f32>> {
        Colony::mucus(self)
    }
    fn set_state(&mut self, h: &[f32]) -> Result<()> {
        Colony::set_state(self, h)
    }
    fn set_mucus(&mut self, w: &[f32]) -> Result<()> {
        Colony::set_mucus(self, w)
    }
}

/// Parses colony settings from JSON (`{"blocks": 6}` at least); unknown fields are errors.
pub fn colony_config(text: &str) -> Result<ColonyConfig> {
    let c: ColonyConfig =
        serde_json::from_value(json_object(text, "colony")?).map_err(|e| Error::Config(format!("colony: {e}")))?;
    c.validate()?;
    Ok(c)
}

/// A colony on `device`.
pub fn create_colony(cfg: ColonyConfig, device: Device) -> Result<Box<dyn ColonyHandle>> {
    with_device!(device, |B, dev| Ok(Box::new(Colony::<B>::new(cfg, &dev)?) as Box<dyn ColonyHandle>))
}

/// Decodes a checkpoint held in memory (the limits of [`protocell_core::record::Limits`]).
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint> {
    Checkpoint::decode_with(bytes, &protocell_core::record::Limits::default())
}

/// Parses presynaptic settings from JSON (`{}` for the seed's defaults; any field of
/// `SynapticConfig`); unknown fields are errors.
pub fn presyn_config(text: &str) -> Result<protocell_core::synapse::SynapticConfig> {
    let c: protocell_core::synapse::SynapticConfig = json_object(text, "presynaptic settings")
        .and_then(|v| serde_json::from_value(v).map_err(|e| Error::Config(format!("presynaptic settings: {e}"))))?;
    c.validate()?;
    Ok(c)
}

/// Parses `text` as a JSON object (serde would also accept an array for a struct, by field
/// position: refused here).
fn json_object(text: &str, what: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Config(format!("{what}: {e}")))?;
    if !v.is_object() {
        return Err(Error::Config(format!("{what} must be a JSON object, got {v}")));
    }
    Ok(v)
}
