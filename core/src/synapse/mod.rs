//! Synapses (seed 003, `synapse.md`): presynaptic release that depletes and recovers, shaping
//! attention, and postsynaptic Hebbian fast weights.
//!
//! **Presynaptic release.** Every attention layer keeps, for every `(batch, head, key)`, the
//! state of a presynaptic terminal (calcium, buffer, vesicle pools, priming, clamp, energy;
//! [`scalar`]). A query's `k` strongest causal keys are its edges; each edge releases vesicles
//! with a probability set by calcium (driven by the attention logit), priming and clamp, and
//! its output `e` biases the attention logit by `λ·log(ε + e/ema)`. Released vesicles deplete
//! the key's pool, so a key attended often becomes harder to attend — a frequency penalty —
//! until priming refills it. [`SynapseOps`] runs the release over all queries of a call in one
//! fused op ([`scan`] for the schedules: `seed` reproduces the seed exactly; `causal` carries
//! the pools along the query positions so depletion shapes the logits in training).
use crate::autodiff::{record, AdTensor, Autodiff};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::Tensor;
use alloc::vec;
use alloc::vec::Vec;

pub mod bank;
pub mod config;
pub mod post;
pub mod scalar;
pub mod scan;

pub use bank::Bank;
pub use config::{PresynMode, SynapticConfig};
pub use post::SynapticLinear;

type T<B> = <B as Backend>::Tensor;

/// Everything a presynaptic call needs besides tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct PresynSpec {
    /// The parameters (kinetics, pools, `attn_topk`).
    pub cfg: SynapticConfig,
    /// Schedule: causal (`true`) or the seed's single step (`false`).
    pub causal: bool,
    /// Stochastic release (training only), or `None` for the deterministic mean.
    pub stochastic: Option<scan::Stochastic>,
    /// Steps per recomputed chunk of the causal backward scan (0: `⌈√Tq⌉`).
    pub chunk: usize,
}

impl PresynSpec {
    /// A deterministic spec of `cfg` in `mode` (`Off` is not a presynaptic call).
    pub fn new(cfg: &SynapticConfig, mode: PresynMode) -> Result<Self> {
        cfg.validate()?;
        let causal = match mode {
            PresynMode::Causal => true,
            PresynMode::Seed => false,
            PresynMode::Off => return Err(Error::InvalidArgument("presynaptic release is off".into())),
        };
        Ok(Self { cfg: cfg.clone(), causal, stochastic: None, chunk: 0 })
    }

    /// The same spec with stochastic release drawn from `key` (the configuration's fraction
    /// and cap; none when the fraction is 0).
    pub fn with_noise(mut self, key: RngKey) -> Self {
        self.stochastic = (self.cfg.stochastic_train_frac > 0.0).then_some(scan::Stochastic {
            key,
            frac: self.cfg.stochastic_train_frac as f32,
            cap: self.cfg.stochastic_count_cap as f32,
        });
        self
    }

    /// State floats per key.
    pub fn width(&self) -> usize {
        scalar::state_width(self.cfg.endo_delay)
    }

    /// The row geometry for `tq` queries over `tk` keys.
    pub fn row(&self, tq: usize, tk: usize) -> scan::Row {
        let chunk = if self.chunk > 0 { self.chunk } else { (libm::sqrt(tq as f64) as usize).max(1) };
        scan::Row { tq, tk, topk: self.cfg.attn_topk, width: self.width(), causal: self.causal, chunk }
    }

    /// Checks `scores: [R, Tq, Tk]` and `state0: [R, Tk − Tq, W]`; returns `(R, Tq, Tk)`.
    pub fn check(&self, scores: &[usize], state0: &[usize]) -> Result<(usize, usize, usize)> {
        self.cfg.validate()?;
        let [r, tq, tk] = scores[..] else {
            return Err(Error::InvalidArgument(alloc::format!(
                "presyn: scores must be [rows, Tq, Tk], got {scores:?}"
            )));
        };
        if tk < tq {
            return Err(Error::InvalidArgument(alloc::format!("presyn: {tk} keys for {tq} queries (need Tk >= Tq)")));
        }
        if state0 != [r, tk - tq, self.width()] {
            return Err(Error::InvalidArgument(alloc::format!(
                "presyn: state of the cached keys must be [{r}, {}, {}], got {state0:?}",
                tk - tq,
                self.width()
            )));
        }
        Ok((r, tq, tk))
    }

    /// The starting state of every key of a row: the cached keys' `state0`, then the initial
    /// state for the `tq` new keys.
    pub fn start_state(&self, state0: &[f32], tq: usize) -> Vec<f32> {
        let mut s = vec![0f32; state0.len() + tq * self.width()];
        self.fill_start_state(state0, &mut s);
        s
    }

    /// [`PresynSpec::start_state`] into `out` (`[Tk·W]`).
    pub fn fill_start_state(&self, state0: &[f32], out: &mut [f32]) {
        let w = self.width();
        out[..state0.len()].copy_from_slice(state0);
        for key in out[state0.len()..].chunks_mut(w) {
            scalar::initial_state(&self.cfg, key);
        }
    }
}

/// Outputs of a presynaptic call: edge outputs `e: [R, Tq, Tk]` (dense, zero off the
/// edges), the edge mask `[R, Tq, Tk]` and the state of every key after the call
/// `[R, Tk, W]`.
pub type PresynOut<B> = (T<B>, T<B>, T<B>);

/// The synapse op family: presynaptic release over the queries of an attention call, forward
/// and backward. The defaults run [`scan`] on the host (a top-k and a sequential scan have no
/// useful composition of primitive ops); they are the oracle the backends' kernels are tested
/// against. `Autodiff<B>` forwards both to `B` and differentiates `e` with respect to the
/// scores (the mask and the state carry no gradient).
///
/// Shapes: `scores: [R, Tq, Tk]` (R = batch·heads; query `t` sees keys `0..=Tk − Tq + t`),
/// `state0: [R, Tk − Tq, W]` (the cached keys' state; `[R, 0, W]` without a cache).
pub trait SynapseOps<B: Backend> {
    /// Names of the ops of this family (the autodiff forwarding test checks each).
    const OPS: &'static [&'static str] = &["presyn_fwd", "presyn_bwd"];

    /// Presynaptic release of every query; returns `(e, mask, state)`.
    fn presyn_fwd(scores: T<B>, state0: T<B>, spec: &PresynSpec) -> Result<PresynOut<B>> {
        host_fwd::<B>(scores, state0, spec)
    }

    /// `∂L/∂scores` for the gradient `de` of the edge outputs.
    fn presyn_bwd(scores: T<B>, state0: T<B>, spec: &PresynSpec, de: T<B>) -> Result<T<B>> {
        host_bwd::<B>(scores, state0, spec, de)
    }

    /// [`SynapseOps::presyn_fwd`] that also returns what the backward would otherwise
    /// recompute (in causal mode, the state at the start of every chunk of the scan,
    /// `[R, ⌈Tq/chunk⌉·Tk·W]`). The default saves nothing.
    fn presyn_fwd_saving(scores: T<B>, state0: T<B>, spec: &PresynSpec) -> Result<(PresynOut<B>, Option<T<B>>)> {
        Ok((Self::presyn_fwd(scores, state0, spec)?, None))
    }

    /// [`SynapseOps::presyn_bwd`] given what [`SynapseOps::presyn_fwd_saving`] saved (the
    /// same gradient; the default ignores `saved`).
    fn presyn_bwd_saved(scores: T<B>, state0: T<B>, saved: Option<T<B>>, spec: &PresynSpec, de: T<B>) -> Result<T<B>> {
        let _ = saved;
        Self::presyn_bwd(scores, state0, spec, de)
    }
}

/// Runs the forward of every row of `scores` with `state0` on host slices (the CPU kernel
/// calls this per row in parallel; the default calls it in order). Returns
/// `(e, mask, state)` for the rows.
pub fn host_rows(
    spec: &PresynSpec,
    r: usize,
    tq: usize,
    tk: usize,
    scores: &[f32],
    state0: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let row = spec.row(tq, tk);
    let kin = scalar::Kinetics::<f32>::new(&spec.cfg);
    let w = row.width;
    let p = tk - tq;
    let mut e = vec![0f32; r * tq * tk];
    let mut mask = vec![0f32; r * tq * tk];
    let mut state = Vec::with_capacity(r * tk * w);
    for i in 0..r {
        let mut s = spec.start_state(&state0[i * p * w..(i + 1) * p * w], tq);
        scan::forward(
            &row,
            &kin,
            spec.stochastic.as_ref(),
            (i * tq) as u64,
            &scores[i * tq * tk..(i + 1) * tq * tk],
            &mut s,
            &mut e[i * tq * tk..(i + 1) * tq * tk],
            &mut mask[i * tq * tk..(i + 1) * tq * tk],
            None,
        );
        state.extend_from_slice(&s);
    }
    (e, mask, state)
}

/// The default forward: [`host_rows`] through host copies.
pub fn host_fwd<B: Backend>(scores: T<B>, state0: T<B>, spec: &PresynSpec) -> Result<PresynOut<B>> {
    let (r, tq, tk) = spec.check(B::shape(&scores), B::shape(&state0))?;
    let dev = B::device(&scores);
    let (sc, s0) = (B::to_f32(scores)?, B::to_f32(state0)?);
    let (e, mask, state) = host_rows(spec, r, tq, tk, &sc, &s0);
    Ok((
        B::from_f32(&e, &[r, tq, tk], &dev)?,
        B::from_f32(&mask, &[r, tq, tk], &dev)?,
        B::from_f32(&state, &[r, tk, spec.width()], &dev)?,
    ))
}

/// The default backward: recomputes the forward's snapshots, then runs [`scan::backward`]
/// per row on host copies.
pub fn host_bwd<B: Backend>(scores: T<B>, state0: T<B>, spec: &PresynSpec, de: T<B>) -> Result<T<B>> {
    let (r, tq, tk) = spec.check(B::shape(&scores), B::shape(&state0))?;
    if B::shape(&de) != [r, tq, tk] {
        return Err(Error::InvalidArgument(alloc::format!(
            "presyn_bwd: gradient {:?} does not match the scores [{r}, {tq}, {tk}]",
            B::shape(&de)
        )));
    }
    let dev = B::device(&scores);
    let (sc, s0, g) = (B::to_f32(scores)?, B::to_f32(state0)?, B::to_f32(de)?);
    let dscores = host_bwd_rows(spec, r, tq, tk, &sc, &s0, &g);
    B::from_f32(&dscores, &[r, tq, tk], &dev)
}

/// The backward of every row on host slices (the CPU kernel runs the per-row body in
/// parallel).
pub fn host_bwd_rows(
    spec: &PresynSpec,
    r: usize,
    tq: usize,
    tk: usize,
    scores: &[f32],
    state0: &[f32],
    de: &[f32],
) -> Vec<f32> {
    let mut out = vec![0f32; r * tq * tk];
    for i in 0..r {
        bwd_row(spec, i, tq, tk, scores, state0, None, de, &mut out[i * tq * tk..(i + 1) * tq * tk]);
    }
    out
}

/// Floats of the chunk-start states of one row that the causal backward reads (0 in seed
/// mode).
pub fn snapshot_len(spec: &PresynSpec, tq: usize, tk: usize) -> usize {
    let row = spec.row(tq, tk);
    if row.causal {
        tq.div_ceil(row.chunk) * tk * row.width
    } else {
        0
    }
}

/// The backward of row `i` into `dscores` (`[tq·tk]`, zero on entry), from the row's
/// chunk-start states saved by the forward (`saved`, [`snapshot_len`] floats), or recomputing
/// them when they are absent or do not fit.
#[allow(clippy::too_many_arguments)]
pub fn bwd_row(
    spec: &PresynSpec,
    i: usize,
    tq: usize,
    tk: usize,
    scores: &[f32],
    state0: &[f32],
    saved: Option<&[f32]>,
    de: &[f32],
    dscores: &mut [f32],
) {
    let row = spec.row(tq, tk);
    let kin = scalar::Kinetics::<f32>::new(&spec.cfg);
    let w = row.width;
    let p = tk - tq;
    let start = spec.start_state(&state0[i * p * w..(i + 1) * p * w], tq);
    let sc = &scores[i * tq * tk..(i + 1) * tq * tk];
    let row0 = (i * tq) as u64;
    let n = snapshot_len(spec, tq, tk);
    let recomputed;
    let snaps = match saved.filter(|s| s.len() == n) {
        Some(s) => s,
        None => {
            let mut snaps = vec![0f32; n];
            if row.causal {
                let (mut s, mut e, mut m) = (start.clone(), vec![0f32; tq * tk], vec![0f32; tq * tk]);
                let st = spec.stochastic.as_ref();
                scan::forward(&row, &kin, st, row0, sc, &mut s, &mut e, &mut m, Some(&mut snaps));
            }
            recomputed = snaps;
            &recomputed
        }
    };
    let g = &de[i * tq * tk..(i + 1) * tq * tk];
    scan::backward(&row, &kin, spec.stochastic.as_ref(), row0, sc, &start, snaps, g, dscores);
}

/// The seed's `release_canonical` step with explicit edges, as its golden fixture drives it:
/// `state` `[R·Tk·W]` (updated in place), `drive` and `idx` `[R·Tq·K]` (an edge is valid when
/// its drive is finite; keys may repeat). Every edge reads the state before the step; then
/// every key steps with the summed releases and drives. Returns the raw edge outputs `[R·Tq·K]`,
/// multiplied by the distance barrier `exp(−β·|t − j|/Tk)` when `barrier` is `Some(β)` (the
/// fixture's `apply_barrier`).
#[allow(clippy::too_many_arguments)]
pub fn canonical_step<F: num_traits::Float>(
    state: &mut [F],
    drive: &[F],
    idx: &[usize],
    (r, tq, tk, k): (usize, usize, usize, usize),
    kin: &scalar::Kinetics<F>,
    barrier: Option<F>,
) -> Vec<F> {
    let w = scalar::state_width(kin.delay);
    let mut out = vec![F::zero(); r * tq * k];
    for i in 0..r {
        let st = &mut state[i * tk * w..(i + 1) * tk * w];
        let mut a = vec![F::zero(); tk];
        let mut dsum = vec![F::zero(); tk];
        let mut acc = vec![false; tk];
        for t in 0..tq {
            for kk in 0..k {
                let n = (i * tq + t) * k + kk;
                let (d, j) = (drive[n], idx[n]);
                let valid = d.is_finite();
                let dv = if valid { d } else { F::zero() };
                let v = scalar::edge(&st[j * w..(j + 1) * w], dv, valid, scalar::Draw::Mean, kin);
                let dist = F::from(t.abs_diff(j)).unwrap() / F::from(tk).unwrap();
                out[n] = match barrier {
                    Some(b) => v.e * (-b * dist).exp(),
                    None => v.e,
                };
                a[j] = a[j] + v.rel;
                if valid {
                    dsum[j] = dsum[j] + d;
                    acc[j] = true;
                }
            }
        }
        for j in 0..tk {
            scalar::key_step(&mut st[j * w..(j + 1) * w], a[j], dsum[j], acc[j], kin);
        }
    }
    out
}

/// The seed's running normalisation of the edge outputs: `s = max(10⁻³, mean|e_raw|)` over all
/// edges, `ema ← 0.99·ema + 0.01·s`, then `e = e_raw/(ema + 10⁻⁶)` with the updated `ema`.
pub fn ema_normalise<F: num_traits::Float>(e_raw: &mut [F], ema: &mut F) {
    let n = F::from(e_raw.len().max(1)).unwrap();
    let mean = e_raw.iter().fold(F::zero(), |a, x| a + x.abs()) / n;
    let s = mean.max(F::from(1e-3).unwrap());
    *ema = F::from(0.99).unwrap() * *ema + F::from(0.01).unwrap() * s;
    let den = *ema + F::from(1e-6).unwrap();
    e_raw.iter_mut().for_each(|x| *x = *x / den);
}

/// Presynaptic release through the backend's fused op: `(e, mask, state)` (see
/// [`SynapseOps`]).
pub fn presyn<B: Backend + SynapseOps<B>>(
    scores: &Tensor<B>,
    state0: &Tensor<B>,
    spec: &PresynSpec,
) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    spec.check(scores.shape(), state0.shape())?;
    let (e, m, s) = B::presyn_fwd(scores.prim().clone(), state0.prim().clone(), spec)?;
    Ok((Tensor::from_prim(e), Tensor::from_prim(m), Tensor::from_prim(s)))
}

impl<B: Backend + SynapseOps<B>> SynapseOps<Autodiff<B>> for Autodiff<B> {
    fn presyn_fwd(scores: AdTensor<B>, state0: AdTensor<B>, spec: &PresynSpec) -> Result<PresynOut<Autodiff<B>>> {
        let ((e, mask, state), snaps) = B::presyn_fwd_saving(scores.primal.clone(), state0.primal.clone(), spec)?;
        let saved = (scores.primal.clone(), state0.primal.clone(), snaps, spec.clone());
        let e = record(e, &[&scores], move |g, _| {
            let (sc, s0, snaps, spec) = saved;
            Ok(vec![Some(B::presyn_bwd_saved(sc, s0, snaps, &spec, g)?)])
        });
        Ok((e, AdTensor::constant(mask), AdTensor::constant(state)))
    }

    /// Forwards to `B`'s kernel; the result is a constant (no second-order gradients).
    fn presyn_bwd(scores: AdTensor<B>, state0: AdTensor<B>, spec: &PresynSpec, de: AdTensor<B>) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::presyn_bwd(scores.primal, state0.primal, spec, de.primal)?))
    }
}
