//! Optimisers and learning-rate schedules.
use crate::autodiff::{AutodiffBackend, Gradients};
use crate::backend::{AdamWStep, Backend};
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Which parameters receive weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DecayFilter {
    /// Matrices and embeddings (rank ≥ 2); not biases or norm gains (the GPT-2/nanoGPT rule).
    #[default]
    Matrices,
    /// Every parameter (PyTorch's `AdamW(model.parameters())`, as the seed scripts do).
    All,
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// Parameters that decay.
    #[serde(default)]
    pub decay: DecayFilter,
    /// Clip the global gradient L2 norm to this value (0 disables).
    pub grad_clip: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decay: DecayFilter::Matrices, grad_clip: 1.0 }
    }
}

impl AdamWConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad(format!("AdamW betas ({}, {}) must lie in [0, 1)", self.beta1, self.beta2));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad(format!("AdamW eps {} must be > 0", self.eps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("weight decay {} must be >= 0", self.weight_decay));
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return bad(format!("grad_clip {} must be >= 0", self.grad_clip));
        }
        Ok(())
    }
}

/// Learning-rate schedule: linear warmup to `lr`, then cosine decay to `min_lr` at `total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Floor of the cosine.
    pub min_lr: f64,
    /// Linear warmup steps (0: start at `lr`).
    pub warmup: u64,
    /// Step at which the cosine reaches `min_lr`.
    pub total: u64,
}

impl Schedule {
    /// Learning rate used at 0-based step `t`:
    /// `lr·(t+1)/warmup` during warmup, then `min + (lr − min)·(1 + cos(π·p))/2` with
    /// `p = (t − warmup)/(total − warmup)` clamped to 1.
    pub fn at(&self, t: u64) -> f64 {
        if t < self.warmup {
            return self.lr * (t + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let p = ((t - self.warmup) as f64 / span as f64).min(1.0);
        self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + libm::cos(core::f64::consts::PI * p))
    }
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite() && self.lr <= 10.0) {
            return Err(Error::Config(format!("learning rate {} must be in (0, 10]", self.lr)));
        }
        if !(self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(Error::Config(format!("min_lr {} must be in [0, lr = {}]", self.min_lr, self.lr)));
        }
        Ok(())
    }
}

/// AdamW state: per-parameter first and second moments, keyed by parameter name.
pub struct AdamW<B: Backend> {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// Completed updates.
    pub step: u64,
    state: BTreeMap<String, (Tensor<B>, Tensor<B>)>,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Parameters updated.
    pub updated: usize,
}

impl<B: Backend> AdamW<B> {
    /// Fresh state.
    pub fn new(cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, step: 0, state: BTreeMap::new() })
    }

    /// Applies one update at learning rate `lr` to every parameter of `model` that has a
    /// gradient in `grads`. The gradients are first clipped to a global L2 norm of
    /// `cfg.grad_clip` (summed in parameter order, so the result is deterministic).
    /// A non-finite gradient norm is an error and leaves the model and state untouched.
    pub fn step<AB, M>(&mut self, model: &mut M, grads: &mut Gradients<B>, lr: f64) -> Result<StepReport>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + ?Sized,
    {
        // gather gradients in parameter order
        let mut gs: Vec<Option<Tensor<B>>> = Vec::new();
        model.visit_mut("", &mut |_, p| gs.push(grads.remove(p)));
        let mut sq = 0.0f64;
        for g in gs.iter().flatten() {
            sq += Tensor::<B>::from_prim(B::sum_squares(g.prim().clone())?).to_scalar()? as f64;
        }
        let norm = libm::sqrt(sq);
        if !norm.is_finite() {
            return Err(Error::NonFinite(format!("gradient norm is {norm}")));
        }
        let clip = if self.cfg.grad_clip > 0.0 && norm > self.cfg.grad_clip {
            (self.cfg.grad_clip / (norm + 1e-6)) as f32
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step;
        let cfg = self.cfg.clone();
        let with_decay = AdamWStep::new(lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, t).with_grad_scale(clip);
        let no_decay = AdamWStep::new(lr, cfg.beta1, cfg.beta2, cfg.eps, 0.0, t).with_grad_scale(clip);
        let mut err = None;
        let mut updated = 0;
        let mut i = 0;
        let state = &mut self.state;
        model.visit_mut("", &mut |name, p| {
            let g = gs[i].take();
            i += 1;
            let (Some(g), None) = (g, err.as_ref()) else {
                return;
            };
            let r = (|| -> Result<()> {
                // move the parameter out (an empty placeholder stands in) so that its buffer is
                // uniquely owned and the backend can update it in place
                let placeholder = Tensor::<AB>::from_inner(Tensor::<B>::zeros(&[0], &p.inner().device())?);
                let pi: Tensor<B> = core::mem::replace(p, placeholder).into_inner();
                let (m, v) = match state.remove(name) {
                    Some(mv) => mv,
                    None => (Tensor::zeros(pi.shape(), &pi.device())?, Tensor::zeros(pi.shape(), &pi.device())?),
                };
                let decays = cfg.decay == DecayFilter::All || pi.rank() >= 2;
                let h = if decays { &with_decay } else { &no_decay };
                let (np, nm, nv) = B::adamw_step(pi.into_prim(), g.into_prim(), m.into_prim(), v.into_prim(), h)?;
                *p = Tensor::from_inner(Tensor::from_prim(np)).require_grad();
                state.insert(String::from(name), (Tensor::from_prim(nm), Tensor::from_prim(nv)));
                updated += 1;
                Ok(())
            })();
            if let Err(e) = r {
                err = Some(e);
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(StepReport { grad_norm: norm, updated }),
        }
    }

    /// Moments by parameter name (for checkpoints).
    pub fn moments(&self) -> impl Iterator<Item = (&String, &(Tensor<B>, Tensor<B>))> {
        self.state.iter()
    }

    /// Restores moments and the step count (from a checkpoint).
    pub fn restore(&mut self, step: u64, moments: BTreeMap<String, (Tensor<B>, Tensor<B>)>) {
        self.step = step;
        self.state = moments;
    }
}
