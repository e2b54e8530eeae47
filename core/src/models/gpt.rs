//! The baseline: a pre-norm decoder-only transformer (GPT-2 style).
//!
//! `x = wte[ids] + wpe[0..S]`; per block `x ← x + attn(LN₁(x))`, `x ← x + mlp(LN₂(x))`;
//! logits `= LN_f(x)·wteᵀ` (tied) or a separate head.
use super::LanguageModel;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::nn::{
    dropout, Block, Embedding, ForwardCtx, Init, KvCache, LayerNorm, Linear, Mlp, ParamIds, SelfAttention,
};
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// GPT hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length (positions).
    pub ctx_len: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Model width.
    pub d_model: usize,
    /// MLP hidden width multiplier.
    pub mlp_mult: usize,
    /// Dropout on embeddings, attention output and MLP output.
    pub dropout: f32,
    /// Biases in linear layers.
    pub bias: bool,
    /// Tie the output head to the token embedding.
    pub tie_embeddings: bool,
    /// Init standard deviation (output projections use `std/√(2·n_layer)`).
    pub init_std: f32,
    /// LayerNorm epsilon.
    pub ln_eps: f32,
}

impl Default for GptConfig {
    /// The benchmark configuration: depth 4, width 128, 4 heads, context 256, bytes.
    fn default() -> Self {
        Self {
            vocab_size: 256,
            ctx_len: 256,
            n_layer: 4,
            n_head: 4,
            d_model: 128,
            mlp_mult: 4,
            dropout: 0.0,
            bias: true,
            tie_embeddings: true,
            init_std: 0.02,
            ln_eps: 1e-5,
        }
    }
}

impl GptConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let err = |m: alloc::string::String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.vocab_size > (1 << 24) {
            return err(format!("vocab_size {} must be in 1..=16777216", self.vocab_size));
        }
        if self.ctx_len == 0 || self.ctx_len > (1 << 20) {
            return err(format!("ctx_len {} must be in 1..=1048576", self.ctx_len));
        }
        if self.n_layer == 0 || self.n_layer > 1024 {
            return err(format!("n_layer {} must be in 1..=1024", self.n_layer));
        }
        if self.d_model == 0 || self.d_model > 65536 {
            return err(format!("d_model {} must be in 1..=65536", self.d_model));
        }
        if self.n_head == 0 || self.d_model % self.n_head != 0 {
            return err(format!("d_model {} must be divisible by n_head {}", self.d_model, self.n_head));
        }
        if self.mlp_mult == 0 || self.mlp_mult > 64 {
            return err(format!("mlp_mult {} must be in 1..=64", self.mlp_mult));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if !(self.init_std > 0.0 && self.init_std < 10.0) {
            return err(format!("init_std {} must be in (0, 10)", self.init_std));
        }
        if !(self.ln_eps > 0.0 && self.ln_eps < 1.0) {
            return err(format!("ln_eps {} must be in (0, 1)", self.ln_eps));
        }
        Ok(())
    }

    /// Matmul FLOPs of one forward pass over `tokens` tokens in sequences of `seq`
    /// (2·m·n·k per product, causal attention counted in full as the reference does).
    pub fn forward_flops(&self, tokens: usize, seq: usize) -> f64 {
        let d = self.d_model as f64;
        let n = tokens as f64;
        let h = (self.mlp_mult as f64) * d;
        let per_layer = 2.0 * n * (3.0 * d * d + d * d + 2.0 * d * h) + 2.0 * 2.0 * n * seq as f64 * d;
        self.n_layer as f64 * per_layer + 2.0 * n * d * self.vocab_size as f64
    }
}

impl super::Architecture for GptConfig {
    const ARCH: &'static str = "gpt";
    const ABOUT: &'static str = "baseline pre-norm decoder-only transformer (GPT-2 style, byte-level)";
    fn forward_flops(&self, tokens: usize, seq: usize) -> Option<f64> {
        Some(GptConfig::forward_flops(self, tokens, seq))
    }
    fn presets() -> Vec<super::Preset<Self>> {
        use crate::recipe::{DataConfig, TrainConfig};
        alloc::vec![
            super::Preset {
                name: "bench",
                about: "depth 4, width 128, 4 heads, context 256, batch 4 (the benchmark configuration)",
                model: GptConfig::default(),
                train: TrainConfig::default(),
            },
            super::Preset {
                name: "tiny",
                about: "depth 2, width 64, 2 heads, context 64, batch 8, 200 steps (seconds on a laptop; CI)",
                model: GptConfig { ctx_len: 64, n_layer: 2, n_head: 2, d_model: 64, ..GptConfig::default() },
                train: TrainConfig {
                    steps: 200,
                    batch_size: 8,
                    seq_len: 64,
                    lr: 2e-3,
                    min_lr: 2e-4,
                    warmup: 20,
                    eval_every: 50,
                    eval_batches: 4,
                    data: DataConfig { corpus_bytes: 256 << 10, ..Default::default() },
                    ..TrainConfig::default()
                },
            },
        ]
    }
}

/// The GPT model.
#[derive(Debug, Clone)]
pub struct Gpt<B: Backend> {
    cfg: GptConfig,
    /// Token embedding `[V, d]`.
    pub wte: Embedding<B>,
    /// Position embedding `[ctx, d]`.
    pub wpe: Embedding<B>,
    /// Blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub ln_f: LayerNorm<B>,
    /// Untied output head `[V, d]` (when `tie_embeddings` is off).
    pub head: Option<Linear<B>>,
    ids: ParamIds,
}

crate::module!(Gpt { wte, wpe, blocks, ln_f, head });

impl<B: Backend> LanguageModel<B> for Gpt<B> {
    type Config = GptConfig;

    fn init(cfg: &GptConfig, key: RngKey, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.d_model;
        let std = cfg.init_std;
        let proj_std = std / libm::sqrtf(2.0 * cfg.n_layer as f32);
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let k = key.fold(100 + i as u64);
            blocks.push(Block {
                ln1: LayerNorm::new(d, cfg.ln_eps, dev)?,
                attn: SelfAttention::new(
                    d,
                    cfg.n_head,
                    true,
                    cfg.bias,
                    Init::Normal(std),
                    Init::Normal(proj_std),
                    k.fold(1),
                    dev,
                )?,
                ln2: LayerNorm::new(d, cfg.ln_eps, dev)?,
                mlp: Mlp::new(
                    d,
                    cfg.mlp_mult * d,
                    cfg.bias,
                    cfg.dropout,
                    Init::Normal(std),
                    Init::Normal(proj_std),
                    k.fold(2),
                    dev,
                )?,
                resid_dropout: cfg.dropout,
            });
        }
        Ok(super::adopt(Self {
            cfg: cfg.clone(),
            wte: Embedding::new(cfg.vocab_size, d, std, key.fold(1), dev)?,
            wpe: Embedding::new(cfg.ctx_len, d, std, key.fold(2), dev)?,
            blocks,
            ln_f: LayerNorm::new(d, cfg.ln_eps, dev)?,
            head: if cfg.tie_embeddings {
                None
            } else {
                Some(Linear::new(d, cfg.vocab_size, false, std, key.fold(3), dev)?)
            },
            ids: ParamIds::default(),
        }))
    }

    fn config(&self) -> &GptConfig {
        &self.cfg
    }
    fn param_ids(&self) -> &ParamIds {
        &self.ids
    }
    fn param_ids_mut(&mut self) -> &mut ParamIds {
        &mut self.ids
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn context_len(&self) -> usize {
        self.cfg.ctx_len
    }

    fn forward(&self, ids: &Ids<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let s = ids.shape();
        super::check_ids_shape("gpt", s, self.cfg.ctx_len, "context length")?;
        let tok = self.wte.forward(ids)?;
        let pos = self.wpe.weight.narrow(0, 0, s[1])?;
        let mut x = dropout(&tok.add(&pos)?, self.cfg.dropout, ctx)?;
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        self.logits(&x)
    }

    fn forward_cached(&self, ids: &Ids<B>, cache: &mut KvCache<B>) -> Result<Tensor<B>> {
        cache.extend(Self::ARCH, self.blocks.len(), self.cfg.ctx_len, ids, |cache, pos, n| {
            let mut x = self.wte.forward(ids)?.add(&self.wpe.weight.narrow(0, pos, n)?)?;
            for (b, lc) in self.blocks.iter().zip(cache.layers.iter_mut()) {
                x = b.forward_cached(&x, lc)?;
            }
            self.logits(&x)
        })
    }
}

impl<B: Backend> Gpt<B> {
    /// `LN_f(x)·wteᵀ` (tied) or the head.
    fn logits(&self, x: &Tensor<B>) -> Result<Tensor<B>> {
        let x = self.ln_f.forward(x)?;
        match &self.head {
            Some(h) => h.forward(&x),
            None => x.matmul_t(&self.wte.weight, false, true),
        }
    }
}
