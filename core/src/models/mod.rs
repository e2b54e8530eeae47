//! Models. Each is a struct of parameters plus a serde configuration, generic over the
//! backend, with presets that reproduce its seed.
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::{ForwardCtx, KvCache, Module, ParamIds};
use crate::recipe::TrainConfig;
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod cell_token;
pub mod cellular_transformer;
pub mod gpt;
pub mod synaptic_gpt;

pub use cell_token::{CellToken, CellTokenConfig};
pub use cellular_transformer::{CellularTransformer, CellularTransformerConfig};
pub use gpt::{Gpt, GptConfig};
pub use synaptic_gpt::{SynapticGpt, SynapticGptConfig};

/// A named configuration of a model and of its training run.
#[derive(Debug, Clone)]
pub struct Preset<C> {
    /// Name (`--preset`).
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// Model configuration.
    pub model: C,
    /// Training settings.
    pub train: TrainConfig,
}

/// What a model's configuration type says about its architecture: the id stored in
/// checkpoints, a description, and the presets (the first is the default). The registry of
/// the runtime lists architectures by these.
pub trait Architecture: Serialize + DeserializeOwned + Clone + core::fmt::Debug + PartialEq {
    /// Architecture id (`--model`, stored in checkpoints).
    const ARCH: &'static str;
    /// One-line description.
    const ABOUT: &'static str;
    /// The presets, the default first.
    fn presets() -> Vec<Preset<Self>>;
    /// Matmul FLOPs of one forward pass over `tokens` tokens in sequences of `seq`, when the
    /// model states them (the benches' roofline).
    fn forward_flops(&self, _tokens: usize, _seq: usize) -> Option<f64> {
        None
    }
}

/// A next-token language model.
pub trait LanguageModel<B: Backend>: Module<B> + Sized {
    /// Serde configuration.
    type Config: Architecture;
    /// Architecture id stored in checkpoints.
    const ARCH: &'static str = <Self::Config as Architecture>::ARCH;

    /// A freshly initialised model (deterministic in `key`).
    fn init(cfg: &Self::Config, key: RngKey, dev: &B::Device) -> Result<Self>;
    /// Its configuration.
    fn config(&self) -> &Self::Config;
    /// The model's parameter-id counter (saved in checkpoints).
    fn param_ids(&self) -> &ParamIds;
    /// The counter, mutably (structural edits draw new ids from it).
    fn param_ids_mut(&mut self) -> &mut ParamIds;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Longest input sequence.
    fn context_len(&self) -> usize;
    /// Logits `[B, S, V]` for ids `[B, S]`.
    fn forward(&self, ids: &Ids<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>>;

    /// Logits `[B, n, V]` for `ids: [B, n]` continuing the sequences held in `cache`
    /// (positions `cache.len() .. cache.len() + n`), which it extends. Evaluation mode: no
    /// dropout, no noise, no weight writes. `cache.len() + n` must not exceed the context
    /// ([`crate::nn::Decoder`] slides the window). Equal to the last `n` positions of
    /// [`LanguageModel::forward`] over all the cached tokens and `ids`.
    ///
    /// The default recomputes the whole prefix (correct for any causal model, cost growing
    /// with the prefix); the decoders override it with key/value caching.
    fn forward_cached(&self, ids: &Ids<B>, cache: &mut KvCache<B>) -> Result<Tensor<B>> {
        cache.extend(Self::ARCH, 0, self.context_len(), ids, |cache, _, n| {
            let all = cache.all_ids()?;
            let logits = self.forward(&all, &mut ForwardCtx::eval())?;
            logits.narrow(1, cache.len() - n, n)
        })
    }

    /// Mean next-token cross-entropy of `inputs → targets` (both `[B, S]`).
    fn loss(&self, inputs: &Ids<B>, targets: &Ids<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let logits = self.forward(inputs, ctx)?;
        let (b, s, v) = (logits.shape()[0], logits.shape()[1], logits.shape()[2]);
        logits.reshape(&[b * s, v])?.cross_entropy(&targets.reshape(&[b * s])?)
    }
}

/// Gives every parameter of a freshly built model an id from its own counter, in visit order.
pub(crate) fn adopt<B: Backend, M: LanguageModel<B>>(mut m: M) -> M {
    let mut ids = *m.param_ids();
    ids.assign(&mut m);
    *m.param_ids_mut() = ids;
    m
}

/// Checks model input ids: `shape` must be `[batch, seq]` with `0 < seq ≤ limit`; `limit_name`
/// says what bounds the sequence (the context length, a position table).
pub(crate) fn check_ids_shape(model: &'static str, shape: &[usize], limit: usize, limit_name: &str) -> Result<()> {
    if shape.len() != 2 || shape[1] == 0 {
        return Err(crate::shape_err!(model, "ids must be [batch, seq] with seq > 0, got {shape:?}"));
    }
    if shape[1] > limit {
        return Err(crate::shape_err!(model, "sequence of {} exceeds the {limit_name} {limit}", shape[1]));
    }
    Ok(())
}
