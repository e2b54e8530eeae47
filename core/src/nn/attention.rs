//! Multi-head self-attention and the GELU MLP of a transformer block.
use super::{dropout, ForwardCtx, Init, LayerCache, Linear};
use crate::backend::{AttnDropout, AttnSpec, Backend};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::Tensor;
#[allow(unused_imports)]
// float methods come from std, or from libm via num-traits under no_std
use num_traits::Float;

/// Multi-head self-attention with a packed `qkv` projection (rows ordered q, k, v; heads are
/// contiguous `d/H` slices) and an output projection, causal or not, with optional dropout on
/// the attention probabilities.
#[derive(Debug, Clone)]
pub struct SelfAttention<B: Backend> {
    /// Packed input projection `[3d, d]`.
    pub qkv: Linear<B>,
    /// Output projection `[d, d]`.
    pub proj: Linear<B>,
    /// Number of heads.
    pub n_head: usize,
    /// Causal mask.
    pub causal: bool,
    /// Dropout on the attention probabilities (training only).
    pub attn_dropout: f32,
}

impl<B: Backend> SelfAttention<B> {
    /// Width `d`, `n_head` heads; the projections drawn from `qkv_init` and `proj_init`,
    /// biases zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        n_head: usize,
        causal: bool,
        bias: bool,
        qkv_init: Init,
        proj_init: Init,
        key: RngKey,
        dev: &B::Device,
    ) -> Result<Self> {
        if n_head == 0 || d % n_head != 0 {
            return Err(Error::Config(alloc::format!("width {d} is not divisible by {n_head} heads")));
        }
        Ok(Self {
            qkv: Linear::with_init(d, 3 * d, bias, qkv_init, key.fold(1), dev)?,
            proj: Linear::with_init(d, d, bias, proj_init, key.fold(2), dev)?,
            n_head,
            causal,
            attn_dropout: 0.0,
        })
    }

    /// The same layer with dropout `p` on the attention probabilities.
    pub fn with_attn_dropout(mut self, p: f32) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Config(alloc::format!("attention dropout {p} must be in [0, 1)")));
        }
        self.attn_dropout = p;
        Ok(self)
    }

    /// `x: [B, S, d] → [B, S, d]`: `softmax(q kᵀ/√(d/H) [+ causal mask]) v` per head, heads
    /// concatenated, then the output projection.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let s = x.shape();
        if s.len() != 3 {
            return Err(crate::shape_err!("attention", "input must be [batch, seq, dim], got {s:?}"));
        }
        let (b, t, d) = (s[0], s[1], s[2]);
        let h = self.n_head;
        let hd = d / h;
        let qkv = self.qkv.forward(x)?.reshape(&[b, t, 3, h, hd])?;
        let dropout =
            (ctx.train && self.attn_dropout > 0.0).then(|| AttnDropout { p: self.attn_dropout, key: ctx.next_key() });
        let spec = AttnSpec { causal: self.causal, scale: 1.0 / (hd as f32).sqrt(), dropout };
        let y = Tensor::self_attention(&qkv, &spec)?;
        self.proj.forward(&y.reshape(&[b, t, d])?)
    }

    /// Incremental [`SelfAttention::forward`] (evaluation mode) for `x: [B, n, d]`, the
    /// next `n` positions after those in `cache`: their keys and values (`[B, H, L, Dh]`)
    /// are appended to the cache and the queries attend causally to all `L` of them.
    pub fn forward_cached(&self, x: &Tensor<B>, cache: &mut LayerCache<B>) -> Result<Tensor<B>> {
        let s = x.shape();
        if s.len() != 3 {
            return Err(crate::shape_err!("attention", "input must be [batch, seq, dim], got {s:?}"));
        }
        if !self.causal {
            return Err(Error::InvalidArgument(
                "a non-causal attention layer cannot decode incrementally (earlier queries would see later keys)"
                    .into(),
            ));
        }
        let (b, n, d) = (s[0], s[1], s[2]);
        let h = self.n_head;
        let hd = d / h;
        let (q, k, v) = split_heads(&self.qkv.forward(x)?.reshape(&[b, n, 3, h, hd])?)?;
        let (k, v) = cache.append_kv(k, v, 2)?;
        let y = Tensor::attention(&q, &k, &v, true, 1.0 / (hd as f32).sqrt())?;
        self.proj.forward(&y.permute(&[0, 2, 1, 3])?.reshape(&[b, n, d])?)
    }
}

/// Splits a packed projection `qkv: [B, S, 3, H, Dh]` into `q`, `k`, `v`, each
/// `[B, H, S, Dh]`.
#[allow(clippy::type_complexity)]
pub fn split_heads<B: Backend>(qkv: &Tensor<B>) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    let s = qkv.shape();
    if s.len() != 5 || s[2] != 3 {
        return Err(crate::shape_err!("attention", "packed qkv must be [batch, seq, 3, heads, dim], got {s:?}"));
    }
    let (b, n, h, hd) = (s[0], s[1], s[3], s[4]);
    let part = |i: usize| qkv.narrow(2, i, 1)?.reshape(&[b, n, h, hd])?.permute(&[0, 2, 1, 3]);
    Ok((part(0)?, part(1)?, part(2)?))
}

/// `proj(GELU(fc(x)))` with hidden width `mult·d`, then dropout.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    /// `[hidden, d]`.
    pub fc: Linear<B>,
    /// `[d, hidden]`.
    pub proj: Linear<B>,
    /// Dropout on the output.
    pub dropout: f32,
}

impl<B: Backend> Mlp<B> {
    /// Weights from `fc_init` / `proj_init`, zero biases.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        hidden: usize,
        bias: bool,
        dropout: f32,
        fc_init: Init,
        proj_init: Init,
        key: RngKey,
        dev: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            fc: Linear::with_init(d, hidden, bias, fc_init, key.fold(1), dev)?,
            proj: Linear::with_init(hidden, d, bias, proj_init, key.fold(2), dev)?,
            dropout,
        })
    }
    /// `dropout(W₂·GELU(W₁x + b₁) + b₂)`.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let h = self.fc.forward(x)?.gelu()?;
        dropout(&self.proj.forward(&h)?, self.dropout, ctx)
    }
}

crate::module!(SelfAttention { qkv, proj });
crate::module!(Mlp { fc, proj });
