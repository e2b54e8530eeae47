//! Optimisers and learning-rate schedules.
use crate::autodiff::{AutodiffBackend, Gradients};
use crate::backend::{AdamWStep, Backend};
use crate::error::{Error, Result};
use crate::nn::{Module, ParamId};
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
    /// Muon for the block matrices (off by default; when on, AdamW updates the rest).
    #[serde(default)]
    pub muon: MuonConfig,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decay: DecayFilter::Matrices,
            grad_clip: 1.0,
            muon: MuonConfig::default(),
        }
    }
}

/// Muon ("MomentUm Orthogonalized by Newton–Schulz", the nanochat recipe's optimiser for the
/// ≥2-D block matrices): for a matrix parameter `W: [r, c]` with gradient `G` (after the
/// global clip),
///
/// ```text
/// μ_t = μ₀ + (μ − μ₀)·min(1, t/T_μ)           momentum warm-up over the optimiser's steps
/// M ← μ_t M + (1 − μ_t) G                      (the state's `m`; `v` stays zero)
/// U = (1 − μ_t) G + μ_t M  (Nesterov)  or  U = M
/// O = NS₅(U / (‖U‖_F + 10⁻⁷))                  quintic Newton–Schulz, (a, b, c) =
///     X ← aX + (bA + cA²)X,  A = XXᵀ             (3.4445, −4.7750, 2.0315), on the wide side
/// W ← W(1 − η λ) − η √max(1, r/c) · O,   η = lr_muon · lr_t / lr_peak
/// ```
///
/// so Muon's rate follows the run's schedule in proportion. Which parameters: rank 2, and
/// the dotted path not starting with any of `exclude` (by default the token and position
/// tables and the output head, which AdamW keeps, as in the recipe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MuonConfig {
    /// Use Muon for the block matrices.
    pub enabled: bool,
    /// Peak rate of the orthogonalised update (scaled by the schedule like AdamW's).
    pub lr: f64,
    /// Final momentum μ.
    pub momentum: f64,
    /// Momentum at step 0 (μ₀).
    pub momentum_start: f64,
    /// Optimiser steps over which μ rises from μ₀ to μ (0: μ from the start).
    pub momentum_warmup: u64,
    /// Nesterov look-ahead.
    pub nesterov: bool,
    /// Newton–Schulz iterations.
    pub ns_steps: usize,
    /// Decoupled weight decay λ of the Muon matrices.
    pub weight_decay: f64,
    /// Path prefixes of rank-2 parameters that stay with AdamW.
    pub exclude: Vec<String>,
}

impl Default for MuonConfig {
    /// The nanochat recipe: lr 0.02, momentum 0.85 → 0.95 over 300 steps, Nesterov, 5
    /// iterations, no weight decay; off.
    fn default() -> Self {
        Self {
            enabled: false,
            lr: 0.02,
            momentum: 0.95,
            momentum_start: 0.85,
            momentum_warmup: 300,
            nesterov: true,
            ns_steps: 5,
            weight_decay: 0.0,
            exclude: ["wte", "wpe", "emb", "pos", "head"].iter().map(|s| String::from(*s)).collect(),
        }
    }
}

impl MuonConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.lr >= 0.0 && self.lr <= 10.0) {
            return bad(format!("muon lr {} must be in [0, 10]", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) || !(0.0..1.0).contains(&self.momentum_start) {
            return bad(format!("muon momenta ({}, {}) must lie in [0, 1)", self.momentum_start, self.momentum));
        }
        if self.ns_steps == 0 || self.ns_steps > 20 {
            return bad(format!("muon ns_steps {} must be in 1..=20", self.ns_steps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay < 1.0) {
            return bad(format!("muon weight decay {} must be in [0, 1)", self.weight_decay));
        }
        Ok(())
    }

    /// μ at 0-based optimiser step `t`.
    pub fn momentum_at(&self, t: u64) -> f64 {
        if self.momentum_warmup == 0 {
            return self.momentum;
        }
        let f = (t as f64 / self.momentum_warmup as f64).min(1.0);
        self.momentum_start + (self.momentum - self.momentum_start) * f
    }

    /// Whether the parameter at `path` with `shape` is Muon's.
    pub fn applies(&self, path: &str, shape: &[usize]) -> bool {
        self.enabled
            && shape.len() == 2
            && !self
                .exclude
                .iter()
                .any(|p| path == p || path.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('.')))
    }
}

/// `NS₅`: the quintic Newton–Schulz orthogonalisation of `g: [r, c]` (see [`MuonConfig`]),
/// run on the wide orientation (`r ≤ c`, transposing when needed) so that `A = XXᵀ` is the
/// smaller Gram matrix. Returns a matrix of `g`'s shape whose singular values are near 1.
pub fn newton_schulz<B: Backend>(g: &Tensor<B>, steps: usize) -> Result<Tensor<B>> {
    let (a, b, c) = (3.4445f32, -4.7750f32, 2.0315f32);
    let tall = g.shape()[0] > g.shape()[1];
    let mut x = if tall { g.transpose(0, 1)? } else { g.clone() };
    let norm = libm::sqrt(Tensor::<B>::from_prim(B::sum_squares(x.prim().clone())?).to_scalar()? as f64);
    x = x.mul_scalar((1.0 / (norm + 1e-7)) as f32)?;
    for _ in 0..steps {
        let am = x.matmul_t(&x, false, true)?;
        let bm = am.mul_scalar(b)?.add(&am.matmul(&am)?.mul_scalar(c)?)?;
        x = x.mul_scalar(a)?.add(&bm.matmul(&x)?)?;
    }
    if tall {
        x = x.transpose(0, 1)?;
    }
    Ok(x)
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
        self.muon.validate()
    }
}

/// Optimiser settings: AdamW and its learning-rate schedule. Saved in checkpoints (section
/// `optim`), so a reloaded optimiser continues exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSettings {
    /// AdamW hyper-parameters (betas, ε, weight decay and which parameters decay, clipping).
    pub adamw: AdamWConfig,
    /// Learning rate per step.
    pub schedule: Schedule,
}

impl OptimizerSettings {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        self.adamw.validate()?;
        self.schedule.validate()
    }
}

/// Learning-rate schedule: linear warmup to `lr`, then cosine decay to `min_lr` at `total`
/// (`total = 0`: constant `lr` after the warmup).
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
    /// `p = (t − warmup)/(total − warmup)` clamped to 1 (or `lr` when `total` is 0).
    pub fn at(&self, t: u64) -> f64 {
        if t < self.warmup {
            return self.lr * (t + 1) as f64 / self.warmup as f64;
        }
        if self.total == 0 {
            return self.lr;
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

/// The optimiser state of one parameter: AdamW's moments and the parameter's own step count
/// `t` (the number of updates it has received), which sets its bias correction.
#[derive(Debug, Clone)]
pub struct ParamState<B: Backend> {
    /// First moment `m` (the parameter's shape).
    pub m: Tensor<B>,
    /// Second moment `v` (the parameter's shape).
    pub v: Tensor<B>,
    /// Updates applied to this parameter so far.
    pub t: u64,
}

/// AdamW with its state keyed by [`ParamId`].
///
/// Each parameter carries its own step count, so a parameter born at step 5,000 gets the
/// full bias correction `1/(1 − β^t)` from its own first update. A step is a transaction:
/// every check (ids, gradient and moment shapes, a finite gradient norm) runs first, every
/// update is computed into new buffers next, and only then are the model and the state
/// replaced — an error at any point leaves both exactly as they were.
///
/// Rules for structural edits (the lifecycle code calls these; each validates before it
/// changes anything):
/// * clone → the copy gets a copy of the original's moments and step count ([`AdamW::clone_state`]);
/// * split → every child gets a copy of the parent's moments and step count; the parent's
///   entry goes unless the parent is one of the children ([`AdamW::split`]);
/// * merge → the child gets the weighted average of the parents' moments (weights normalised
///   to sum 1; a parent with no state counts as zeros) and the largest parent step count, and
///   the parents' entries go ([`AdamW::merge`]);
/// * cull → the entry is dropped ([`AdamW::cull`]);
/// * birth → no entry: the moments start at zero and the step count at 0 on the first update.
#[derive(Clone)]
pub struct AdamW<B: Backend> {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    steps: u64,
    state: BTreeMap<ParamId, ParamState<B>>,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Parameters updated.
    pub updated: usize,
}

/// One parameter's planned update (phase one of a step).
struct Planned<B: Backend> {
    index: usize,
    id: ParamId,
    grad: Tensor<B>,
    muon: bool,
}

impl<B: Backend> AdamW<B> {
    /// Fresh state.
    pub fn new(cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, steps: 0, state: BTreeMap::new() })
    }

    /// Optimiser steps completed.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update at learning rate `lr` to every parameter of `model` that has a
    /// gradient in `grads`. The gradients are first clipped to a global L2 norm of
    /// `cfg.grad_clip` (summed in parameter order, so the result is deterministic). An error
    /// (a parameter without an id or with a repeated one, a gradient or moment whose shape is
    /// not the parameter's, a non-finite gradient norm, a failing kernel) leaves the model and
    /// this state as they were; the gradients of `grads` are consumed either way.
    pub fn step<AB, M>(&mut self, model: &mut M, grads: &mut Gradients<B>, lr: f64) -> Result<StepReport>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + ?Sized,
    {
        self.step_scaled(model, grads, lr, 1.0)
    }

    /// [`AdamW::step`] with the schedule's fraction of its peak, `lr_frac = lr_t / lr_peak`,
    /// which sets Muon's rate (`muon.lr · lr_frac`) when Muon is on.
    pub fn step_scaled<AB, M>(
        &mut self,
        model: &mut M,
        grads: &mut Gradients<B>,
        lr: f64,
        lr_frac: f64,
    ) -> Result<StepReport>
    where
        AB: AutodiffBackend<Inner = B>,
        M: Module<AB> + ?Sized,
    {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::InvalidArgument(format!("learning rate {lr} must be finite and >= 0")));
        }
        if !(lr_frac.is_finite() && lr_frac >= 0.0) {
            return Err(Error::InvalidArgument(format!("learning-rate fraction {lr_frac} must be finite and >= 0")));
        }
        // phase one: checks, no mutation
        let mut planned: Vec<Planned<B>> = Vec::new();
        let mut values: Vec<Tensor<B>> = Vec::new();
        let mut seen = alloc::collections::BTreeSet::new();
        let mut err: Option<Error> = None;
        model.for_each_param(&mut |path, p| {
            let index = values.len();
            values.push(p.inner());
            if err.is_some() {
                return;
            }
            if p.id().is_unassigned() || !seen.insert(p.id()) {
                err = Some(Error::InvalidArgument(format!("parameter {path} has no id or shares {}", p.id())));
                return;
            }
            let Some(g) = grads.remove(p.value()) else { return };
            if g.shape() != p.shape() {
                err = Some(Error::InvalidArgument(format!(
                    "gradient of {path} has shape {:?}, the parameter {:?}",
                    g.shape(),
                    p.shape()
                )));
                return;
            }
            if let Some(st) = self.state.get(&p.id()) {
                if st.m.shape() != p.shape() || st.v.shape() != p.shape() {
                    err = Some(Error::InvalidArgument(format!(
                        "optimizer moments of {path} ({}) have shapes {:?} / {:?}, the parameter {:?}",
                        p.id(),
                        st.m.shape(),
                        st.v.shape(),
                        p.shape()
                    )));
                    return;
                }
                if st.t == u64::MAX {
                    err = Some(Error::InvalidArgument(format!("step count of {path} overflows")));
                    return;
                }
            }
            let muon = self.cfg.muon.applies(path, p.shape());
            planned.push(Planned { index, id: p.id(), grad: g, muon });
        });
        if let Some(e) = err {
            return Err(e);
        }
        let mut sq = 0.0f64;
        for pl in &planned {
            sq += Tensor::<B>::from_prim(B::sum_squares(pl.grad.prim().clone())?).to_scalar()? as f64;
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
        // phase two: compute every update into new buffers (the old values stay intact)
        let cfg = &self.cfg;
        let mut updates: Vec<(usize, ParamId, Tensor<B>, ParamState<B>)> = Vec::with_capacity(planned.len());
        for pl in planned {
            let pv = &values[pl.index];
            let (m, v, t) = match self.state.get(&pl.id) {
                Some(st) => (st.m.clone(), st.v.clone(), st.t + 1),
                None => (Tensor::zeros(pv.shape(), &pv.device())?, Tensor::zeros(pv.shape(), &pv.device())?, 1),
            };
            if pl.muon {
                let mu = &cfg.muon;
                let k = mu.momentum_at(self.steps) as f32;
                let g = pl.grad.mul_scalar(clip)?;
                let m = m.mul_scalar(k)?.add(&g.mul_scalar(1.0 - k)?)?;
                let u = if mu.nesterov { g.mul_scalar(1.0 - k)?.add(&m.mul_scalar(k)?)? } else { m.clone() };
                let o = newton_schulz(&u, mu.ns_steps)?;
                let (r, c) = (pv.shape()[0] as f64, pv.shape()[1] as f64);
                let eta = mu.lr * lr_frac;
                let step = o.mul_scalar((eta * libm::sqrt((r / c).max(1.0))) as f32)?;
                let np = pv.mul_scalar((1.0 - eta * mu.weight_decay) as f32)?.sub(&step)?;
                updates.push((pl.index, pl.id, np, ParamState { m, v, t }));
                continue;
            }
            let wd = if cfg.decay == DecayFilter::All || pv.rank() >= 2 { cfg.weight_decay } else { 0.0 };
            let h = AdamWStep::new(lr, cfg.beta1, cfg.beta2, cfg.eps, wd, t).with_grad_scale(clip);
            let (np, nm, nv) = B::adamw_step(pv.prim().clone(), pl.grad.into_prim(), m.into_prim(), v.into_prim(), &h)?;
            let st = ParamState { m: Tensor::from_prim(nm), v: Tensor::from_prim(nv), t };
            updates.push((pl.index, pl.id, Tensor::from_prim(np), st));
        }
        drop(values);
        // phase three: commit (nothing below can fail)
        let updated = updates.len();
        let mut it = updates.into_iter().peekable();
        let mut index = 0usize;
        model.for_each_param_mut(&mut |_, p| {
            if it.peek().is_some_and(|u| u.0 == index) {
                let (_, id, np, st) = it.next().expect("peeked");
                p.set(Tensor::from_inner(np).require_grad());
                self.state.insert(id, st);
            }
            index += 1;
        });
        self.steps += 1;
        Ok(StepReport { grad_norm: norm, updated })
    }

    /// The state of parameter `id`, if it has been updated.
    pub fn state(&self, id: ParamId) -> Option<&ParamState<B>> {
        self.state.get(&id)
    }

    /// Every parameter's state, by id.
    pub fn states(&self) -> impl Iterator<Item = (&ParamId, &ParamState<B>)> {
        self.state.iter()
    }

    /// Restores the step count and the per-parameter states (from a checkpoint). Shapes are
    /// checked against the parameters at every step.
    pub fn restore(&mut self, steps: u64, states: BTreeMap<ParamId, ParamState<B>>) {
        self.steps = steps;
        self.state = states;
    }

    /// Drops the state of every parameter `keep` says no to (parameters that left the model).
    pub fn retain(&mut self, mut keep: impl FnMut(ParamId) -> bool) {
        self.state.retain(|id, _| keep(*id));
    }

    /// Clone rule: `to` gets a copy of `from`'s state (nothing when `from` has none).
    pub fn clone_state(&mut self, from: ParamId, to: ParamId) -> Result<()> {
        if from == to {
            return Err(Error::InvalidArgument(format!("cannot clone the state of {from} onto itself")));
        }
        match self.state.get(&from).cloned() {
            Some(st) => {
                self.state.insert(to, st);
            }
            None => {
                self.state.remove(&to);
            }
        }
        Ok(())
    }

    /// Split rule: every child gets a copy of `parent`'s state; the parent's entry is removed
    /// unless the parent is among the children.
    pub fn split(&mut self, parent: ParamId, children: &[ParamId]) -> Result<()> {
        let distinct: alloc::collections::BTreeSet<_> = children.iter().collect();
        if children.is_empty() || distinct.len() != children.len() {
            return Err(Error::InvalidArgument(format!("split of {parent} needs distinct children, got {children:?}")));
        }
        let st = self.state.get(&parent).cloned();
        if !children.contains(&parent) {
            self.state.remove(&parent);
        }
        for &c in children {
            match &st {
                Some(s) => {
                    self.state.insert(c, s.clone());
                }
                None => {
                    self.state.remove(&c);
                }
            }
        }
        Ok(())
    }

    /// Merge rule: `child` gets `Σ wᵢ·mᵢ / Σ wᵢ` and `Σ wᵢ·vᵢ / Σ wᵢ` over `(parent, wᵢ)` (a
    /// parent without state counts as zeros) and the largest parent step count; the parents'
    /// entries are removed. Weights must be finite, non-negative and not all zero; the parents'
    /// moments must share one shape.
    pub fn merge(&mut self, parents: &[(ParamId, f64)], child: ParamId) -> Result<()> {
        let total: f64 = parents.iter().map(|p| p.1).sum();
        if parents.is_empty() || parents.iter().any(|p| !(p.1.is_finite() && p.1 >= 0.0)) || total <= 0.0 {
            return Err(Error::InvalidArgument(format!("merge weights {parents:?} must be >= 0 with a positive sum")));
        }
        let with: Vec<(&ParamState<B>, f64)> =
            parents.iter().filter_map(|(id, w)| self.state.get(id).map(|s| (s, *w / total))).collect();
        let merged = match with.first() {
            None => None,
            Some((first, _)) => {
                let shape = first.m.shape().to_vec();
                if with.iter().any(|(s, _)| s.m.shape() != shape.as_slice() || s.v.shape() != shape.as_slice()) {
                    return Err(Error::InvalidArgument("merged parameters' moments differ in shape".into()));
                }
                let dev = first.m.device();
                let (mut m, mut v) = (Tensor::<B>::zeros(&shape, &dev)?, Tensor::<B>::zeros(&shape, &dev)?);
                let mut t = 0;
                for (s, w) in &with {
                    m = m.add(&s.m.mul_scalar(*w as f32)?)?;
                    v = v.add(&s.v.mul_scalar(*w as f32)?)?;
                    t = t.max(s.t);
                }
                Some(ParamState { m, v, t })
            }
        };
        for (id, _) in parents {
            self.state.remove(id);
        }
        match merged {
            Some(st) => {
                self.state.insert(child, st);
            }
            None => {
                self.state.remove(&child);
            }
        }
        Ok(())
    }

    /// Cull rule: the state of `id` is dropped.
    pub fn cull(&mut self, id: ParamId) {
        self.state.remove(&id);
    }
}
