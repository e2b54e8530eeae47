//! CellToken (seed 000): every token is a colony of cells with thermodynamic inner dynamics.
//!
//! ```text
//! ids → e = wte[ids] + wpe[0..S]                                   [B, S, d]
//!     → h⁰ = σ(A e + a) as N blocks × (E, P, G, L), W⁰ per mode, stimulus s
//!     → K inner steps of the colony (crate::cell)                  h_K, W_K
//!     → TokenCollapse x⁰ = LN(e + C [h_K ‖ W_K] + c)
//!     → depth × pre-norm transformer block (attention-probability dropout, GELU MLP)
//!     → LN_f → logits = x·wteᵀ (tied)
//! ```
//!
//! The stimulus is `clamp(‖e‖/√d, 0, 1)` per token, shared by all blocks, in the seed modes
//! (as the seed code computes it), and `σ(S e + s₀)` per block in the sound mode, so that it
//! carries token information into each block. The nine colony coefficients are one shared
//! parameter; in the sound mode the model uses `softplus` of it, which keeps every
//! coefficient positive (the seed's ω_d drifted negative in training).
use super::LanguageModel;
use crate::backend::Backend;
use crate::cell::{scalar, CellMode, CellOps, ColonySpec, Pruning, N_COEFFS, SEED_COEFFS};
use crate::error::{Error, Result};
use crate::nn::{Block, Embedding, ForwardCtx, Init, KvCache, LayerNorm, Linear, Mlp, Param, ParamIds, SelfAttention};
use crate::rng::RngKey;
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// CellToken hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellTokenConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub ctx_len: usize,
    /// Model width `d_e`.
    pub d_model: usize,
    /// Blocks per token `N`.
    pub num_blocks: usize,
    /// Inner steps `K`.
    pub inner_steps: usize,
    /// Attention heads of the outer transformer.
    pub n_head: usize,
    /// Outer transformer blocks.
    pub depth: usize,
    /// MLP hidden multiplier.
    pub mlp_mult: usize,
    /// Dropout on attention probabilities and on the MLP output.
    pub dropout: f32,
    /// Colony equations.
    pub mode: CellMode,
    /// Colony step size (sound mode only).
    pub dt: f32,
    /// Sharpness of the smooth bounds (sound mode).
    pub sharpness: f32,
    /// Optional entropy-driven lifespan pruning of blocks.
    pub pruning: Option<Pruning>,
    /// Run the cell path at all (`false`: TokenCollapse returns `LN(e)`, the seed's
    /// "no-inner" ablation; the cell parameters stay and receive no gradient).
    pub cell_path: bool,
    /// Standard deviation of every Linear and Embedding init.
    pub init_std: f32,
    /// LayerNorm epsilon.
    pub ln_eps: f32,
}

impl Default for CellTokenConfig {
    /// The seed's training configuration (`cellular.md` §2.1), in the sound mode, bytes.
    fn default() -> Self {
        Self {
            vocab_size: 256,
            ctx_len: 128,
            d_model: 128,
            num_blocks: 6,
            inner_steps: 5,
            n_head: 4,
            depth: 3,
            mlp_mult: 4,
            dropout: 0.1,
            mode: CellMode::Sound,
            dt: 1.0,
            sharpness: 10.0,
            pruning: None,
            cell_path: true,
            init_std: 0.02,
            ln_eps: 1e-5,
        }
    }
}

impl CellTokenConfig {
    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        let err = |m: alloc::string::String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.ctx_len == 0 || self.d_model == 0 || self.depth == 0 {
            return err("vocab_size, ctx_len, d_model and depth must be > 0".into());
        }
        if self.num_blocks == 0 || self.num_blocks > 64 {
            return err(format!("num_blocks {} must be in 1..=64", self.num_blocks));
        }
        if self.n_head == 0 || self.d_model % self.n_head != 0 {
            return err(format!("d_model {} must be divisible by n_head {}", self.d_model, self.n_head));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.mlp_mult == 0
            || self.init_std.is_nan()
            || self.init_std <= 0.0
            || self.ln_eps.is_nan()
            || self.ln_eps <= 0.0
        {
            return err("mlp_mult, init_std and ln_eps must be > 0".into());
        }
        self.spec().validate()
    }

    /// Matmul FLOPs of one forward pass over `tokens` tokens in sequences of `seq` (the
    /// outer transformer with attention counted in full, the tied head, and the cell path's
    /// projections; the colony's own arithmetic is O(K·N²) per token and not counted).
    pub fn forward_flops(&self, tokens: usize, seq: usize) -> f64 {
        let (d, n, t) = (self.d_model as f64, self.num_blocks as f64, tokens as f64);
        let h = self.mlp_mult as f64 * d;
        let per_layer = 2.0 * t * (4.0 * d * d + 2.0 * d * h) + 4.0 * t * seq as f64 * d;
        let cell = 2.0 * t * d * (4.0 * n + (4.0 * n + n * n) + if self.mode == CellMode::Sound { n } else { 0.0 });
        self.depth as f64 * per_layer + cell + 2.0 * t * d * self.vocab_size as f64
    }

    /// The colony spec of this configuration.
    pub fn spec(&self) -> ColonySpec {
        let mut s = ColonySpec::new(self.mode, self.inner_steps);
        s.dt = self.dt;
        s.sharpness = self.sharpness;
        s.pruning = self.pruning;
        s
    }
}

impl super::Architecture for CellTokenConfig {
    const ARCH: &'static str = "cell-token";
    const ABOUT: &'static str =
        "CellToken (seed 000): tokens as colonies of EPGL cells with mucus rewiring, then a pre-norm transformer";
    fn forward_flops(&self, tokens: usize, seq: usize) -> Option<f64> {
        Some(CellTokenConfig::forward_flops(self, tokens, seq))
    }
    fn presets() -> Vec<super::Preset<Self>> {
        use crate::recipe::{DataConfig, TrainConfig};
        let seed = |name, about, mode| {
            let (model, train) = seed_recipe(mode);
            super::Preset { name, about, model, train }
        };
        alloc::vec![
            super::Preset {
                name: "default",
                about: "sound cell mode, width 128, 6 blocks × 5 inner steps, depth 3, context 128, batch 16, built-in corpus",
                model: CellTokenConfig::default(),
                train: TrainConfig { batch_size: 16, seq_len: 128, steps: 1000, ..TrainConfig::default() },
            },
            seed(
                "seed",
                "the seed's run: as-coded cells, seed corpus (29 characters), 500 steps, AdamW 3e-4 → 1e-5",
                CellMode::AsCoded
            ),
            seed(
                "described",
                "the seed's run with the seed paper's equations (as-described cells)",
                CellMode::AsDescribed
            ),
            super::Preset {
                name: "tiny",
                about: "width 32, 4 blocks × 2 steps, depth 1, context 32 (CI)",
                model: CellTokenConfig {
                    ctx_len: 32,
                    d_model: 32,
                    num_blocks: 4,
                    inner_steps: 2,
                    n_head: 2,
                    depth: 1,
                    ..CellTokenConfig::default()
                },
                train: TrainConfig {
                    steps: 100,
                    batch_size: 8,
                    seq_len: 32,
                    lr: 2e-3,
                    min_lr: 2e-4,
                    warmup: 10,
                    eval_every: 50,
                    eval_batches: 4,
                    data: DataConfig { corpus_bytes: 64 << 10, ..DataConfig::default() },
                    ..TrainConfig::default()
                },
            },
        ]
    }
}

/// The CellToken seed's training recipe (`cellular.md` §2.5) for a cell mode.
fn seed_recipe(mode: CellMode) -> (CellTokenConfig, crate::recipe::TrainConfig) {
    use crate::optim::{AdamWConfig, DecayFilter};
    use crate::recipe::{Corpus, DataConfig, TokenizerKind, TrainConfig};
    let model = CellTokenConfig { mode, vocab_size: 29, ..CellTokenConfig::default() };
    let train = TrainConfig {
        steps: 500,
        batch_size: 16,
        seq_len: 128,
        lr: 3e-4,
        min_lr: 1e-5,
        warmup: 0,
        optim: AdamWConfig { weight_decay: 0.01, decay: DecayFilter::All, ..AdamWConfig::default() },
        eval_every: 50,
        eval_batches: 8,
        checkpoint_every: 0,
        data: DataConfig {
            corpus: Corpus::SeedSentences,
            corpus_bytes: 300,
            tokenizer: TokenizerKind::Chars,
            ..DataConfig::default()
        },
        ..TrainConfig::default()
    };
    (model, train)
}

/// The cell path's parameters.
#[derive(Debug, Clone)]
pub struct CellPath<B: Backend> {
    /// `A`: `d → 4N`, the initial block states.
    pub proj_h: Linear<B>,
    /// The nine colony coefficients (raw; softplus is applied in the sound mode).
    pub coeffs: Param<B>,
    /// `S`: `d → N`, the per-block stimulus (sound mode).
    pub stim: Option<Linear<B>>,
    /// `C`: `4N + N² → d`, the TokenCollapse projection.
    pub collapse: Linear<B>,
    /// TokenCollapse norm.
    pub ln: LayerNorm<B>,
}

/// The CellToken model.
#[derive(Debug, Clone)]
pub struct CellToken<B: Backend> {
    cfg: CellTokenConfig,
    /// Token embedding `[V, d]` (also the output head).
    pub wte: Embedding<B>,
    /// Position embedding `[ctx, d]`.
    pub wpe: Embedding<B>,
    /// Cell path.
    pub cell: CellPath<B>,
    /// Outer transformer.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub ln_f: LayerNorm<B>,
    ids: ParamIds,
}

crate::module!(CellPath { proj_h, coeffs, stim, collapse, ln });
crate::module!(CellToken { wte, wpe, cell, blocks, ln_f });

/// `x` with `softplus(x) = v`: the raw value that makes a softplus-parameterised coefficient start at `v`.
fn inv_softplus(v: f32) -> f32 {
    libm::logf(libm::expm1f(v))
}

impl<B: Backend + CellOps<B>> CellToken<B> {
    /// The colony stage for embeddings `e: [B, S, d]`: returns the TokenCollapse input
    /// `[h_K ‖ W_K]` as `[B, S, 4N + N²]`, logging the alive fraction when pruning.
    fn colony(&self, e: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let c = &self.cfg;
        let (b, s, d) = (e.shape()[0], e.shape()[1], e.shape()[2]);
        let (t, n) = (b * s, c.num_blocks);
        let dev = e.device();
        let h0 = self.cell.proj_h.forward(e)?.sigmoid()?.reshape(&[t, n, 4])?;
        let stim = match &self.cell.stim {
            Some(lin) => lin.forward(e)?.sigmoid()?.reshape(&[t, n])?,
            None => {
                // clamp(‖e‖₂ / √d, 0, 1), one per token, the same for every block
                let norm = e.square()?.sum(2)?.sqrt()?.mul_scalar(1.0 / libm::sqrtf(d as f32))?;
                norm.clamp(0.0, 1.0)?.reshape(&[t, 1])?.expand(&[t, n])?
            }
        };
        let w0 = Tensor::from_f32(&scalar::initial_mucus(c.mode, n), &[1, n, n], &dev)?.expand(&[t, n, n])?;
        let coeffs = match c.mode {
            CellMode::Sound => self.cell.coeffs.unary(crate::backend::Unary::Softplus)?,
            _ => self.cell.coeffs.value().clone(),
        };
        let (h, w, alive) = crate::cell::colony(&h0, &w0, &stim, &coeffs, &c.spec())?;
        if c.pruning.is_some() {
            let a = alive.mean_all()?.to_scalar()? as f64;
            ctx.log("alive_blocks", a);
            // a token is dead when all of its blocks are
            let tokens_alive = alive.max(1)?.mean_all()?.to_scalar()? as f64;
            ctx.log("alive_tokens", tokens_alive);
        }
        Tensor::cat(&[h.reshape(&[b, s, 4 * n])?, w.reshape(&[b, s, n * n])?], 2)
    }
}

impl<B: Backend + CellOps<B>> LanguageModel<B> for CellToken<B> {
    type Config = CellTokenConfig;

    fn init(cfg: &CellTokenConfig, key: RngKey, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let (d, n, std) = (cfg.d_model, cfg.num_blocks, cfg.init_std);
        let raw: Vec<f32> = match cfg.mode {
            CellMode::Sound => SEED_COEFFS.iter().map(|&v| inv_softplus(v)).collect(),
            _ => SEED_COEFFS.to_vec(),
        };
        let cell = CellPath {
            proj_h: Linear::new(d, 4 * n, true, std, key.fold(10), dev)?,
            coeffs: Param::new(Tensor::from_f32(&raw, &[N_COEFFS], dev)?),
            stim: if cfg.mode == CellMode::Sound {
                Some(Linear::new(d, n, true, std, key.fold(11), dev)?)
            } else {
                None
            },
            collapse: Linear::new(4 * n + n * n, d, true, std, key.fold(12), dev)?,
            ln: LayerNorm::new(d, cfg.ln_eps, dev)?,
        };
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let k = key.fold(100 + i as u64);
            // the seed keeps PyTorch's Xavier-uniform init for the packed input projection
            let attn = SelfAttention::new(
                d,
                cfg.n_head,
                true,
                true,
                Init::xavier_uniform(d, 3 * d),
                Init::Normal(std),
                k.fold(1),
                dev,
            )?
            .with_attn_dropout(cfg.dropout)?;
            let mlp =
                Mlp::new(d, cfg.mlp_mult * d, true, cfg.dropout, Init::Normal(std), Init::Normal(std), k.fold(2), dev)?;
            blocks.push(Block {
                ln1: LayerNorm::new(d, cfg.ln_eps, dev)?,
                attn,
                ln2: LayerNorm::new(d, cfg.ln_eps, dev)?,
                mlp,
                resid_dropout: 0.0,
            });
        }
        Ok(super::adopt(Self {
            cfg: cfg.clone(),
            wte: Embedding::new(cfg.vocab_size, d, std, key.fold(1), dev)?,
            wpe: Embedding::new(cfg.ctx_len, d, std, key.fold(2), dev)?,
            cell,
            blocks,
            ln_f: LayerNorm::new(d, cfg.ln_eps, dev)?,
            ids: ParamIds::default(),
        }))
    }

    fn config(&self) -> &CellTokenConfig {
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
        super::check_ids_shape("cell-token", s, self.cfg.ctx_len, "context length")?;
        let e = self.wte.forward(ids)?.add(&self.wpe.weight.narrow(0, 0, s[1])?)?;
        let mut x = if self.cfg.cell_path {
            let feats = self.colony(&e, ctx)?;
            self.cell.ln.forward(&e.add(&self.cell.collapse.forward(&feats)?)?)?
        } else {
            self.cell.ln.forward(&e)?
        };
        for b in &self.blocks {
            x = b.forward(&x, ctx)?;
        }
        self.ln_f.forward(&x)?.matmul_t(&self.wte.weight, false, true)
    }

    /// The colony and the collapse act on each token alone, so only the blocks cache.
    fn forward_cached(&self, ids: &Ids<B>, cache: &mut KvCache<B>) -> Result<Tensor<B>> {
        cache.extend(Self::ARCH, self.blocks.len(), self.cfg.ctx_len, ids, |cache, pos, n| {
            let e = self.wte.forward(ids)?.add(&self.wpe.weight.narrow(0, pos, n)?)?;
            let mut x = if self.cfg.cell_path {
                let feats = self.colony(&e, &mut ForwardCtx::eval())?;
                self.cell.ln.forward(&e.add(&self.cell.collapse.forward(&feats)?)?)?
            } else {
                self.cell.ln.forward(&e)?
            };
            for (b, lc) in self.blocks.iter().zip(cache.layers.iter_mut()) {
                x = b.forward_cached(&x, lc)?;
            }
            self.ln_f.forward(&x)?.matmul_t(&self.wte.weight, false, true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_softplus_roundtrips() {
        for v in SEED_COEFFS {
            let x = inv_softplus(v);
            assert!((crate::math::unary(crate::backend::Unary::Softplus, x) - v).abs() < 1e-6);
        }
    }
}
