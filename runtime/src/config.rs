//! Run configuration: model hyper-parameters + training settings, built from a preset,
//! then a `--config` file, then `--set key=value` overrides, then validated.
//!
//! As JSON it reads `{"arch": "gpt", "preset": "bench", "model": {...}, "train": {...}}`.
//! Override keys are dotted paths (`train.lr`, `model.n_layer`, `train.optim.weight_decay`)
//! or any unambiguous suffix of one (`lr`, `n_layer`, `weight_decay`).
use protocell_core::error::{Error, Result};
pub use protocell_core::recipe::{Corpus, DataConfig, SamplingKind, TokenizerKind, TrainConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

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
