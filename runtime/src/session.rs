//! Training sessions: one generic trainer, monomorphised per (backend, model), behind the
//! object-safe [`Session`] trait that the CLI and the C ABI drive.
use crate::config::{RunConfig, SamplingKind};
use crate::data::{self, Dataset};
use crate::infer::{self, EvalReport, Sampling};
use crate::{with_arch, with_device, Device};
use protocell_core::autodiff::{Autodiff, AutodiffBackend};
use protocell_core::backend::{Backend, MemoryStats};
use protocell_core::data::{epoch_batch, eval_batches, train_batch, Batch, Tokenizer};
use protocell_core::error::{Error, Result};
use protocell_core::models::LanguageModel;
use protocell_core::nn::{export_params, import_params, ForwardCtx};
use protocell_core::optim::{AdamW, Schedule};
use protocell_core::record::{fnv1a, Checkpoint, NamedTensor, TrainMeta};
use protocell_core::rng::RngKey;
use protocell_core::{Ids, Tensor};
use std::collections::BTreeMap;
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

struct Trainer<AB: AutodiffBackend, M> {
    run: RunConfig,
    model: M,
    opt: AdamW<AB::Inner>,
    schedule: Schedule,
    data: Dataset,
    val: Vec<Batch>,
    dev: AB::Device,
    step: u64,
    tokens_seen: u64,
    last_loss: Option<f64>,
    last_val: Option<f64>,
    config_hash: u64,
    epoch_cache: Option<(u64, Vec<u32>)>,
}

fn config_hash(run: &RunConfig) -> u64 {
    fnv1a(serde_json::to_string(&run.to_value()).unwrap_or_default().into_bytes())
}

impl<AB, M> Trainer<AB, M>
where
    AB: AutodiffBackend,
    M: LanguageModel<AB>,
{
    fn new(mut run: RunConfig, data: Dataset, dev: AB::Device) -> Result<Self> {
        // the vocabulary follows the data's tokenizer
        if let Some(v) = run.model.get_mut("vocab_size") {
            *v = serde_json::json!(data.tokenizer.vocab_size());
        }
        let cfg: M::Config =
            serde_json::from_value(run.model.clone()).map_err(|e| Error::Config(format!("model: {e}")))?;
        run.train.validate()?;
        let mut model = M::init(&cfg, RngKey::new(run.train.seed).fold(INIT_STREAM), &dev)?;
        if run.train.seq_len > model.context_len() {
            return Err(Error::Config(format!(
                "train.seq_len {} exceeds the model context length {}",
                run.train.seq_len,
                model.context_len()
            )));
        }
        model.visit_mut("", &mut |_, p| *p = p.require_grad());
        let t = &run.train;
        let val = eval_batches(&data.split.val, t.batch_size, t.seq_len, t.eval_batches)?;
        let opt = AdamW::new(t.optim.clone())?;
        let schedule = t.schedule();
        let config_hash = config_hash(&run);
        Ok(Self {
            run,
            model,
            opt,
            schedule,
            data,
            val,
            dev,
            step: 0,
            tokens_seen: 0,
            last_loss: None,
            last_val: None,
            config_hash,
            epoch_cache: None,
        })
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        let meta = ckpt.train.as_ref().ok_or_else(|| Error::Checkpoint("checkpoint has no training state".into()))?;
        let params = infer::model_tensors(ckpt);
        import_params::<AB, M>(&mut self.model, &params, &self.dev)?;
        self.model.visit_mut("", &mut |_, p| *p = p.require_grad());
        let mut moments = BTreeMap::new();
        let mut err = None;
        self.model.visit("", &mut |name, p| {
            let (m, v) = (ckpt.tensor(&format!("optim.m.{name}")), ckpt.tensor(&format!("optim.v.{name}")));
            match (m, v) {
                (Some(m), Some(v)) if m.shape == p.shape() && v.shape == p.shape() => {
                    let mk = Tensor::<AB::Inner>::from_f32(&m.data, &m.shape, &self.dev);
                    let vk = Tensor::<AB::Inner>::from_f32(&v.data, &v.shape, &self.dev);
                    match (mk, vk) {
                        (Ok(a), Ok(b)) => {
                            moments.insert(name.to_string(), (a, b));
                        }
                        (Err(e), _) | (_, Err(e)) => err = Some(e),
                    }
                }
                (None, None) if meta.step == 0 => {}
                _ => err = Some(Error::Checkpoint(format!("optimizer moments of {name} are missing or misshapen"))),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        self.opt.restore(meta.step, moments);
        self.step = meta.step;
        self.tokens_seen = meta.tokens_seen;
        self.last_loss = Some(meta.loss);
        self.last_val = meta.val_loss;
        Ok(())
    }

    fn update(&mut self, batch: &Batch, started: Instant) -> Result<StepStats> {
        let lr = self.schedule.at(self.step);
        let key = RngKey::new(self.run.train.seed).fold(DROPOUT_STREAM).fold(self.step);
        let (loss, grad_norm, model_stats) =
            optimizer_step::<AB, M>(&mut self.model, &mut self.opt, batch, lr, key, &self.dev)?;
        self.step += 1;
        let tokens = (batch.batch * batch.seq) as u64;
        self.tokens_seen += tokens;
        self.last_loss = Some(loss);
        Ok(StepStats {
            step: self.step,
            loss,
            lr,
            grad_norm,
            tokens,
            seconds: started.elapsed().as_secs_f64(),
            model_stats,
        })
    }
}

/// Statistics a model reports about one pass (see [`StepStats::model_stats`]).
pub type ModelStats = Vec<(&'static str, f64)>;

/// One AdamW update of `model` on `batch` at learning rate `lr`: forward, backward, clipped
/// update; `dropout` keys the step's dropout masks. Returns `(loss, gradient norm, model
/// statistics)`. A non-finite loss or gradient is an error and leaves the parameters and
/// optimiser state as they were.
pub(crate) fn optimizer_step<AB, M>(
    model: &mut M,
    opt: &mut AdamW<AB::Inner>,
    batch: &Batch,
    lr: f64,
    dropout: RngKey,
    dev: &AB::Device,
) -> Result<(f64, f64, ModelStats)>
where
    AB: AutodiffBackend,
    M: LanguageModel<AB>,
{
    let shape = [batch.batch, batch.seq];
    let x = Ids::<AB>::from_u32(&batch.inputs, &shape, dev)?;
    let y = Ids::<AB>::from_u32(&batch.targets, &shape, dev)?;
    let mut ctx = ForwardCtx::train(dropout);
    let loss = model.loss(&x, &y, &mut ctx)?;
    let lv = loss.to_scalar()? as f64;
    if !lv.is_finite() {
        return Err(Error::NonFinite(format!("training loss is {lv} at step {}", opt.step + 1)));
    }
    let mut grads = loss.backward()?;
    let report = opt.step::<AB, M>(model, &mut grads, lr)?;
    Ok((lv, report.grad_norm, ctx.stats().to_vec()))
}

impl<AB, M> Session for Trainer<AB, M>
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
        self.step
    }
    fn num_params(&self) -> usize {
        self.model.num_params()
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
        let batch = match t.sampling {
            SamplingKind::Random => train_batch(&self.data.split.train, t.batch_size, t.seq_len, key, self.step)?,
            SamplingKind::Epochs => {
                epoch_batch(&self.data.split.train, t.batch_size, t.seq_len, key, self.step, &mut self.epoch_cache)?
            }
        };
        self.update(&batch, started)
    }
    fn train_on(&mut self, inputs: &[u32], targets: &[u32], batch: usize, seq: usize) -> Result<StepStats> {
        let started = Instant::now();
        if batch == 0 || seq == 0 || inputs.len() != batch * seq || targets.len() != batch * seq {
            return Err(Error::InvalidArgument(format!(
                "{} inputs / {} targets do not form a [{batch}, {seq}] batch",
                inputs.len(),
                targets.len()
            )));
        }
        if seq > self.model.context_len() {
            return Err(Error::InvalidArgument(format!(
                "sequence {seq} exceeds the context {}",
                self.model.context_len()
            )));
        }
        let b = Batch { batch, seq, inputs: inputs.to_vec(), targets: targets.to_vec() };
        self.update(&b, started)
    }
    fn evaluate(&mut self) -> Result<f64> {
        let mut total = 0.0;
        for b in &self.val {
            let shape = [b.batch, b.seq];
            let x = Ids::<AB>::from_u32(&b.inputs, &shape, &self.dev)?;
            let y = Ids::<AB>::from_u32(&b.targets, &shape, &self.dev)?;
            total += self.model.loss(&x, &y, &mut ForwardCtx::eval())?.to_scalar()? as f64;
        }
        let v = total / self.val.len() as f64;
        self.last_val = Some(v);
        Ok(v)
    }
    fn evaluate_tokens(&self, tokens: &[u32], batch: usize) -> Result<EvalReport> {
        infer::evaluate::<AB, M>(&self.model, &self.data.tokenizer, tokens, batch, &self.dev)
    }
    fn checkpoint(&self) -> Result<Checkpoint> {
        let mut tensors: Vec<NamedTensor> = export_params::<AB, M>(&self.model)?
            .into_iter()
            .map(|(name, h)| NamedTensor { name, shape: h.shape, data: h.data })
            .collect();
        for (name, (m, v)) in self.opt.moments() {
            tensors.push(NamedTensor { name: format!("optim.m.{name}"), shape: m.shape().to_vec(), data: m.to_vec()? });
            tensors.push(NamedTensor { name: format!("optim.v.{name}"), shape: v.shape().to_vec(), data: v.to_vec()? });
        }
        Ok(Checkpoint {
            arch: M::ARCH.to_string(),
            model_config: serde_json::to_string(self.model.config()).map_err(|e| Error::Config(e.to_string()))?,
            tokenizer: self.data.tokenizer.clone(),
            train: Some(TrainMeta {
                step: self.step,
                seed: self.run.train.seed,
                loss: self.last_loss.unwrap_or(f64::NAN),
                val_loss: self.last_val,
                tokens_seen: self.tokens_seen,
                config_hash: self.config_hash,
                data_hash: self.data.hash,
                run_config: self.run.to_json(),
            }),
            lifecycle: Vec::new(),
            meta: vec![("backend".into(), AB::Inner::name())],
            tensors,
        })
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
            let mut t = Trainer::<AB, M>::new(run, data, dev)?;
            if let Some(c) = ckpt {
                t.restore(c)?;
            }
            Ok(Box::new(t) as Box<dyn Session>)
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
        ckpt.train.as_ref().ok_or_else(|| Error::Checkpoint("checkpoint holds no training state to resume".into()))?;
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
