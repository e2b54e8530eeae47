//! Lifecycle: components of a model that are born, split, merge and die while it trains.
//!
//! This module holds what every structural mechanism shares: the lineage log (one
//! [`LineageEvent`] per edit, written to checkpoints as the `lifecycle` section and to
//! `lineage.jsonl` by the runtime). Structural edits run through
//! [`Trainer::edit`](crate::train::Trainer::edit), which makes each one a transaction over
//! the model, the optimiser state and this log, and moves optimiser moments by the rules of
//! [`AdamW`](crate::optim::AdamW).
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// What a structural edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EditKind {
    /// A component was copied (function-preserving clone).
    Clone,
    /// A component became several children.
    Split,
    /// Several components became one.
    Merge,
    /// A component was removed.
    Cull,
    /// A new component was created.
    Birth,
}

/// One entry of the lineage log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEvent {
    /// Optimiser steps completed when the edit happened.
    pub step: u64,
    /// What happened.
    pub kind: EditKind,
    /// Ids of the components (or parameters) before the edit.
    pub parents: Vec<u64>,
    /// Ids after the edit.
    pub children: Vec<u64>,
    /// Why (a threshold crossed, a user request, …).
    pub reason: String,
    /// Health (or energy) of the components involved, as `(id, value)`.
    pub health: Vec<(u64, f64)>,
}

/// The lifecycle state saved with a checkpoint (section `lifecycle`, version 1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRecord {
    /// Every structural edit so far, in order.
    pub lineage: Vec<LineageEvent>,
}

impl LifecycleRecord {
    /// Section name in checkpoints.
    pub const SECTION: &'static str = "lifecycle";
    /// Section version.
    pub const VERSION: u32 = 1;
}
