//! [`SynapticConfig`]: every live parameter of the presynaptic and postsynaptic mechanisms,
//! with the seed's defaults (`synapse.md` §7). Fields the seed carries but never reads on its
//! live path (`tau_prime`, `tau_rrp`, `alpha_refill`, `structural_*`, `init_amp`, …) do not
//! exist here, and naming one is an error (`deny_unknown_fields`).
use crate::error::{Error, Result};
use alloc::format;
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// Which presynaptic dynamics an attention layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PresynMode {
    /// No presynaptic bias: plain causal attention.
    Off,
    /// The seed's live step exactly (`release_canonical`): one state step per forward call,
    /// every query reading the state as it was before the call. Without a KV cache the state is
    /// fresh for every forward, so depletion never shapes the logits in training (§9.1).
    Seed,
    /// The pool state is carried along the query positions: query `t` reads the state left by
    /// queries `< t`, then advances every key by one step (the seed's decode dynamics, run
    /// during training), differentiable through the drives of earlier queries.
    #[default]
    Causal,
}

/// Presynaptic and postsynaptic parameters. Units: time constants in query steps (one step =
/// one query position, or one decode step), pools in vesicles, calcium and energy in arbitrary
/// normalised units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynapticConfig {
    // ---- presynaptic: release ------------------------------------------------------------
    /// Edges per query: the `k` strongest causal keys of each query get a presynaptic bias
    /// (the active zones a spike reaches).
    pub attn_topk: usize,
    /// Calcium decay time constant τ_c (steps): residual calcium `C ← e^{-1/τ_c}·C + …`;
    /// longer means more facilitation from recent use.
    pub tau_c: f64,
    /// Calcium-buffer time constant τ_buf (steps) of the buffer occupancy `BUF`.
    pub tau_buf: f64,
    /// Calcium influx per unit of softplus(drive): how strongly a query's attention logit
    /// (the "spike") opens voltage-gated calcium channels at the key.
    pub alpha_ca: f64,
    /// Buffer binding rate α_on (per step): calcium captured by free buffer.
    pub alpha_buf_on: f64,
    /// Buffer unbinding rate α_off (per step): calcium returned by occupied buffer.
    pub alpha_buf_off: f64,
    /// Dissociation constant K_f of the fast synaptotagmin sensor (weight 0.7).
    pub syt_fast_kd: f64,
    /// Dissociation constant K_s of the slow synaptotagmin sensor (weight 0.3).
    pub syt_slow_kd: f64,
    /// Gain of the Doc2 (asynchronous, high-affinity) sensor `σ(4(c − 0.12))`.
    pub doc2_gain: f64,
    /// Extra complexin clamp bias added to `CL` in the release probability (raises the bar).
    pub complexin_bias: f64,
    /// Peak quantal amplitude q_max (energy-gated: `q = σ(q_β(E − ½))·q_max`).
    pub qmax: f64,
    /// Slope q_β of the energy gate of the quantal amplitude.
    pub q_beta: f64,
    // ---- presynaptic: pools and recovery -------------------------------------------------
    /// Fraction of `min(RES, 1)` vesicles primed from the reserve into the readily-releasable
    /// pool per step.
    pub prime_rate: f64,
    /// SNARE unpriming per released vesicle (`PR ← PR(1 − u·A) + …`).
    pub unprime_per_release: f64,
    /// NSF-driven SNARE re-priming rate ν (per step) towards 1.
    pub nsf_recover: f64,
    /// Fraction of released vesicles recycled into the reserve (after `endo_delay` steps).
    pub rec_rate: f64,
    /// Endocytosis delay (steps) before recycled vesicles reach the reserve (0..=8).
    pub endo_delay: usize,
    /// Readily-releasable pool of a new key (vesicles; at most 30).
    pub init_rrp: f64,
    /// Reserve pool of a new key (vesicles).
    pub init_reserve: f64,
    /// SNARE priming of a new key, in [0, 1].
    pub init_snare: f64,
    /// Complexin clamp of a new key, in [0, 1].
    pub init_clamp: f64,
    /// Energy (ATP) of a new key, in [0, energy_max].
    pub init_energy: f64,
    /// Energy refill rate φ towards `energy_max` (per step).
    pub energy_fill: f64,
    /// Energy spent per released vesicle υ.
    pub energy_use: f64,
    /// Energy ceiling.
    pub energy_max: f64,
    // ---- presynaptic: attention bias -----------------------------------------------------
    /// Scale λ of the logit bias `λ·log(ε + e)` of a top-k edge.
    pub lambda_loge: f64,
    /// Septin barrier β_s: logits lose `β_s·|i − j|/T_k` with distance.
    pub barrier_strength: f64,
    /// ε inside the log of the bias.
    pub epsilon: f64,
    /// Clamp of the bias to ±this value (0 disables the clamp).
    pub loge_bias_clamp: f64,
    /// Fraction of query rows whose release is drawn stochastically in training (approximate
    /// binomial of the pool, reparameterised so that it stays differentiable).
    pub stochastic_train_frac: f64,
    /// Largest vesicle count of a stochastic draw.
    pub stochastic_count_cap: usize,
    // ---- postsynaptic ----------------------------------------------------------------------
    /// Hebbian fast weights and eligibility traces in the MLP (off: plain linear layers).
    pub enable_hebbian: bool,
    /// Rank R of the eligibility traces and of the low-rank modulation `(y·U)·V`.
    pub rank_eligibility: usize,
    /// Gate of the fast weights `g = [calcium·energy]₀¹` (the seed's constant 0.5·0.8).
    pub fast_gate: f64,
    /// Decay δ of the eligibility traces per update.
    pub post_trace_decay: f64,
    /// Decay of the fast weights per Hebbian write.
    pub post_fast_decay: f64,
    /// Learning rate of the fast weights' Hebbian write.
    pub post_fast_lr: f64,
    /// Learning rate of the consolidated (slow Hebbian) gain.
    pub post_slow_lr: f64,
    /// Ceiling of the fast weights' Frobenius norm: after each write `W_fast` is scaled back
    /// to at most this norm. The seed's default writes are unbounded, and its Hebbian loop
    /// (larger outputs → larger traces → larger fast weights and gains) runs away to infinity
    /// within a few hundred steps at a learning rate of 3e-3 (the synaptic GPT on the recall
    /// task); the seed has this bound only in its opt-in normalised mode.
    pub fast_weight_max_norm: f64,
    /// Bound of the fast and consolidated gains `f, s` (each kept in `[−b, b]`, so the gain
    /// `1 + f + s` stays positive for `b < ½`); the seed's gains are unbounded.
    pub post_gain_bound: f64,
    /// CaMKII activation rate κ when postsynaptic calcium exceeds `camkii_thr`.
    pub camkii_up: f64,
    /// PP1 persistence per update (`P ← pp1_tau·P + (1 − pp1_tau)·[ca < pp1_thr]`).
    pub pp1_tau: f64,
    /// Calcium threshold of CaMKII activation (LTP).
    pub camkii_thr: f64,
    /// Calcium threshold of PP1 activation (LTD).
    pub pp1_thr: f64,
    /// BDNF persistence per update.
    pub bdnf_tau: f64,
    /// BDNF scaling of consolidation (`1 + bdnf_scale·BDNF`).
    pub bdnf_scale: f64,
    /// BDNF ceiling.
    pub bdnf_max: f64,
}

impl Default for SynapticConfig {
    fn default() -> Self {
        Self {
            attn_topk: 32,
            tau_c: 6.0,
            tau_buf: 4.0,
            alpha_ca: 0.55,
            alpha_buf_on: 0.1,
            alpha_buf_off: 0.1,
            syt_fast_kd: 0.4,
            syt_slow_kd: 1.0,
            doc2_gain: 0.08,
            complexin_bias: 0.0,
            qmax: 2.0,
            q_beta: 1.0,
            prime_rate: 0.075,
            unprime_per_release: 0.05,
            nsf_recover: 0.08,
            rec_rate: 0.06,
            endo_delay: 3,
            init_rrp: 6.0,
            init_reserve: 18.0,
            init_snare: 0.7,
            init_clamp: 0.6,
            init_energy: 0.85,
            energy_fill: 0.02,
            energy_use: 0.02,
            energy_max: 1.0,
            lambda_loge: 1.0,
            barrier_strength: 0.1,
            epsilon: 1e-6,
            loge_bias_clamp: 10.0,
            stochastic_train_frac: 0.12,
            stochastic_count_cap: 8,
            enable_hebbian: true,
            rank_eligibility: 8,
            fast_gate: 0.4,
            post_trace_decay: 0.96,
            post_fast_decay: 0.95,
            post_fast_lr: 1.5e-3,
            post_slow_lr: 5e-4,
            fast_weight_max_norm: 1.0,
            post_gain_bound: 0.45,
            camkii_up: 0.05,
            pp1_tau: 0.985,
            camkii_thr: 1.0,
            pp1_thr: 0.7,
            bdnf_tau: 0.985,
            bdnf_scale: 1.0,
            bdnf_max: 10.0,
        }
    }
}

/// Largest endocytosis delay (the state carries one slot per step of delay).
pub const MAX_ENDO_DELAY: usize = 8;

/// Ceiling of the readily-releasable pool (hard-coded in the seed).
pub const RRP_MAX: f64 = 30.0;

impl SynapticConfig {
    /// Rejects out-of-range values, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let pos = |name: &str, v: f64| -> Result<()> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!("synapses.{name} {v} must be finite and > 0")))
            }
        };
        let unit = |name: &str, v: f64| -> Result<()> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config(format!("synapses.{name} {v} must be in [0, 1]")))
            }
        };
        let nonneg = |name: &str, v: f64| -> Result<()> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!("synapses.{name} {v} must be finite and >= 0")))
            }
        };
        if self.attn_topk == 0 || self.attn_topk > 1024 {
            return bad(format!("synapses.attn_topk {} must be in 1..=1024", self.attn_topk));
        }
        if self.endo_delay > MAX_ENDO_DELAY {
            return bad(format!("synapses.endo_delay {} must be in 0..={MAX_ENDO_DELAY}", self.endo_delay));
        }
        if self.rank_eligibility == 0 || self.rank_eligibility > 256 {
            return bad(format!("synapses.rank_eligibility {} must be in 1..=256", self.rank_eligibility));
        }
        if self.stochastic_count_cap > 1024 {
            return bad(format!("synapses.stochastic_count_cap {} must be in 0..=1024", self.stochastic_count_cap));
        }
        for (n, v) in [("tau_c", self.tau_c), ("tau_buf", self.tau_buf), ("syt_fast_kd", self.syt_fast_kd)] {
            pos(n, v)?;
        }
        for (n, v) in [("syt_slow_kd", self.syt_slow_kd), ("qmax", self.qmax), ("energy_max", self.energy_max)] {
            pos(n, v)?;
        }
        pos("epsilon", self.epsilon)?;
        pos("fast_weight_max_norm", self.fast_weight_max_norm)?;
        for (n, v) in [
            ("alpha_buf_on", self.alpha_buf_on),
            ("alpha_buf_off", self.alpha_buf_off),
            ("prime_rate", self.prime_rate),
            ("unprime_per_release", self.unprime_per_release),
            ("nsf_recover", self.nsf_recover),
            ("rec_rate", self.rec_rate),
            ("init_snare", self.init_snare),
            ("init_clamp", self.init_clamp),
            ("energy_fill", self.energy_fill),
            ("stochastic_train_frac", self.stochastic_train_frac),
            ("fast_gate", self.fast_gate),
            ("post_trace_decay", self.post_trace_decay),
            ("post_fast_decay", self.post_fast_decay),
            ("camkii_up", self.camkii_up),
            ("pp1_tau", self.pp1_tau),
            ("bdnf_tau", self.bdnf_tau),
        ] {
            unit(n, v)?;
        }
        for (n, v) in [
            ("alpha_ca", self.alpha_ca),
            ("doc2_gain", self.doc2_gain),
            ("complexin_bias", self.complexin_bias),
            ("q_beta", self.q_beta),
            ("init_reserve", self.init_reserve),
            ("energy_use", self.energy_use),
            ("lambda_loge", self.lambda_loge),
            ("barrier_strength", self.barrier_strength),
            ("loge_bias_clamp", self.loge_bias_clamp),
            ("post_fast_lr", self.post_fast_lr),
            ("post_gain_bound", self.post_gain_bound),
            ("post_slow_lr", self.post_slow_lr),
            ("camkii_thr", self.camkii_thr),
            ("pp1_thr", self.pp1_thr),
            ("bdnf_scale", self.bdnf_scale),
            ("bdnf_max", self.bdnf_max),
        ] {
            nonneg(n, v)?;
        }
        if !(0.0..=RRP_MAX).contains(&self.init_rrp) {
            return bad(format!("synapses.init_rrp {} must be in [0, {RRP_MAX}]", self.init_rrp));
        }
        if !(0.0..=self.energy_max).contains(&self.init_energy) {
            return bad(format!("synapses.init_energy {} must be in [0, energy_max]", self.init_energy));
        }
        Ok(())
    }
}
