//! Neural-network building blocks, generic over the backend.
//!
//! A layer is a plain struct of [`Tensor`]s plus its configuration; the [`Module`] trait
//! visits parameters by dotted name (`blocks.0.attn.qkv.weight`), which is how optimisers,
//! checkpoints and the C ABI address them.
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::Tensor;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

mod attention;
mod block;
mod layers;

pub use attention::{Mlp, SelfAttention};
pub use block::Block;
pub use layers::{dropout, Embedding, Init, LayerNorm, Linear, RmsNorm};

/// Something with named parameters.
pub trait Module<B: Backend> {
    /// Calls `f(name, param)` for every parameter, names prefixed with `prefix`.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<B>));
    /// Calls `f(name, param)` with mutable access for every parameter.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor<B>));

    /// Total number of scalar parameters.
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit("", &mut |_, t| n += t.numel());
        n
    }
    /// `(name, shape)` of every parameter, in visit order.
    fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        self.visit("", &mut |name, t| v.push((String::from(name), t.shape().to_vec())));
        v
    }
}

/// Joins a prefix and a name with a dot (`"" + "w" = "w"`).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        String::from(name)
    } else {
        format!("{prefix}.{name}")
    }
}

/// Host copy of a parameter: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Copies every parameter of `m` to the host, by name.
pub fn export_params<B: Backend, M: Module<B> + ?Sized>(m: &M) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    let mut err = None;
    m.visit("", &mut |name, t| match t.to_vec() {
        Ok(data) => {
            out.insert(String::from(name), HostTensor { shape: t.shape().to_vec(), data });
        }
        Err(e) => err = Some(e),
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Replaces every parameter of `m` with the host tensor of the same name. Every parameter
/// must be present with its exact shape, and every given tensor must be used.
pub fn import_params<B: Backend, M: Module<B> + ?Sized>(
    m: &mut M,
    params: &BTreeMap<String, HostTensor>,
    dev: &B::Device,
) -> Result<()> {
    let mut err: Option<Error> = None;
    let mut used = 0usize;
    m.visit_mut("", &mut |name, t| {
        if err.is_some() {
            return;
        }
        match params.get(name) {
            None => err = Some(Error::Checkpoint(format!("parameter {name} is missing"))),
            Some(h) if h.shape != t.shape() => {
                err = Some(Error::Checkpoint(format!(
                    "parameter {name} has shape {:?}, the model expects {:?}",
                    h.shape,
                    t.shape()
                )))
            }
            Some(h) => match Tensor::from_f32(&h.data, &h.shape, dev) {
                Ok(nt) => {
                    *t = nt;
                    used += 1;
                }
                Err(e) => err = Some(e),
            },
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if used != params.len() {
        let mut known = alloc::collections::BTreeSet::new();
        m.visit("", &mut |name, _| {
            known.insert(String::from(name));
        });
        let extra: Vec<&String> = params.keys().filter(|k| !known.contains(*k)).take(5).collect();
        return Err(Error::Checkpoint(format!("checkpoint holds parameters the model does not have: {extra:?}")));
    }
    Ok(())
}

/// Per-forward context: train/eval mode, the random stream of dropout sites, and
/// statistics a model reports about the pass (logged by the trainer).
#[derive(Debug, Clone)]
pub struct ForwardCtx {
    /// Training mode (dropout on).
    pub train: bool,
    key: RngKey,
    counter: u64,
    stats: Vec<(&'static str, f64)>,
}

impl ForwardCtx {
    /// Training mode; dropout masks derive from `key` (one sub-key per dropout site, in call order).
    pub fn train(key: RngKey) -> Self {
        Self { train: true, key, counter: 0, stats: Vec::new() }
    }
    /// Evaluation mode (no dropout).
    pub fn eval() -> Self {
        Self { train: false, key: RngKey::default(), counter: 0, stats: Vec::new() }
    }
    /// Records a named statistic of this pass.
    pub fn log(&mut self, name: &'static str, value: f64) {
        self.stats.push((name, value));
    }
    /// The statistics recorded so far, in order.
    pub fn stats(&self) -> &[(&'static str, f64)] {
        &self.stats
    }
    /// A fresh key for the next random site.
    pub fn next_key(&mut self) -> RngKey {
        self.counter += 1;
        self.key.fold(self.counter)
    }
}
