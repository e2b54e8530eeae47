//! Training sessions: a model, its data and core's [`Trainer`], monomorphised per (backend,
//! model), behind the object-safe [`Session`] trait that the CLI drives.
use crate::config::{RunConfig, SamplingKind};
use crate::data::{self, Dataset};
use crate::infer::{self, EvalReport, Sampling};
use crate::{with_arch, with_device, Device};
use protocell_core::autodiff::{Autodiff, AutodiffBackend};
use protocell_core::backend::{Backend, MemoryStats};
use protocell_core::data::{epoch_batch, eval_batches, train_batch, Batch, Tokenizer};
use protocell_core::error::{Error, Result};
use protocell_core::models::LanguageModel;
use protocell_core::nn::Module;
use protocell_core::record::{fnv1a, Checkpoint, TrainMeta};
use protocell_core::rng::RngKey;
use protocell_core::train::checkpoint::{load_model, model_checkpoint, restore_trainer, save_trainer};
use protocell_core::train::{self, StepRecord, Trainer};
use std::time::Instant;

/// Sub-stream tags of the run seed.
const INIT_STREAM: u64 = 1;
const DATA_STREAM: u64 = 2;
const DROPOUT_STREAM: u64 = 3;

/// What one training step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Steps completed after this one.
    pub step: u64,
    /// Training loss of this step's batch (before the update).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens in the batch.
    pub tokens: u64,
    /// Wall time of the step in seconds.
    pub seconds: f64,
    /// Statistics the model reported about the pass (e.g. the alive fraction of pruned cells).
    pub model_stats: ModelStats,
}

/// A training run in progress, whatever its backend and architecture.
pub trait Session: Send {
    /// The run configuration.
    fn config(&self) -> &RunConfig;
    /// Steps completed.
    fn step(&self) -> u64;
    /// Trainable scalars.
    fn num_params(&self) -> usize;
    /// Scalars of model state that is not trained by gradients (buffers: Hebbian weights,
    /// traces, running statistics).
    fn num_buffer_values(&self) -> usize;
    /// Tokenizer of the training data.
    fn tokenizer(&self) -> &Tokenizer;
    /// Where the data came from.
    fn data_source(&self) -> &str;
    /// One optimiser step. A non-finite loss or gradient is an error and leaves the
    /// parameters and optimiser state as they were.
    fn train_step(&mut self) -> Result<StepStats>;
    /// One optimiser step on caller-provided ids `[batch, seq]` (inputs and targets).
    fn train_on(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> Result<StepStats>;
    /// Mean loss over the fixed validation batches.
    fn evaluate(&mut self) -> Result<f64>;
    /// Evaluation of the current model on arbitrary tokens.
    fn evaluate_tokens(&self, tokens: &[u32], batch: usize) -> Result<EvalReport>;
    /// Snapshot of weights, optimiser state and metadata.
    fn checkpoint(&self) -> Result<Checkpoint>;
    /// Sampled continuation of `prompt` tokens.
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>>;
    /// Allocator statistics of the backend.
    fn memory(&self) -> Option<MemoryStats>;
    /// Last validation loss.
    fn last_val_loss(&self) -> Option<f64>;
    /// Last training loss.
    fn last_loss(&self) -> Option<f64>;
}

struct Run<AB: AutodiffBackend, M> {
    run: RunConfig,
    model: M,
    trainer: Trainer<AB::Inner>,
    data: Dataset,
    val: Vec<Batch>,
    dev: AB::Device,
    tokens_seen: u64,
    last_loss: Option<f64>,
    last_val: Option<f64>,
    config_hash: u64,
    epoch_cache: Option<(u64, Vec<u32>)>,
}

fn config_hash(run: &RunConfig) -> u64 {
    fnv1a(serde_json::to_string(&run.to_value()).unwrap_or_default().into_bytes())
}

/// Makes every parameter of `model` a gradient leaf (the autodiff graph starts there).
pub(crate) fn track<AB: AutodiffBackend, M: Module<AB>>(model: &mut M) {
    model.for_each_param_mut(&mut |_, p| {
        let v = p.require_grad();
        p.set(v)
    });
}

impl<AB, M> Run<AB, M>
where
    AB: AutodiffBackend,
    M: LanguageModel<AB>,
{
    fn new(mut run: RunConfig, data: Dataset, dev: AB::Device, ckpt: Option<&Checkpoint>) -> Result<Self> {
        // the vocabulary follows the data's tokenizer
        if let Some(v) = run.model.get_mut("vocab_size") {
            *v = serde_json::json!(data.tokenizer.vocab_size());
        }
        run.train.validate()?;
        let t = &run.train;
        let (mut model, trainer, meta) = match ckpt {
            None => {
                let cfg: M::Config =
                    serde_json::from_value(run.model.clone()).map_err(|e| Error::Config(format!("model: {e}")))?;
                let model = M::init(&cfg, RngKey::new(t.seed).fold(INIT_STREAM), &dev)?;
                (model, Trainer::new(t.optimizer())?, None)
            }
            Some(ck) => {
                let meta =
                    ck.train_meta()?.ok_or_else(|| Error::Checkpoint("checkpoint has no training state".into()))?;
                let model = load_model::<AB, M>(ck, &dev)?;
                // a version-1 file kept its optimiser settings in the run configuration
                let trainer = restore_trainer::<AB::Inner, AB, M>(ck, &model, &dev, Some((t.optimizer(), meta.step)))?;
                if trainer.steps() != meta.step {
                    return Err(Error::Checkpoint(format!(
                        "the optimizer has taken {} steps, the training state says {}",
                        trainer.steps(),
                        meta.step
                    )));
                }
                (model, trainer, Some(meta))
            }
        };
        if t.seq_len > model.context_len() {
            return Err(Error::Config(format!(
                "train.seq_len {} exceeds the model context length {}",
                t.seq_len,
                model.context_len()
            )));
        }
        track::<AB, M>(&mut model);
        let val = eval_batches(&data.split.val, t.batch_size, t.seq_len, t.eval_batches)?;
        let config_hash = config_hash(&run);
        Ok(Self {
            run,
            model,
            trainer,
            data,
            val,
            dev,
            tokens_seen: meta.as_ref().map_or(0, |m| m.tokens_seen),
            last_loss: meta.as_ref().map(|m| m.loss),
            last_val: meta.as_ref().and_then(|m| m.val_loss),
            config_hash,
            epoch_cache: None,
        })
    }

    fn update(&mut self, batch: &Batch, started: Instant) -> Result<StepStats> {
        let key = RngKey::new(self.run.train.seed).fold(DROPOUT_STREAM).fold(self.trainer.steps());
        let rec = self.trainer.step::<AB, M>(&mut self.model, batch, key, &self.dev)?;
        self.tokens_seen += rec.tokens;
        self.last_loss = Some(rec.loss);
        Ok(StepStats::from_record(rec, started))
    }
}

/// Statistics a model reports about one pass (see [`StepStats::model_stats`]).
pub type ModelStats = Vec<(String, f64)>;

impl StepStats {
    /// A core step record with the wall time since `started`.
    pub(crate) fn from_record(r: StepRecord, started: Instant) -> Self {
        StepStats {
            step: r.step,
            loss: r.loss,
            lr: r.lr,
            grad_norm: r.grad_norm,
            tokens: r.tokens,
            seconds: started.elapsed().as_secs_f64(),
            model_stats: r.model_stats,
        }
    }
}

/// Checks a caller-provided batch `[batch, seq]` of inputs and targets for a model of
/// `context` positions and `vocab` symbols.
pub(crate) fn check_batch(
    inputs: &[u32],
    targets: &[u32],
    batch: usize,
    seq: usize,
    context: usize,
    vocab: usize,
) -> Result<()> {
    for (what, ids) in [("inputs", inputs), ("targets", targets)] {
        if batch == 0 || seq == 0 || batch.checked_mul(seq) != Some(ids.len()) {
            return Err(Error::InvalidArgument(format!("{} {what} do not form a [{batch}, {seq}] batch", ids.len())));
        }
        if let Some(i) = ids.iter().position(|&t| t as usize >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "{what}[{i}] = {} is outside the vocabulary of {vocab}",
                ids[i]
            )));
        }
    }
    if seq > context {
        return Err(Error::InvalidArgument(format!("sequence length {seq} exceeds the model context {context}")));
    }
    Ok(())
}

impl<AB, M> Session for Run<AB, M>
where
    AB: AutodiffBackend,
    AB::Device: Send,
    AB::Inner: Backend,
    M: LanguageModel<AB> + Send,
{
    fn config(&self) -> &RunConfig {
        &self.run
    }
    fn step(&self) -> u64 {
        self.trainer.steps()
    }
    fn num_params(&self) -> usize {
        self.model.num_params()
    }
    fn num_buffer_values(&self) -> usize {
        let mut n = 0;
        self.model.for_each_buffer(&mut |_, b| n += b.numel());
        n
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.data.tokenizer
    }
    fn data_source(&self) -> &str {
        &self.data.source
    }
    fn train_step(&mut self) -> Result<StepStats> {
        let started = Instant::now();
        let t = &self.run.train;
        let key = RngKey::new(t.seed).fold(DATA_STREAM);
        let step = self.trainer.steps();
        let batch = match t.sampling {
            SamplingKind::Random => train_batch(&self.data.split.train, t.batch_size, t.seq_len, key, step)?,
            SamplingKind::Epochs => {
                epoch_batch(&self.data.split.train, t.batch_size, t.seq_len, key, step, &mut self.epoch_cache)?
            }
        };
        self.update(&batch, started)
    }
    fn train_on(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> Result<StepStats> {
        let started = Instant::now();
        check_batch(inputs, targets, batch, seq, self.model.context_len(), self.model.vocab_size())?;
        let b = Batch { batch, seq, inputs: inputs.to_vec(), targets: targets.to_vec() };
        self.update(&b, started)
    }
    fn evaluate(&mut self) -> Result<f64> {
        let v = train::evaluate::<AB, M>(&self.model, &self.val, &self.dev)?;
        self.last_val = Some(v);
        Ok(v)
    }
    fn evaluate_tokens(&self, tokens: &[u32], batch: usize) -> Result<EvalReport> {
        infer::evaluate::<AB, M>(&self.model, &self.data.tokenizer, tokens, batch, &self.dev)
    }
    fn checkpoint(&self) -> Result<Checkpoint> {
        let mut ck = model_checkpoint::<AB, M>(&self.model, &self.data.tokenizer)?;
        save_trainer::<AB::Inner, M, AB>(&self.trainer, &self.model, &mut ck)?;
        ck.set_train_meta(&TrainMeta {
            step: self.trainer.steps(),
            seed: self.run.train.seed,
            loss: self.last_loss.unwrap_or(f64::NAN),
            val_loss: self.last_val,
            tokens_seen: self.tokens_seen,
            config_hash: self.config_hash,
            data_hash: self.data.hash,
            run_config: self.run.to_json(),
        })?;
        ck.meta.push(("backend".into(), AB::Inner::name()));
        Ok(ck)
    }
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>> {
        infer::generate::<AB, M>(&self.model, prompt, n_new, s, &self.dev)
    }
    fn memory(&self) -> Option<MemoryStats> {
        AB::memory_stats(&self.dev)
    }
    fn last_val_loss(&self) -> Option<f64> {
        self.last_val
    }
    fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }
}

fn build(run: RunConfig, data: Dataset, device: Device, ckpt: Option<&Checkpoint>) -> Result<Box<dyn Session>> {
    let arch = run.arch.clone();
    with_device!(device, |B, dev| {
        type AB = Autodiff<B>;
        with_arch!(arch.as_str(), AB, |M| {
            Ok(Box::new(Run::<AB, M>::new(run, data, dev, ckpt)?) as Box<dyn Session>)
        })
    })
}

/// A fresh training session for `run` on `device` (loads or generates its data).
pub fn new_session(run: RunConfig, device: Device) -> Result<Box<dyn Session>> {
    run.train.validate()?;
    let data = data::load(&run.train.data, run.train.seq_len)?;
    build(run, data, device, None)
}

/// A session that continues `ckpt` exactly where it stopped. `steps` may extend the planned
/// total (the schedule then stretches to the new total); the data must be the same text.
pub fn resume_session(ckpt: &Checkpoint, device: Device, steps: Option<u64>) -> Result<Box<dyn Session>> {
    let meta =
        ckpt.train_meta()?.ok_or_else(|| Error::Checkpoint("checkpoint holds no training state to resume".into()))?;
    let mut run = RunConfig::from_value(
        serde_json::from_str(&meta.run_config)
            .map_err(|e| Error::Checkpoint(format!("stored run configuration: {e}")))?,
    )?;
    if run.arch != ckpt.arch {
        return Err(Error::Checkpoint(format!("run configuration is for {}, weights for {}", run.arch, ckpt.arch)));
    }
    if let Some(s) = steps {
        run.train.steps = s;
    }
    if run.train.steps < meta.step {
        return Err(Error::Config(format!(
            "train.steps {} is below the {} steps already done",
            run.train.steps, meta.step
        )));
    }
    let data = data::load(&run.train.data, run.train.seq_len)?;
    if data.hash != meta.data_hash {
        return Err(Error::Data(format!(
            "the training text ({}) differs from the one this checkpoint was trained on",
            data.source
        )));
    }
    build(run, data, device, Some(ckpt))
}
