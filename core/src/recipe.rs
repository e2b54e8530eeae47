//! Training recipes: the settings shared by every model — steps, batches, schedule,
//! optimiser, evaluation and checkpoint cadence, and where the training text comes from.
//! Plain data (serde) below the models, so that each model's presets live beside the model
//! and the trainer above both reads them.
use crate::error::{Error, Result};
use crate::optim::{AdamWConfig, OptimizerSettings, Schedule};
use alloc::format;
use alloc::string::String;
use serde::{Deserialize, Serialize};

/// Where the training text comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A UTF-8 text file; `null` means the built-in corpus named by `corpus`.
    pub path: Option<String>,
    /// Built-in corpus used when `path` is `null`.
    #[serde(default)]
    pub corpus: Corpus,
    /// Size of the built-in corpus: bytes of `synthetic`, characters of `seed-phrases`,
    /// repetitions of the 251-character period of `seed-sentences`.
    pub corpus_bytes: usize,
    /// Seed of the built-in corpus.
    pub corpus_seed: u64,
    /// Fraction of the text held out for validation (the tail).
    pub val_fraction: f64,
    /// Tokenizer: UTF-8 bytes, or the sorted set of the text's characters.
    #[serde(default)]
    pub tokenizer: TokenizerKind,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            corpus: Corpus::Synthetic,
            corpus_bytes: 2 << 20,
            corpus_seed: 1,
            val_fraction: 0.1,
            tokenizer: TokenizerKind::Bytes,
        }
    }
}

/// Built-in corpora.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Corpus {
    /// English-like paragraphs from a seeded grammar.
    #[default]
    Synthetic,
    /// The CellToken seed's five sentences, repeated.
    SeedSentences,
    /// The Cellular Transformer seed's nine phrases drawn at random.
    SeedPhrases,
}

/// Tokenizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// UTF-8 bytes, vocabulary 256.
    #[default]
    Bytes,
    /// The sorted set of the text's characters (the seed scripts' vocabulary).
    Chars,
}

/// How training batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SamplingKind {
    /// Window starts drawn uniformly with replacement.
    #[default]
    Random,
    /// Every window once per epoch, in a fresh random order each epoch.
    Epochs,
}

/// Training settings shared by every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Planned optimiser steps (the length of the learning-rate schedule).
    pub steps: u64,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Tokens per sequence (at most the model's context length).
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup: u64,
    /// AdamW settings (betas, eps, weight decay, which parameters decay, gradient clipping).
    pub optim: AdamWConfig,
    /// Validation every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Validation batches per evaluation.
    pub eval_batches: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Seed of initialisation, batch sampling and dropout.
    pub seed: u64,
    /// How batches are drawn.
    #[serde(default)]
    pub sampling: SamplingKind,
    /// Training text.
    pub data: DataConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 4,
            seq_len: 256,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 50,
            optim: AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() },
            eval_every: 100,
            eval_batches: 8,
            checkpoint_every: 200,
            seed: 1234,
            sampling: SamplingKind::Random,
            data: DataConfig::default(),
        }
    }
}

impl TrainConfig {
    /// The optimiser settings of this run.
    pub fn optimizer(&self) -> OptimizerSettings {
        OptimizerSettings { adamw: self.optim.clone(), schedule: self.schedule() }
    }

    /// The learning-rate schedule (a warmup longer than the run is cut to the run).
    pub fn schedule(&self) -> Schedule {
        Schedule { lr: self.lr, min_lr: self.min_lr, warmup: self.warmup.min(self.steps), total: self.steps }
    }

    /// Rejects out-of-range values with a message naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 || self.steps > 1_000_000_000 {
            return bad(format!("train.steps {} must be in 1..=1e9", self.steps));
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return bad(format!("train.batch_size {} must be in 1..=65536", self.batch_size));
        }
        if self.seq_len == 0 || self.seq_len > 1 << 20 {
            return bad(format!("train.seq_len {} must be in 1..=1048576", self.seq_len));
        }
        self.schedule().validate()?;
        self.optim.validate()?;
        if self.eval_batches == 0 || self.eval_batches > 100_000 {
            return bad(format!("train.eval_batches {} must be in 1..=100000", self.eval_batches));
        }
        let vf = self.data.val_fraction;
        if !(vf > 0.0 && vf <= 0.5) {
            return bad(format!("train.data.val_fraction {vf} must be in (0, 0.5]"));
        }
        let size_ok = match self.data.corpus {
            Corpus::SeedSentences => (1..=100_000).contains(&self.data.corpus_bytes),
            _ => (1024..=1 << 30).contains(&self.data.corpus_bytes),
        };
        if self.data.path.is_none() && !size_ok {
            return bad(format!(
                "train.data.corpus_bytes {} is out of range for the {:?} corpus (1024..=2^30; 1..=100000 repetitions for seed-sentences)",
                self.data.corpus_bytes, self.data.corpus
            ));
        }
        Ok(())
    }
}
