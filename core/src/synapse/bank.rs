//! A free-standing row of presynaptic terminals, for programs that want the release dynamics
//! without a model around them (the C ABI's presynaptic bank, simulations, tests).
//!
//! A bank holds one terminal per key (`[keys, W]` state, [`super::scalar`]). Each
//! [`Bank::step`] is one query: its drive to every key (an attention logit, a spike strength);
//! the `attn_topk` strongest finite drives are its edges, each releases vesicles and returns
//! an output `e`, then every terminal takes one step — the causal schedule of
//! [`super::scan`] for a single query.
use super::scalar::{self, initial_state, Kinetics};
use super::scan::{self, Row};
use super::SynapticConfig;
use crate::error::{Error, Result};
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

/// Largest bank.
pub const MAX_KEYS: usize = 1 << 20;

/// A row of presynaptic terminals (see the module docs).
#[derive(Debug, Clone)]
pub struct Bank {
    cfg: SynapticConfig,
    kin: Kinetics<f32>,
    keys: usize,
    state: Vec<f32>,
}

impl Bank {
    /// `keys` terminals at the initial state of `cfg`.
    pub fn new(cfg: SynapticConfig, keys: usize) -> Result<Self> {
        cfg.validate()?;
        if keys == 0 || keys > MAX_KEYS {
            return Err(Error::Config(format!("a presynaptic bank needs 1..={MAX_KEYS} keys, got {keys}")));
        }
        let w = scalar::state_width(cfg.endo_delay);
        let mut state = vec![0f32; keys * w];
        for k in state.chunks_mut(w) {
            initial_state(&cfg, k);
        }
        Ok(Self { kin: Kinetics::new(&cfg), cfg, keys, state })
    }

    /// Terminals.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// State floats per terminal.
    pub fn width(&self) -> usize {
        scalar::state_width(self.cfg.endo_delay)
    }

    /// Its configuration.
    pub fn config(&self) -> &SynapticConfig {
        &self.cfg
    }

    /// The state `[keys, W]`, terminal-major (`C, BUF, RRP, RES, PR, CL, E, DELAY…`).
    pub fn state(&self) -> &[f32] {
        &self.state
    }

    /// One query with drive `drive[j]` to every terminal (non-finite: not an edge); returns
    /// the edge output of every terminal (0 off the edges), then steps every terminal.
    pub fn step(&mut self, drive: &[f32]) -> Result<Vec<f32>> {
        if drive.len() != self.keys {
            return Err(Error::InvalidArgument(format!(
                "drive has {} values for {} terminals",
                drive.len(),
                self.keys
            )));
        }
        let row = Row { tq: 1, tk: self.keys, topk: self.cfg.attn_topk, width: self.width(), causal: true, chunk: 1 };
        let (mut e, mut mask) = (vec![0f32; self.keys], vec![0f32; self.keys]);
        scan::forward(&row, &self.kin, None, 0, drive, &mut self.state, &mut e, &mut mask, None);
        Ok(e)
    }

    /// Replaces the state (`[keys, W]`): every value finite and within its pool's bounds
    /// (`C ≥ 0`, `BUF, PR, CL ∈ [0, 1]`, `RRP ∈ [0, 30]`, `RES ≥ 0`, `E ∈ [0, energy_max]`,
    /// delay slots ≥ 0). Nothing changes on an error.
    pub fn set_state(&mut self, s: &[f32]) -> Result<()> {
        use scalar::idx::*;
        let w = self.width();
        if s.len() != self.keys * w {
            return Err(Error::InvalidArgument(format!(
                "state has {} values, the bank needs {} ({} terminals × {w})",
                s.len(),
                self.keys * w,
                self.keys
            )));
        }
        let emax = self.cfg.energy_max as f32;
        for (j, k) in s.chunks(w).enumerate() {
            let bounds = [
                (C, 0.0, f32::MAX),
                (BUF, 0.0, 1.0),
                (RRP, 0.0, super::config::RRP_MAX as f32),
                (RES, 0.0, f32::MAX),
                (PR, 0.0, 1.0),
                (CL, 0.0, 1.0),
                (E, 0.0, emax),
            ];
            for (f, lo, hi) in bounds.into_iter().chain((DELAY..w).map(|f| (f, 0.0, f32::MAX))) {
                if !(k[f].is_finite() && k[f] >= lo && k[f] <= hi) {
                    return Err(Error::InvalidArgument(format!(
                        "state of terminal {j}, field {f}: {} is outside [{lo}, {hi}]",
                        k[f]
                    )));
                }
            }
        }
        self.state.copy_from_slice(s);
        Ok(())
    }
}
