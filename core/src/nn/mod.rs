//! Neural-network building blocks, generic over the backend.
//!
//! A layer is a plain struct of [`Param`]s plus its configuration; the [`Module`] trait walks
//! parameters (see [`param`] for identities and the visitor). Optimiser state is keyed by
//! [`ParamId`]; checkpoints store both the id and the dotted path
//! (`blocks.0.attn.qkv.weight`).
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
pub mod cache;
mod layers;
pub mod param;

pub use attention::{split_heads, Mlp, SelfAttention};
pub use block::Block;
pub use cache::{Decoder, KvCache, LayerCache};
pub use layers::{dropout, Embedding, Init, LayerNorm, Linear, RmsNorm};
pub use param::{
    Buffer, BufferVisitor, BufferVisitorMut, ModuleField, Param, ParamId, ParamIds, ParamVisitor, ParamVisitorMut,
};

/// Something with parameters. Implement it with [`module!`](crate::module), which lists the
/// parameter fields once and writes both walks.
pub trait Module<B: Backend> {
    /// Walks every parameter (shared access), with `enter`/`exit` around submodules.
    fn visit_params(&self, v: &mut dyn ParamVisitor<B>);
    /// Walks every parameter (mutable access), with `enter`/`exit` around submodules.
    fn visit_params_mut(&mut self, v: &mut dyn ParamVisitorMut<B>);

    /// Walks every buffer (shared access).
    fn visit_buffers(&self, _v: &mut dyn BufferVisitor<B>) {}
    /// Walks every buffer (mutable access).
    fn visit_buffers_mut(&mut self, _v: &mut dyn BufferVisitorMut<B>) {}

    /// Calls `f(path, buffer)` for every buffer, in visit order.
    fn for_each_buffer(&self, f: &mut dyn FnMut(&str, &Buffer<B>)) {
        self.visit_buffers(&mut param::Paths::new(f));
    }
    /// Calls `f(path, buffer)` with mutable access for every buffer, in visit order.
    fn for_each_buffer_mut(&mut self, f: &mut dyn FnMut(&str, &mut Buffer<B>)) {
        self.visit_buffers_mut(&mut param::Paths::new(f));
    }

    /// Calls `f(path, param)` for every parameter, in visit order.
    fn for_each_param(&self, f: &mut dyn FnMut(&str, &Param<B>)) {
        self.visit_params(&mut param::Paths::new(f));
    }
    /// Calls `f(path, param)` with mutable access for every parameter, in visit order.
    fn for_each_param_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param<B>)) {
        self.visit_params_mut(&mut param::Paths::new(f));
    }
    /// Total number of scalar parameters.
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.for_each_param(&mut |_, t| n += t.numel());
        n
    }
    /// `(path, shape)` of every parameter, in visit order.
    fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        self.for_each_param(&mut |name, t| v.push((String::from(name), t.shape().to_vec())));
        v
    }
}

/// Host copy of a tensor: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A parameter copied to the host, with its identity and path.
#[derive(Debug, Clone, PartialEq)]
pub struct HostParam {
    /// Identity.
    pub id: ParamId,
    /// Dotted path.
    pub path: String,
    /// Value.
    pub value: HostTensor,
}

/// Copies every parameter of `m` to the host, in visit order.
pub fn export_params<B: Backend, M: Module<B> + ?Sized>(m: &M) -> Result<Vec<HostParam>> {
    let mut out = Vec::new();
    let mut err = None;
    m.for_each_param(&mut |path, p| {
        if err.is_some() {
            return;
        }
        match p.to_vec() {
            Ok(data) => out.push(HostParam {
                id: p.id(),
                path: String::from(path),
                value: HostTensor { shape: p.shape().to_vec(), data },
            }),
            Err(e) => err = Some(e),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Replaces every parameter of `m` with the host tensor at the same path, and its id with the
/// stored id when one is given. Every parameter must be present with its exact shape, every
/// given tensor must be used, and ids must be distinct. Nothing of `m` changes on an error.
pub fn import_params<B: Backend, M: Module<B> + ?Sized>(
    m: &mut M,
    params: &BTreeMap<String, (Option<ParamId>, HostTensor)>,
    dev: &B::Device,
) -> Result<()> {
    // validate everything and build the new tensors before touching the model
    let mut staged: Vec<(Option<ParamId>, Tensor<B>)> = Vec::new();
    let mut err: Option<Error> = None;
    let mut ids = alloc::collections::BTreeSet::new();
    m.for_each_param(&mut |name, t| {
        if err.is_some() {
            return;
        }
        match params.get(name) {
            None => err = Some(Error::Checkpoint(format!("parameter {name} is missing"))),
            Some((_, h)) if h.shape != t.shape() => {
                err = Some(Error::Checkpoint(format!(
                    "parameter {name} has shape {:?}, the model expects {:?}",
                    h.shape,
                    t.shape()
                )))
            }
            Some((id, _)) if id.is_some_and(|i| i.is_unassigned() || !ids.insert(i)) => {
                err = Some(Error::Checkpoint(format!("parameter {name} has an invalid or repeated id")))
            }
            Some((id, h)) => match Tensor::from_f32(&h.data, &h.shape, dev) {
                Ok(nt) => staged.push((*id, nt)),
                Err(e) => err = Some(e),
            },
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if staged.len() != params.len() {
        let mut known = alloc::collections::BTreeSet::new();
        m.for_each_param(&mut |name, _| {
            known.insert(String::from(name));
        });
        let extra: Vec<&String> = params.keys().filter(|k| !known.contains(*k)).take(5).collect();
        return Err(Error::Checkpoint(format!("checkpoint holds parameters the model does not have: {extra:?}")));
    }
    let mut staged = staged.into_iter();
    m.for_each_param_mut(&mut |_, p| {
        if let Some((id, t)) = staged.next() {
            p.set(t);
            if let Some(id) = id {
                p.set_id(id);
            }
        }
    });
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
    stats: Vec<(String, f64)>,
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
    pub fn log(&mut self, name: impl Into<String>, value: f64) {
        self.stats.push((name.into(), value));
    }
    /// The statistics recorded so far, in order.
    pub fn stats(&self) -> &[(String, f64)] {
        &self.stats
    }
    /// A fresh key for the next random site.
    pub fn next_key(&mut self) -> RngKey {
        self.counter += 1;
        self.key.fold(self.counter)
    }
}
