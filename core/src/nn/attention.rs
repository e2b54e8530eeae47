//! Causal multi-head self-attention and the GELU MLP of a transformer block.
use super::{dropout, join, ForwardCtx, Linear, Module};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::Tensor;
#[allow(unused_imports)]
// float methods come from std, or from libm via num-traits under no_std
use num_traits::Float;

/// Causal multi-head self-attention with a packed `qkv` projection (rows ordered q, k, v;
/// heads are contiguous `d/H` slices) and an output projection.
#[derive(Debug, Clone)]
pub struct CausalSelfAttention<B: Backend> {
    /// Packed input projection `[3d, d]`.
    pub qkv: Linear<B>,
    /// Output projection `[d, d]`.
    pub proj: Linear<B>,
    /// Number of heads.
    pub n_head: usize,
}

impl<B: Backend> CausalSelfAttention<B> {
    /// Projections ~ N(0, std²) (`proj_std` for the output projection), zero biases.
    pub fn new(
        d: usize,
        n_head: usize,
        bias: bool,
        std: f32,
        proj_std: f32,
        key: RngKey,
        dev: &B::Device,
    ) -> Result<Self> {
        if n_head == 0 || d % n_head != 0 {
            return Err(Error::Config(alloc::format!("width {d} is not divisible by {n_head} heads")));
        }
        Ok(Self {
            qkv: Linear::new(d, 3 * d, bias, std, key.fold(1), dev)?,
            proj: Linear::new(d, d, bias, proj_std, key.fold(2), dev)?,
            n_head,
        })
    }

    /// `x: [B, S, d] → [B, S, d]`: `softmax(q kᵀ/√(d/H) + causal mask) v`, heads concatenated,
    /// then the output projection.
    pub fn forward(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let s = x.shape();
        if s.len() != 3 {
            return Err(crate::shape_err!("attention", "input must be [batch, seq, dim], got {s:?}"));
        }
        let (b, t, d) = (s[0], s[1], s[2]);
        let h = self.n_head;
        let hd = d / h;
        let qkv = self.qkv.forward(x)?.reshape(&[b, t, 3, h, hd])?;
        let y = Tensor::self_attention(&qkv, true, 1.0 / (hd as f32).sqrt())?;
        self.proj.forward(&y.reshape(&[b, t, d])?)
    }
}

impl<B: Backend> Module<B> for CausalSelfAttention<B> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<B>)) {
        self.qkv.visit(&join(prefix, "qkv"), f);
        self.proj.visit(&join(prefix, "proj"), f);
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor<B>)) {
        self.qkv.visit_mut(&join(prefix, "qkv"), f);
        self.proj.visit_mut(&join(prefix, "proj"), f);
    }
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
    /// Weights ~ N(0, std²) (`proj_std` for the output projection), zero biases.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        hidden: usize,
        bias: bool,
        dropout: f32,
        std: f32,
        proj_std: f32,
        key: RngKey,
        dev: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            fc: Linear::new(d, hidden, bias, std, key.fold(1), dev)?,
            proj: Linear::new(hidden, d, bias, proj_std, key.fold(2), dev)?,
            dropout,
        })
    }
    /// `dropout(W₂·GELU(W₁x + b₁) + b₂)`.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let h = self.fc.forward(x)?.gelu()?;
        dropout(&self.proj.forward(&h)?, self.dropout, ctx)
    }
}

impl<B: Backend> Module<B> for Mlp<B> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<B>)) {
        self.fc.visit(&join(prefix, "fc"), f);
        self.proj.visit(&join(prefix, "proj"), f);
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor<B>)) {
        self.fc.visit_mut(&join(prefix, "fc"), f);
        self.proj.visit_mut(&join(prefix, "proj"), f);
    }
}
