//! The Cellular Transformer (seed 001, "Slime Mold Attention") and its baseline.
//!
//! ```text
//! ids → x = emb[ids]                                    [B, S, d], d = n_org·d_org
//!     → (cellular) per token, attention among its n_org organelles of width d_org,
//!       no mask, post-norm: z ← LN(z + MHA(z))
//!     → x + pos[0..S]
//!     → macro_layers × post-norm causal attention x ← LN(x + MHA(x))   (no feed-forward)
//!     → Linear d → V (with bias, untied)
//! ```
//!
//! The baseline is the same stack without the cellular layer (`organelles = 0`). Every
//! initialisation is PyTorch's default (embeddings N(0, 1); attention input projections
//! Xavier-uniform; other Linear weights U(±1/√fan_in); head bias U(±1/√fan_in)), so the
//! seed's parameter counts (401,942 / 270,454 at 22 symbols) and curves can be reproduced.
use super::LanguageModel;
use crate::backend::{Backend, Dist};
use crate::error::{Error, Result};
use crate::nn::{join, Embedding, ForwardCtx, Init, LayerNorm, Linear, Module, SelfAttention};
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Cellular Transformer hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellularTransformerConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Rows of the position table (the seed uses 1024 although it trains on 32).
    pub ctx_len: usize,
    /// Model width.
    pub d_model: usize,
    /// Organelles per token (0: the baseline, no cellular layer).
    pub organelles: usize,
    /// Heads of the in-token attention.
    pub organelle_heads: usize,
    /// Causal post-norm attention layers.
    pub macro_layers: usize,
    /// Heads of the macro layers.
    pub macro_heads: usize,
    /// LayerNorm epsilon.
    pub ln_eps: f32,
}

impl Default for CellularTransformerConfig {
    /// The seed's cellular model: width 128 = 8 organelles × 16, 2 macro layers of 8 heads.
    fn default() -> Self {
        Self {
            vocab_size: 256,
            ctx_len: 1024,
            d_model: 128,
            organelles: 8,
            organelle_heads: 4,
            macro_layers: 2,
            macro_heads: 8,
            ln_eps: 1e-5,
        }
    }
}

impl CellularTransformerConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: alloc::string::String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.ctx_len == 0 || self.d_model == 0 || self.macro_layers == 0 {
            return bad("vocab_size, ctx_len, d_model and macro_layers must be > 0".into());
        }
        if self.macro_heads == 0 || self.d_model % self.macro_heads != 0 {
            return bad(format!("d_model {} must be divisible by macro_heads {}", self.d_model, self.macro_heads));
        }
        if self.organelles > 0 {
            if self.d_model % self.organelles != 0 {
                return bad(format!("d_model {} must be divisible by organelles {}", self.d_model, self.organelles));
            }
            let d_org = self.d_model / self.organelles;
            if self.organelle_heads == 0 || d_org % self.organelle_heads != 0 {
                return bad(format!(
                    "organelle width {d_org} must be divisible by organelle_heads {}",
                    self.organelle_heads
                ));
            }
        }
        if self.ln_eps.is_nan() || self.ln_eps <= 0.0 {
            return bad("ln_eps must be > 0".into());
        }
        Ok(())
    }
}

/// A post-norm attention-only layer: `x ← LN(x + MHA(x))`.
#[derive(Debug, Clone)]
pub struct PostNormAttention<B: Backend> {
    /// Attention.
    pub attn: SelfAttention<B>,
    /// Norm after the residual.
    pub ln: LayerNorm<B>,
}

impl<B: Backend> PostNormAttention<B> {
    fn new(d: usize, heads: usize, causal: bool, eps: f32, key: RngKey, dev: &B::Device) -> Result<Self> {
        Ok(Self {
            attn: SelfAttention::new(
                d,
                heads,
                causal,
                true,
                Init::xavier_uniform(d, 3 * d),
                Init::torch_linear(d),
                key,
                dev,
            )?,
            ln: LayerNorm::new(d, eps, dev)?,
        })
    }
    fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        self.ln.forward(&x.add(&self.attn.forward(x, ctx)?)?)
    }
}

impl<B: Backend> Module<B> for PostNormAttention<B> {
    fn visit(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor<B>)) {
        self.attn.visit(&join(p, "attn"), f);
        self.ln.visit(&join(p, "ln"), f);
    }
    fn visit_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Tensor<B>)) {
        self.attn.visit_mut(&join(p, "attn"), f);
        self.ln.visit_mut(&join(p, "ln"), f);
    }
}

/// The Cellular Transformer (or its baseline).
#[derive(Debug, Clone)]
pub struct CellularTransformer<B: Backend> {
    cfg: CellularTransformerConfig,
    /// Token embedding.
    pub emb: Embedding<B>,
    /// In-token organelle attention (absent in the baseline).
    pub cellular: Option<PostNormAttention<B>>,
    /// Position table.
    pub pos: Embedding<B>,
    /// Macro layers.
    pub layers: Vec<PostNormAttention<B>>,
    /// Output head.
    pub head: Linear<B>,
}

impl<B: Backend> Module<B> for CellularTransformer<B> {
    fn visit(&self, p: &str, f: &mut dyn FnMut(&str, &Tensor<B>)) {
        self.emb.visit(&join(p, "emb"), f);
        if let Some(c) = &self.cellular {
            c.visit(&join(p, "cellular"), f);
        }
        self.pos.visit(&join(p, "pos"), f);
        for (i, l) in self.layers.iter().enumerate() {
            l.visit(&join(p, &format!("macro.{i}")), f);
        }
        self.head.visit(&join(p, "head"), f);
    }
    fn visit_mut(&mut self, p: &str, f: &mut dyn FnMut(&str, &mut Tensor<B>)) {
        self.emb.visit_mut(&join(p, "emb"), f);
        if let Some(c) = &mut self.cellular {
            c.visit_mut(&join(p, "cellular"), f);
        }
        self.pos.visit_mut(&join(p, "pos"), f);
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_mut(&join(p, &format!("macro.{i}")), f);
        }
        self.head.visit_mut(&join(p, "head"), f);
    }
}

impl<B: Backend> LanguageModel<B> for CellularTransformer<B> {
    type Config = CellularTransformerConfig;
    const ARCH: &'static str = "cellular-transformer";

    fn init(cfg: &CellularTransformerConfig, key: RngKey, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        let cellular = match d.checked_div(cfg.organelles) {
            Some(d_org) => {
                Some(PostNormAttention::new(d_org, cfg.organelle_heads, false, cfg.ln_eps, key.fold(3), dev)?)
            }
            None => None,
        };
        let layers = (0..cfg.macro_layers)
            .map(|i| PostNormAttention::new(d, cfg.macro_heads, true, cfg.ln_eps, key.fold(100 + i as u64), dev))
            .collect::<Result<Vec<_>>>()?;
        let bound = 1.0 / libm::sqrtf(d as f32);
        let mut head = Linear::with_init(d, cfg.vocab_size, true, Init::Uniform(bound), key.fold(4), dev)?;
        head.bias = Some(Tensor::random(Dist::Uniform { lo: -bound, hi: bound }, key.fold(5), &[cfg.vocab_size], dev)?);
        Ok(Self {
            cfg: cfg.clone(),
            emb: Embedding::new(cfg.vocab_size, d, 1.0, key.fold(1), dev)?,
            cellular,
            pos: Embedding::new(cfg.ctx_len, d, 1.0, key.fold(2), dev)?,
            layers,
            head,
        })
    }

    fn config(&self) -> &CellularTransformerConfig {
        &self.cfg
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn context_len(&self) -> usize {
        self.cfg.ctx_len
    }

    fn forward(&self, ids: &Ids<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let s = ids.shape();
        super::check_ids_shape("cellular-transformer", s, self.cfg.ctx_len, "position table")?;
        let (b, t, d) = (s[0], s[1], self.cfg.d_model);
        let mut x = self.emb.forward(ids)?;
        if let Some(cell) = &self.cellular {
            let (n, dorg) = (self.cfg.organelles, d / self.cfg.organelles);
            x = cell.forward(&x.reshape(&[b * t, n, dorg])?, ctx)?.reshape(&[b, t, d])?;
        }
        x = x.add(&self.pos.weight.narrow(0, 0, t)?)?;
        for l in &self.layers {
            x = l.forward(&x, ctx)?;
        }
        self.head.forward(&x)
    }
}
