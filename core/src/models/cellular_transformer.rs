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
use crate::nn::{Embedding, ForwardCtx, Init, KvCache, LayerNorm, Linear, Param, ParamIds, SelfAttention};
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

impl super::Architecture for CellularTransformerConfig {
    const ARCH: &'static str = "cellular-transformer";
    const ABOUT: &'static str =
        "Cellular Transformer (seed 001): in-token attention over organelles, then post-norm attention-only layers";
    fn presets() -> Vec<super::Preset<Self>> {
        let preset = |name, about, model| {
            let (model, train) = seed_recipe(model);
            super::Preset { name, about, model, train }
        };
        let (model, mut train) = seed_recipe(CellularTransformerConfig {
            ctx_len: 32,
            d_model: 32,
            organelles: 4,
            organelle_heads: 2,
            macro_layers: 1,
            macro_heads: 4,
            ..Default::default()
        });
        train.steps = 60;
        train.eval_every = 30;
        train.batch_size = 16;
        alloc::vec![
            preset(
                "seed",
                "the seed's cellular model: 8 organelles × 16, 2 macro layers, seed phrases, Adam 2e-3, 5 epochs",
                CellularTransformerConfig::default(),
            ),
            preset(
                "baseline",
                "the seed's baseline: no organelles, 4 macro layers, same data and training",
                CellularTransformerConfig { organelles: 0, macro_layers: 4, ..Default::default() },
            ),
            super::Preset { name: "tiny", about: "width 32, 4 organelles, 1 macro layer (CI)", model, train },
        ]
    }
}

/// The Cellular Transformer seed's recipe (`cellular.md` §3.6): Adam 2e-3, constant rate, no
/// weight decay or clipping, batches of 64 windows of 32, 5 epochs. The held-out tail (10 %)
/// is extra: 22,222 characters leave the seed's 20,000 for training.
fn seed_recipe(model: CellularTransformerConfig) -> (CellularTransformerConfig, crate::recipe::TrainConfig) {
    use crate::optim::AdamWConfig;
    use crate::recipe::{Corpus, DataConfig, SamplingKind, TokenizerKind, TrainConfig};
    let data = DataConfig {
        corpus: Corpus::SeedPhrases,
        corpus_bytes: 22_222,
        tokenizer: TokenizerKind::Chars,
        ..DataConfig::default()
    };
    let epochs = 5 * crate::data::steps_per_epoch(20_000, 64, 32);
    let train = TrainConfig {
        steps: epochs,
        batch_size: 64,
        seq_len: 32,
        lr: 2e-3,
        min_lr: 2e-3,
        warmup: 0,
        optim: AdamWConfig { weight_decay: 0.0, grad_clip: 0.0, ..AdamWConfig::default() },
        eval_every: epochs / 5,
        eval_batches: 8,
        checkpoint_every: 0,
        sampling: SamplingKind::Epochs,
        data,
        ..TrainConfig::default()
    };
    (CellularTransformerConfig { vocab_size: 22, ..model }, train)
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
    ids: ParamIds,
}

crate::module!(PostNormAttention { attn, ln });
crate::module!(CellularTransformer { emb, cellular, pos, layers => "macro", head });

impl<B: Backend> LanguageModel<B> for CellularTransformer<B> {
    type Config = CellularTransformerConfig;

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
        head.bias = Some(Param::new(Tensor::random(
            Dist::Uniform { lo: -bound, hi: bound },
            key.fold(5),
            &[cfg.vocab_size],
            dev,
        )?));
        Ok(super::adopt(Self {
            cfg: cfg.clone(),
            emb: Embedding::new(cfg.vocab_size, d, 1.0, key.fold(1), dev)?,
            cellular,
            pos: Embedding::new(cfg.ctx_len, d, 1.0, key.fold(2), dev)?,
            layers,
            head,
            ids: ParamIds::default(),
        }))
    }

    fn config(&self) -> &CellularTransformerConfig {
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

    /// The organelle attention acts within each token, so only the macro layers cache.
    fn forward_cached(&self, ids: &Ids<B>, cache: &mut KvCache<B>) -> Result<Tensor<B>> {
        cache.extend(Self::ARCH, self.layers.len(), self.cfg.ctx_len, ids, |cache, pos, t| {
            let (b, d) = (ids.shape()[0], self.cfg.d_model);
            let mut x = self.emb.forward(ids)?;
            if let Some(cell) = &self.cellular {
                let (n, dorg) = (self.cfg.organelles, d / self.cfg.organelles);
                x = cell.forward(&x.reshape(&[b * t, n, dorg])?, &mut ForwardCtx::eval())?.reshape(&[b, t, d])?;
            }
            x = x.add(&self.pos.weight.narrow(0, pos, t)?)?;
            for (l, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
                x = l.ln.forward(&x.add(&l.attn.forward_cached(&x, lc)?)?)?;
            }
            self.head.forward(&x)
        })
    }
}
