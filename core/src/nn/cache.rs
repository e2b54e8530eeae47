//! Incremental decoding: the per-layer key/value cache of a decoder (and any per-key
//! recurrent state a layer carries, such as presynaptic pools), and the sliding context
//! window that generation keeps over an unbounded token stream.
//!
//! A causal decoder's outputs at positions `0..L` do not depend on later tokens, so once the
//! keys and values of a prefix are stored, the next `n` tokens cost
//! `O(n·L·d)` attention plus `O(n·d²)` projections instead of a full
//! `O((L+n)²·d + (L+n)·d²)` recomputation: the cost per token is flat in the context length
//! up to the model's window. [`crate::models::LanguageModel::forward_cached`] consumes a
//! [`KvCache`]; [`Decoder`] slides the window.
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::models::LanguageModel;
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::vec::Vec;

/// What one layer keeps between decoding calls. Shapes are the layer's business (attention
/// keeps `[B, H, L, Dh]` keys and values; synaptic attention keeps `[B·H, L, Dh]` and the
/// pools `[B·H, L, W]`).
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    /// Keys of the cached positions.
    pub k: Option<Tensor<B>>,
    /// Values of the cached positions.
    pub v: Option<Tensor<B>>,
    /// Per-key recurrent state of the cached positions.
    pub state: Option<Tensor<B>>,
}

impl<B: Backend> Default for LayerCache<B> {
    fn default() -> Self {
        Self { k: None, v: None, state: None }
    }
}

impl<B: Backend> LayerCache<B> {
    /// Appends the new keys and values along `axis` and returns the whole keys and values.
    pub fn append_kv(&mut self, k: Tensor<B>, v: Tensor<B>, axis: usize) -> Result<(Tensor<B>, Tensor<B>)> {
        let k = match self.k.take() {
            Some(old) => Tensor::cat(&[old, k], axis)?,
            None => k,
        };
        let v = match self.v.take() {
            Some(old) => Tensor::cat(&[old, v], axis)?,
            None => v,
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }
}

/// The decoding state of a batch of sequences: the tokens seen (positions `0..len`), and one
/// [`LayerCache`] per cached layer. A cache is bound to the first model that uses it (its
/// architecture and layer count); another model refuses it.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    batch: usize,
    len: usize,
    /// `[batch][len]` tokens, row-major by sequence.
    tokens: Vec<Vec<u32>>,
    owner: Option<(&'static str, usize)>,
    dev: B::Device,
    /// One entry per cached layer, in the model's order.
    pub layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache on `dev` for `batch` sequences decoded in lockstep.
    pub fn new(batch: usize, dev: &B::Device) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidArgument("a decoding cache needs at least one sequence".into()));
        }
        Ok(Self {
            batch,
            len: 0,
            tokens: alloc::vec![Vec::new(); batch],
            owner: None,
            dev: dev.clone(),
            layers: Vec::new(),
        })
    }
    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The tokens of sequence `row` at positions `0..len`.
    pub fn tokens(&self, row: usize) -> &[u32] {
        &self.tokens[row]
    }
    /// Forgets every position (the binding to a model stays).
    pub fn clear(&mut self) {
        self.len = 0;
        self.tokens.iter_mut().for_each(Vec::clear);
        self.layers.clear();
    }

    /// One decoding call of a model `arch` with `layers` cached layers and a context of `ctx`
    /// positions: checks that `ids: [batch, n]` can follow the cached positions, binds the
    /// cache to the model on first use, records the tokens, then runs the model's layers
    /// `f(cache, pos, n)` (`pos`: position of the first new token). When the checks fail
    /// nothing changes; when `f` fails the cache is cleared, since layers may have been
    /// partly extended (the next call re-encodes from an empty cache).
    pub fn extend<T>(
        &mut self,
        arch: &'static str,
        layers: usize,
        ctx: usize,
        ids: &Ids<B>,
        f: impl FnOnce(&mut Self, usize, usize) -> Result<T>,
    ) -> Result<T> {
        let (pos, n) = self.begin(arch, layers, ctx, ids)?;
        let r = f(self, pos, n);
        if r.is_err() {
            self.clear();
        }
        r
    }

    /// The checks and bookkeeping of [`KvCache::extend`]; returns `(pos, n)`.
    fn begin(&mut self, arch: &'static str, layers: usize, ctx: usize, ids: &Ids<B>) -> Result<(usize, usize)> {
        let s = ids.shape();
        if s.len() != 2 || s[0] != self.batch || s[1] == 0 {
            return Err(crate::shape_err!(
                "decode",
                "ids must be [{}, n] with n > 0 for this cache, got {s:?}",
                self.batch
            ));
        }
        match self.owner {
            Some(o) if o != (arch, layers) => {
                return Err(Error::InvalidArgument(format!(
                    "this decoding cache belongs to a {} model with {} layers, not to a {arch} model with {layers}",
                    o.0, o.1
                )))
            }
            _ => {}
        }
        let n = s[1];
        if self.len + n > ctx {
            return Err(crate::shape_err!(
                "decode",
                "{} cached + {n} new positions exceed the context length {ctx} (slide the window: see Decoder)",
                self.len
            ));
        }
        let host = ids.to_vec()?;
        self.owner = Some((arch, layers));
        if self.layers.len() != layers {
            self.layers = (0..layers).map(|_| LayerCache::default()).collect();
        }
        for (row, t) in self.tokens.iter_mut().zip(host.chunks(n)) {
            row.extend_from_slice(t);
        }
        let pos = self.len;
        self.len += n;
        Ok((pos, n))
    }

    /// All cached tokens as `[batch, len]` ids.
    pub fn all_ids(&self) -> Result<Ids<B>> {
        let flat: Vec<u32> = self.tokens.iter().flatten().copied().collect();
        Ids::from_u32(&flat, &[self.batch, self.len], &self.dev)
    }
}

/// Appends `tokens` to a window of a stream under the sliding rule of [`Decoder`] (a token
/// arriving at a full window of `ctx` tokens first drops the oldest `⌊ctx/2⌋`, at least
/// one); returns whether anything was dropped.
pub fn slide_window(window: &mut Vec<u32>, tokens: &[u32], ctx: usize) -> bool {
    let shift = (ctx / 2).max(1);
    let mut shifted = false;
    for &t in tokens {
        if window.len() >= ctx {
            let n = (window.len() + 1 - ctx).max(shift).min(window.len());
            window.drain(..n);
            shifted = true;
        }
        window.push(t);
    }
    shifted
}

/// Greedy-equivalent incremental decoding of one sequence over an unbounded token stream.
///
/// The model sees a window of the stream: all of it while it fits the context `C`; when a
/// token would make the window longer than `C`, the oldest `⌊C/2⌋` (at least one) tokens are
/// dropped and the rest is re-encoded from position 0 (one prefill of about `C/2` tokens
/// every `C/2` new tokens), so the cost per token stays bounded whatever the stream's
/// length. The window is a function of the stream alone (not of how it was fed), and the
/// logits equal those of [`LanguageModel::forward`] over [`Decoder::window`].
pub struct Decoder<'m, B: Backend, M: LanguageModel<B>> {
    model: &'m M,
    dev: B::Device,
    cache: KvCache<B>,
    /// The stream's tokens from the window's start.
    window: Vec<u32>,
}

impl<'m, B: Backend, M: LanguageModel<B>> Decoder<'m, B, M> {
    /// A decoder with an empty stream.
    pub fn new(model: &'m M, dev: &B::Device) -> Result<Self> {
        Ok(Self { model, dev: dev.clone(), cache: KvCache::new(1, dev)?, window: Vec::new() })
    }
    /// The tokens the model currently sees.
    pub fn window(&self) -> &[u32] {
        &self.window
    }
    /// Appends `tokens` to the stream and returns the logits `[V]` after its last token.
    /// On error the stream is as before the call (the cache is re-encoded on the next call).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("need at least one token".into()));
        }
        let v = self.model.vocab_size();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
            return Err(Error::InvalidArgument(format!("token {bad} is outside the vocabulary of {v}")));
        }
        let mut window = self.window.clone();
        let shifted = slide_window(&mut window, tokens, self.model.context_len());
        // re-encode after a shift, or when a failed call left the cache behind the window
        let fresh = shifted || self.cache.len() != self.window.len();
        let new: &[u32] = if fresh { &window } else { &window[self.window.len()..] };
        let n = new.len();
        if fresh {
            self.cache.clear();
        }
        let ids = Ids::<B>::from_u32(new, &[1, n], &self.dev)?;
        let logits = match self.model.forward_cached(&ids, &mut self.cache) {
            Ok(l) => l,
            Err(e) => {
                self.cache.clear();
                return Err(e);
            }
        };
        self.window = window;
        logits.narrow(1, n - 1, 1)?.reshape(&[v])?.to_vec()
    }
}
