//! Run configuration: model hyper-parameters + training settings, built from a preset,
//! then a `--config` file, then `--set key=value` overrides, then validated.
//!
//! As JSON it reads `{"arch": "gpt", "preset": "bench", "model": {...}, "train": {...}}`.
//! Override keys are dotted paths (`train.lr`, `model.n_layer`, `train.optim.weight_decay`)
//! or any unambiguous suffix of one (`lr`, `n_layer`, `weight_decay`).
use protocell_core::error::{Error, Result};
use protocell_core::optim::{AdamWConfig, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

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

/// A complete run description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Architecture (`gpt`, ...).
    pub arch: String,
    /// Preset the run started from.
    pub preset: String,
    /// Model hyper-parameters (the architecture's own config struct, as JSON).
    pub model: Value,
    /// Training settings.
    pub train: TrainConfig,
}

impl RunConfig {
    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("config serialises")
    }
    /// Parses a JSON value (unknown fields are errors).
    pub fn from_value(v: Value) -> Result<Self> {
        serde_json::from_value(v).map_err(|e| Error::Config(e.to_string()))
    }
    /// Pretty JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).expect("config serialises")
    }
}

/// Deep-merges `overlay` into `base` (objects merge key by key; anything else replaces).
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Reads a TOML (`.toml`) or JSON config file as a JSON value.
pub fn read_config_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        let t: toml::Value =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: invalid TOML: {e}", path.display())))?;
        serde_json::to_value(t).map_err(|e| Error::Config(e.to_string()))
    } else {
        serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: invalid JSON: {e}", path.display())))
    }
}

fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(m) = v {
        for (k, c) in m {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if c.is_object() {
                leaf_paths(c, &p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Applies one `key=value` override. `value` is parsed as JSON when it can be (numbers,
/// booleans, `null`, quoted strings, arrays), else taken as a plain string.
pub fn apply_set(cfg: &mut Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set expects key=value, got {assignment:?}")))?;
    let key = key.trim();
    let value: Value = serde_json::from_str(raw.trim()).unwrap_or_else(|_| Value::String(raw.trim().to_string()));
    let mut leaves = Vec::new();
    leaf_paths(cfg, "", &mut leaves);
    let path = if leaves.iter().any(|p| p == key) {
        key.to_string()
    } else {
        let hits: Vec<&String> = leaves.iter().filter(|p| p.ends_with(&format!(".{key}"))).collect();
        match hits.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(Error::Config(format!("unknown configuration key {key:?}"))),
            many => {
                return Err(Error::Config(format!(
                    "configuration key {key:?} is ambiguous: {}",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    };
    let mut slot = cfg;
    for part in path.split('.') {
        slot = slot.get_mut(part).ok_or_else(|| Error::Config(format!("unknown configuration key {key:?}")))?;
    }
    *slot = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_resolves_suffixes_and_rejects_unknown() {
        let mut v = json!({"arch": "gpt", "model": {"n_layer": 4, "dropout": 0.0}, "train": {"lr": 0.001, "optim": {"eps": 1e-8}, "data": {"path": null}}});
        apply_set(&mut v, "lr=0.01").unwrap();
        apply_set(&mut v, "model.n_layer=2").unwrap();
        apply_set(&mut v, "path=/tmp/x.txt").unwrap();
        apply_set(&mut v, "eps=1e-6").unwrap();
        assert_eq!(v["train"]["lr"], json!(0.01));
        assert_eq!(v["model"]["n_layer"], json!(2));
        assert_eq!(v["train"]["data"]["path"], json!("/tmp/x.txt"));
        assert!(apply_set(&mut v, "nope=1").is_err());
        assert!(apply_set(&mut v, "novalue").is_err());
    }

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"train": {"lr": 1, "steps": 2}});
        merge(&mut a, &json!({"train": {"lr": 3}}));
        assert_eq!(a, json!({"train": {"lr": 3, "steps": 2}}));
    }
}
