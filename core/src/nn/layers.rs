//! Linear, Embedding, LayerNorm, RMSNorm and dropout.
use super::{ForwardCtx, Param};
use crate::backend::{Backend, Dist};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};

/// How a weight matrix is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `N(0, std²)`.
    Normal(f32),
    /// `U(−bound, bound)`.
    Uniform(f32),
}

impl Init {
    /// PyTorch's `xavier_uniform_` for a `[fan_out, fan_in]` matrix: `U(±√(6/(fan_in + fan_out)))`.
    pub fn xavier_uniform(fan_in: usize, fan_out: usize) -> Self {
        Init::Uniform(libm::sqrtf(6.0 / (fan_in + fan_out) as f32))
    }
    /// PyTorch's default `nn.Linear` weight init (`kaiming_uniform_(a=√5)`): `U(±1/√fan_in)`.
    pub fn torch_linear(fan_in: usize) -> Self {
        Init::Uniform(1.0 / libm::sqrtf(fan_in as f32))
    }
    /// A tensor of `shape` drawn from this distribution.
    pub fn tensor<B: Backend>(self, shape: &[usize], key: RngKey, dev: &B::Device) -> Result<Tensor<B>> {
        match self {
            Init::Normal(std) => Tensor::randn(std, key, shape, dev),
            Init::Uniform(b) => Tensor::random(Dist::Uniform { lo: -b, hi: b }, key, shape, dev),
        }
    }
}

/// `y = x Wᵀ + b`; `W: [out, in]` (PyTorch layout), `b: [out]`; `x: [..., in] → [..., out]`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// Weight `[out, in]`.
    pub weight: Param<B>,
    /// Optional bias `[out]`.
    pub bias: Option<Param<B>>,
}

impl<B: Backend> Linear<B> {
    /// Weight ~ N(0, std²), bias zero.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f32, key: RngKey, dev: &B::Device) -> Result<Self> {
        Self::with_init(d_in, d_out, bias, Init::Normal(std), key, dev)
    }
    /// Weight from `init`, bias zero.
    pub fn with_init(d_in: usize, d_out: usize, bias: bool, init: Init, key: RngKey, dev: &B::Device) -> Result<Self> {
        Ok(Self {
            weight: Param::new(init.tensor(&[d_out, d_in], key, dev)?),
            bias: if bias { Some(Param::new(Tensor::zeros(&[d_out], dev)?)) } else { None },
        })
    }
    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.shape()[1]
    }
    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.shape()[0]
    }
    /// `x Wᵀ + b`.
    pub fn forward(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        x.linear(&self.weight, self.bias.as_deref())
    }
}

/// Lookup table `[rows, dim]`: `ids [*] → [*, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding<B: Backend> {
    /// Table `[rows, dim]`.
    pub weight: Param<B>,
}

impl<B: Backend> Embedding<B> {
    /// Entries ~ N(0, std²).
    pub fn new(rows: usize, dim: usize, std: f32, key: RngKey, dev: &B::Device) -> Result<Self> {
        Ok(Self { weight: Param::new(Tensor::randn(std, key, &[rows, dim], dev)?) })
    }
    /// Rows of the table selected by `ids`.
    pub fn forward(&self, ids: &Ids<B>) -> Result<Tensor<B>> {
        self.weight.gather_rows(ids)
    }
}

/// LayerNorm over the last axis, `γ = 1`, `β = 0` at init.
#[derive(Debug, Clone)]
pub struct LayerNorm<B: Backend> {
    /// Gain `[d]`.
    pub gamma: Param<B>,
    /// Bias `[d]`.
    pub beta: Param<B>,
    /// Variance epsilon.
    pub eps: f32,
}

impl<B: Backend> LayerNorm<B> {
    /// A LayerNorm of width `d`.
    pub fn new(d: usize, eps: f32, dev: &B::Device) -> Result<Self> {
        Ok(Self { gamma: Param::new(Tensor::ones(&[d], dev)?), beta: Param::new(Tensor::zeros(&[d], dev)?), eps })
    }
    /// `(x − μ)/√(σ² + ε)·γ + β`.
    pub fn forward(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        x.layer_norm(&self.gamma, &self.beta, self.eps)
    }
}

/// RMSNorm over the last axis, `γ = 1` at init.
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    /// Gain `[d]`.
    pub gamma: Param<B>,
    /// Epsilon added to the mean square.
    pub eps: f32,
}

impl<B: Backend> RmsNorm<B> {
    /// An RMSNorm of width `d`.
    pub fn new(d: usize, eps: f32, dev: &B::Device) -> Result<Self> {
        Ok(Self { gamma: Param::new(Tensor::ones(&[d], dev)?), eps })
    }
    /// `x/√(mean(x²) + ε)·γ`.
    pub fn forward(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        x.rms_norm(&self.gamma, self.eps)
    }
}

/// Inverted dropout: in training, each element is zeroed with probability `p` and the rest
/// scaled by `1/(1−p)`; identity in evaluation or when `p = 0`.
pub fn dropout<B: Backend>(x: &Tensor<B>, p: f32, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::Config(alloc::format!("dropout probability {p} outside [0, 1)")));
    }
    if !ctx.train || p == 0.0 {
        return Ok(x.clone());
    }
    let keep = Tensor::random(Dist::Bernoulli { p: 1.0 - p }, ctx.next_key(), x.shape(), &x.device())?;
    x.mul(&keep.mul_scalar(1.0 / (1.0 - p))?)
}

crate::module!(Linear { weight, bias });
crate::module!(Embedding { weight });
crate::module!(LayerNorm { gamma => "weight", beta => "bias" });
crate::module!(RmsNorm { gamma => "weight" });
