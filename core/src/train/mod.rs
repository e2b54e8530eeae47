//! The trainer: one optimisation loop step for every model and every front end.
//!
//! [`Trainer`] owns the optimiser ([`AdamW`], keyed by parameter id), the learning-rate
//! [`Schedule`], the step count and the lifecycle log; the model stays with the caller, so
//! the same trainer serves a training session (the CLI), an embedding program with separate
//! model and optimiser handles (the C ABI, Python) and tests with toy modules. A step is
//! forward → loss (must be finite) → backward → clipped AdamW update, as one transaction;
//! [`Trainer::edit`] is the hook for structural edits between steps; [`evaluate`] is the
//! evaluation hook; [`StepRecord`] is the metrics record of a step. Saving and restoring the
//! optimiser with a checkpoint is written once, in [`checkpoint`].
use crate::autodiff::AutodiffBackend;
use crate::backend::Backend;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::lifecycle::{LifecycleRecord, LineageEvent};
use crate::models::LanguageModel;
use crate::nn::{ForwardCtx, Module};
use crate::optim::AdamW;
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;

pub mod checkpoint;

pub use crate::optim::OptimizerSettings;
pub use crate::recipe::TrainConfig;

/// The metrics record of one training step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// Steps completed after this one.
    pub step: u64,
    /// Training loss of the step's batch (before the update).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens in the batch.
    pub tokens: u64,
    /// Statistics the model reported about the pass (e.g. the alive fraction of cells).
    pub model_stats: Vec<(String, f64)>,
}

/// Optimiser, schedule, step count and lifecycle log of one model's training.
pub struct Trainer<B: Backend> {
    settings: OptimizerSettings,
    opt: AdamW<B>,
    lifecycle: LifecycleRecord,
}

impl<B: Backend> Trainer<B> {
    /// A fresh trainer (no steps taken).
    pub fn new(settings: OptimizerSettings) -> Result<Self> {
        settings.validate()?;
        Ok(Self { opt: AdamW::new(settings.adamw.clone())?, settings, lifecycle: LifecycleRecord::default() })
    }

    /// Its settings.
    pub fn settings(&self) -> &OptimizerSettings {
        &self.settings
    }

    /// Optimiser steps completed.
    pub fn steps(&self) -> u64 {
        self.opt.steps()
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW<B> {
        &self.opt
    }

    /// The lifecycle log.
    pub fn lifecycle(&self) -> &LifecycleRecord {
        &self.lifecycle
    }

    /// Learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.settings.schedule.at(self.steps())
    }

    /// One training step with a caller-defined loss: `loss(model, ctx)` builds a one-element
    /// loss on the autodiff backend (`ctx` is in training mode with dropout keyed by
    /// `dropout`). Order: forward (layers may stage new buffer values, e.g. Hebbian writes),
    /// backward, optimiser update of the parameters, then every staged buffer value is
    /// committed. A non-finite loss or gradient, or any failure, leaves the model (parameters
    /// and buffers) and the trainer as they were.
    pub fn step_with<AB, M>(
        &mut self,
        model: &mut M,
        dropout: RngKey,
        loss: impl FnOnce(&M, &mut ForwardCtx) -> Result<Tensor<AB>>,
    ) -> Result<StepRecord>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + ?Sized,
    {
        let r = self.step_inner::<AB, M>(model, dropout, loss);
        model.for_each_buffer_mut(&mut |_, b| {
            if r.is_ok() {
                b.commit();
            } else {
                b.discard();
            }
        });
        r
    }

    fn step_inner<AB, M>(
        &mut self,
        model: &mut M,
        dropout: RngKey,
        loss: impl FnOnce(&M, &mut ForwardCtx) -> Result<Tensor<AB>>,
    ) -> Result<StepRecord>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + ?Sized,
    {
        let lr = self.lr();
        let mut ctx = ForwardCtx::train(dropout);
        let loss = loss(model, &mut ctx)?;
        let lv = loss.to_scalar()? as f64;
        if !lv.is_finite() {
            return Err(Error::NonFinite(format!("training loss is {lv} at step {}", self.steps() + 1)));
        }
        let mut grads = loss.backward()?;
        let peak = self.settings.schedule.lr;
        let frac = if peak > 0.0 { lr / peak } else { 0.0 };
        let report = self.opt.step_scaled::<AB, M>(model, &mut grads, lr, frac)?;
        Ok(StepRecord {
            step: self.steps(),
            loss: lv,
            lr,
            grad_norm: report.grad_norm,
            tokens: 0,
            model_stats: ctx.stats().to_vec(),
        })
    }

    /// One next-token training step of a language model on `batch`.
    pub fn step<AB, M>(&mut self, model: &mut M, batch: &Batch, dropout: RngKey, dev: &AB::Device) -> Result<StepRecord>
    where
        AB: AutodiffBackend<Inner = B>,
        M: LanguageModel<AB>,
    {
        let shape = [batch.batch, batch.seq];
        let x = Ids::<AB>::from_u32(&batch.inputs, &shape, dev)?;
        let y = Ids::<AB>::from_u32(&batch.targets, &shape, dev)?;
        let mut rec = self.step_with::<AB, M>(model, dropout, |m, ctx| m.loss(&x, &y, ctx))?;
        rec.tokens = (batch.batch * batch.seq) as u64;
        Ok(rec)
    }

    /// The hook for structural edits between steps. `f` may change the model's parameter set
    /// (drawing new ids from the model's counter), move optimiser state by the rules of
    /// [`AdamW`] and append lineage events; it runs as a transaction: when it returns an
    /// error, the model, the optimiser state and the lineage log are restored to what they
    /// were before it ran. Afterwards the state of parameters no longer in the model is
    /// dropped.
    pub fn edit<AB, M, R>(
        &mut self,
        model: &mut M,
        f: impl FnOnce(&mut M, &mut AdamW<B>, &mut Vec<LineageEvent>) -> Result<R>,
    ) -> Result<R>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + Clone,
    {
        // tensors are reference-counted: the snapshot copies handles, not data
        let (model_before, opt_before, log_before) = (model.clone(), self.opt.clone(), self.lifecycle.lineage.len());
        match f(model, &mut self.opt, &mut self.lifecycle.lineage) {
            Ok(r) => {
                let mut live = alloc::collections::BTreeSet::new();
                model.for_each_param(&mut |_, p| {
                    live.insert(p.id());
                });
                self.opt.retain(|id| live.contains(&id));
                Ok(r)
            }
            Err(e) => {
                *model = model_before;
                self.opt = opt_before;
                self.lifecycle.lineage.truncate(log_before);
                Err(e)
            }
        }
    }

    /// Restores a trainer from its parts (used by [`checkpoint::restore_trainer`]).
    pub(crate) fn from_parts(settings: OptimizerSettings, opt: AdamW<B>, lifecycle: LifecycleRecord) -> Self {
        Self { settings, opt, lifecycle }
    }
}

/// The evaluation hook: the mean next-token loss of `model` over `batches` (evaluation mode).
pub fn evaluate<B: Backend, M: LanguageModel<B>>(model: &M, batches: &[Batch], dev: &B::Device) -> Result<f64> {
    if batches.is_empty() {
        return Err(Error::Data("evaluation needs at least one batch".into()));
    }
    let mut total = 0.0;
    for b in batches {
        let shape = [b.batch, b.seq];
        let x = Ids::<B>::from_u32(&b.inputs, &shape, dev)?;
        let y = Ids::<B>::from_u32(&b.targets, &shape, dev)?;
        total += model.loss(&x, &y, &mut ForwardCtx::eval())?.to_scalar()? as f64;
    }
    Ok(total / batches.len() as f64)
}
