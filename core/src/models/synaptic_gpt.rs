//! The synaptic GPT (seed 003, "Bio-Inspired Nanochat"): the GPT of [`super::gpt`] with
//! presynaptic release in every attention layer and Hebbian fast weights in every MLP.
//!
//! ```text
//! x = wte[ids] + wpe[0..S]
//! per block:  x ← x + attn(LN₁ x),  x ← x + mlp(LN₂ x);   logits = LN_f(x)·wteᵀ
//! attn:  s = q kᵀ/√Dh per head;  (e, mask) = presyn(s)  (crate::synapse, seed or causal)
//!        L = s + mask ⊙ [λ·log(ε + e/(ema + 10⁻⁶))]_{−c}^{c} − β_s (i − j)/N + causal mask
//!        y = softmax(L) v → heads concatenated → output projection
//! mlp:   proj(GELU(fc(x))) with fc, proj SynapticLinear (crate::synapse::post)
//! ```
//!
//! `synapses = off` is exactly the [`super::Gpt`] of the same configuration (same shape,
//! same initialisation under the same seed, same numbers): the ablation baseline.
//! The skeleton is the GPT's (learned positions, GELU, LayerNorm, tied head), not the seed's
//! (RoPE, QK-norm, ReLU², logit soft-cap), so that on/off compares the synapses alone.
//!
//! `ema` is a running mean of `mean|e|` per layer (the seed's normaliser, §1.5): updated in
//! training steps only (staged, committed with the step), read as it stands in evaluation.
use super::{Architecture, LanguageModel, Preset};
use crate::backend::{AttnSpec, Backend};
use crate::error::Result;
use crate::nn::{
    dropout, split_heads, Buffer, Embedding, ForwardCtx, Init, KvCache, LayerCache, LayerNorm, Linear, ParamIds,
};
use crate::rng::RngKey;
use crate::synapse::{self, PresynMode, PresynSpec, SynapseOps, SynapticConfig, SynapticLinear};
use crate::tensor::{Ids, Tensor};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Synaptic GPT hyper-parameters: the GPT's, plus the synapses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynapticGptConfig {
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
    /// Init standard deviation (output projections use `std/√(2·n_layer)`).
    pub init_std: f32,
    /// LayerNorm epsilon.
    pub ln_eps: f32,
    /// Presynaptic dynamics: `off` (plain attention and MLP: the GPT), `seed` (the seed's
    /// single step per call) or `causal` (pools carried along the sequence).
    pub synapses: PresynMode,
    /// Presynaptic and postsynaptic parameters (used unless `synapses` is off).
    #[serde(default)]
    pub synaptic: SynapticConfig,
}

impl Default for SynapticGptConfig {
    /// The seed's measured configuration: depth 4, width 128, 4 heads, context 256, bytes.
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
            init_std: 0.02,
            ln_eps: 1e-5,
            synapses: PresynMode::Causal,
            synaptic: SynapticConfig::default(),
        }
    }
}

impl SynapticGptConfig {
    /// The GPT configuration of the same shape.
    pub fn gpt(&self) -> super::GptConfig {
        super::GptConfig {
            vocab_size: self.vocab_size,
            ctx_len: self.ctx_len,
            n_layer: self.n_layer,
            n_head: self.n_head,
            d_model: self.d_model,
            mlp_mult: self.mlp_mult,
            dropout: self.dropout,
            bias: self.bias,
            tie_embeddings: true,
            init_std: self.init_std,
            ln_eps: self.ln_eps,
        }
    }

    /// Rejects out-of-range values.
    pub fn validate(&self) -> Result<()> {
        self.gpt().validate()?;
        self.synaptic.validate()
    }

    /// The synaptic parameters the layers use (`enable_hebbian` off when synapses are off).
    fn layer_cfg(&self) -> SynapticConfig {
        let mut c = self.synaptic.clone();
        if self.synapses == PresynMode::Off {
            c.enable_hebbian = false;
        }
        c
    }
}

impl Architecture for SynapticGptConfig {
    const ARCH: &'static str = "synaptic-gpt";
    const ABOUT: &'static str =
        "synaptic GPT (seed 003): presynaptic vesicle depletion biasing attention, Hebbian fast weights in the MLP";
    fn presets() -> Vec<Preset<Self>> {
        use crate::recipe::{DataConfig, TrainConfig};
        let seed = SynapticGptConfig::default();
        let run = TrainConfig { batch_size: 4, seq_len: 256, ..TrainConfig::default() };
        alloc::vec![
            Preset {
                name: "default",
                about: "causal synapses, depth 4, width 128, 4 heads, context 256, batch 4 (the seed's measured shape)",
                model: seed.clone(),
                train: run.clone(),
            },
            Preset {
                name: "seed",
                about: "the seed's presynaptic step (fresh state every forward), same shape",
                model: SynapticGptConfig { synapses: PresynMode::Seed, ..seed.clone() },
                train: run.clone(),
            },
            Preset {
                name: "off",
                about: "synapses off: the plain GPT of the same shape (the baseline)",
                model: SynapticGptConfig { synapses: PresynMode::Off, ..seed.clone() },
                train: run.clone(),
            },
            Preset {
                name: "nanochat",
                about: "causal synapses trained by the seed's nanochat recipe: Muon (lr 0.02, momentum 0.85 → 0.95) \
                        on the block matrices, AdamW (β 0.8/0.95, ε 1e-10, no decay) on the rest",
                model: seed.clone(),
                train: TrainConfig {
                    optim: crate::optim::AdamWConfig {
                        beta1: 0.8,
                        beta2: 0.95,
                        eps: 1e-10,
                        weight_decay: 0.0,
                        muon: crate::optim::MuonConfig { enabled: true, ..Default::default() },
                        ..run.optim.clone()
                    },
                    ..run
                },
            },
            Preset {
                name: "tiny",
                about: "depth 2, width 32, 2 heads, context 32, top-8 edges (CI)",
                model: SynapticGptConfig {
                    ctx_len: 32,
                    n_layer: 2,
                    n_head: 2,
                    d_model: 32,
                    synaptic: SynapticConfig { attn_topk: 8, ..SynapticConfig::default() },
                    ..seed
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
    fn forward_flops(&self, tokens: usize, seq: usize) -> Option<f64> {
        Some(self.gpt().forward_flops(tokens, seq))
    }
}

/// Attention with presynaptic release.
#[derive(Debug, Clone)]
pub struct SynapticAttention<B: Backend> {
    /// Packed input projection `[3d, d]`.
    pub qkv: Linear<B>,
    /// Output projection `[d, d]`.
    pub proj: Linear<B>,
    /// Running normaliser of the edge outputs `[1]`.
    pub ema: Buffer<B>,
    n_head: usize,
    layer: usize,
    ctx_len: usize,
    mode: PresynMode,
    cfg: SynapticConfig,
}

crate::module!(SynapticAttention { qkv, proj, ema });

impl<B: Backend + SynapseOps<B>> SynapticAttention<B> {
    /// `x: [B, S, d] → [B, S, d]`.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let s = x.shape();
        let (b, t, d) = (s[0], s[1], s[2]);
        let h = self.n_head;
        let hd = d / h;
        let scale = 1.0 / libm::sqrtf(hd as f32);
        let qkv = self.qkv.forward(x)?.reshape(&[b, t, 3, h, hd])?;
        if self.mode == PresynMode::Off {
            let spec = AttnSpec { causal: true, scale, dropout: None };
            let y = Tensor::self_attention(&qkv, &spec)?;
            return self.proj.forward(&y.reshape(&[b, t, d])?);
        }
        let (q, k, v) = rows(&qkv)?;
        let scores = q.matmul_t(&k, false, true)?.mul_scalar(scale)?;
        let mut spec = PresynSpec::new(&self.cfg, self.mode)?;
        if ctx.train {
            spec = spec.with_noise(ctx.next_key());
        }
        let dev = x.device();
        let state0 = Tensor::<B>::zeros(&[b * h, 0, spec.width()], &dev)?;
        let (e, mask, state) = synapse::presyn(&scores, &state0, &spec)?;
        // the seed's normaliser: mean |e| over every edge slot (B·H·S·min(k, S))
        let slots = (b * h * t * self.cfg.attn_topk.min(t)) as f64;
        let ema_old = self.ema.to_scalar()? as f64;
        let ema = if ctx.train {
            let mean = e.detach().sum_all()?.to_scalar()? as f64 / slots;
            let ema = 0.99 * ema_old + 0.01 * mean.max(1e-3);
            self.ema.stage(Tensor::from_f32(&[ema as f32], &[1], &dev)?);
            ema
        } else {
            ema_old
        };
        let probs = self.mix(&scores, &e, &mask, ema, 0)?;
        let y = probs.matmul(&v)?.reshape(&[b, h, t, hd])?.permute(&[0, 2, 1, 3])?.reshape(&[b, t, d])?;
        if ctx.train {
            vitals(self.layer, &state, ctx)?;
        }
        self.proj.forward(&y)
    }

    /// Incremental [`SynapticAttention::forward`] (evaluation mode) for `x: [B, n, d]` at
    /// positions `pos..pos + n`: keys and values `[B·H, L, Dh]` and the pools of every key
    /// `[B·H, L, W]` are carried in `cache`, so the presynaptic dynamics continue across
    /// decoding calls. In causal mode this equals the full forward over the whole prefix
    /// (the scan is causal); in seed mode it is the seed's decoding (one step per call from
    /// the carried state), which its full forward (fresh state) is not.
    pub fn forward_cached(&self, x: &Tensor<B>, cache: &mut LayerCache<B>, pos: usize) -> Result<Tensor<B>> {
        let s = x.shape();
        let (b, n, d) = (s[0], s[1], s[2]);
        let h = self.n_head;
        let hd = d / h;
        let scale = 1.0 / libm::sqrtf(hd as f32);
        let qkv = self.qkv.forward(x)?.reshape(&[b, n, 3, h, hd])?;
        let (q, k, v) = rows(&qkv)?;
        let (k, v) = cache.append_kv(k, v, 1)?;
        let y = if self.mode == PresynMode::Off {
            Tensor::attention(&q, &k, &v, true, scale)?
        } else {
            let scores = q.matmul_t(&k, false, true)?.mul_scalar(scale)?;
            let spec = PresynSpec::new(&self.cfg, self.mode)?;
            let state0 = match cache.state.take() {
                Some(st) => st,
                None => Tensor::<B>::zeros(&[b * h, 0, spec.width()], &x.device())?,
            };
            let (e, mask, state) = synapse::presyn(&scores, &state0, &spec)?;
            cache.state = Some(state);
            let ema = self.ema.to_scalar()? as f64;
            self.mix(&scores, &e, &mask, ema, pos)?.matmul(&v)?
        };
        self.proj.forward(&y.reshape(&[b, h, n, hd])?.permute(&[0, 2, 1, 3])?.reshape(&[b, n, d])?)
    }

    /// Attention probabilities `softmax(s + bias(e) − barrier + causal mask)` of queries at
    /// positions `pos..pos + n` over keys `0..L` (`scores, e, mask: [R, n, L]`), with the
    /// release bias `mask ⊙ [λ log(ε + e/(ema + 10⁻⁶))]_{−c}^{c}` and the septin barrier
    /// `β_s (i − j)/N`: `N` is the keys of the call in seed mode (the seed normalises by the
    /// current key length, so a token's penalty depends on the context's length) and the
    /// context length otherwise (a fixed function of the distance, so that every position's
    /// output is independent of later tokens and decoding equals the full forward).
    fn mix(&self, scores: &Tensor<B>, e: &Tensor<B>, mask: &Tensor<B>, ema: f64, pos: usize) -> Result<Tensor<B>> {
        let (n, l) = (scores.shape()[1], scores.shape()[2]);
        let c = &self.cfg;
        let lim = if c.loge_bias_clamp > 0.0 { c.loge_bias_clamp as f32 } else { f32::MAX };
        let bias = e
            .mul_scalar((1.0 / (ema + 1e-6)) as f32)?
            .add_scalar(c.epsilon as f32)?
            .log()?
            .mul_scalar(c.lambda_loge as f32)?
            .clamp(-lim, lim)?
            .mul(mask)?;
        let norm = if self.mode == PresynMode::Seed { l } else { self.ctx_len } as f32;
        let beta = c.barrier_strength as f32;
        let mut fixed = Vec::with_capacity(n * l);
        for i in pos..pos + n {
            for j in 0..l {
                fixed.push(if j > i { -1e9 } else { -beta * (i - j) as f32 / norm });
            }
        }
        let fixed = Tensor::from_f32(&fixed, &[n, l], &scores.device())?;
        scores.add(&bias)?.add(&fixed)?.softmax()
    }
}

/// `q`, `k`, `v` of a packed `qkv: [B, S, 3, H, Dh]` as attention rows `[B·H, S, Dh]`.
#[allow(clippy::type_complexity)]
fn rows<B: Backend>(qkv: &Tensor<B>) -> Result<(Tensor<B>, Tensor<B>, Tensor<B>)> {
    let (q, k, v) = split_heads(qkv)?;
    let s = q.shape().to_vec();
    let r = [s[0] * s[1], s[2], s[3]];
    Ok((q.reshape(&r)?, k.reshape(&r)?, v.reshape(&r)?))
}

/// Logs the layer's mean readily-releasable pool, reserve, calcium and energy after the pass.
fn vitals<B: Backend>(layer: usize, state: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<()> {
    use crate::synapse::scalar::idx;
    let w = state.shape()[2];
    if state.numel() == 0 {
        return Ok(());
    }
    let flat = state.reshape(&[state.numel() / w, w])?.mean(0)?.to_vec()?;
    for (name, i) in [("rrp", idx::RRP), ("reserve", idx::RES), ("calcium", idx::C), ("energy", idx::E)] {
        ctx.log(format!("l{layer}.{name}"), flat[i] as f64);
    }
    Ok(())
}

/// The MLP with Hebbian layers: `dropout(proj(GELU(fc(x))))`.
#[derive(Debug, Clone)]
pub struct SynapticMlp<B: Backend> {
    /// `[hidden, d]`.
    pub fc: SynapticLinear<B>,
    /// `[d, hidden]`.
    pub proj: SynapticLinear<B>,
    dropout: f32,
}

crate::module!(SynapticMlp { fc, proj });

/// One pre-norm block.
#[derive(Debug, Clone)]
pub struct SynapticBlock<B: Backend> {
    /// Norm before attention.
    pub ln1: LayerNorm<B>,
    /// Attention.
    pub attn: SynapticAttention<B>,
    /// Norm before the MLP.
    pub ln2: LayerNorm<B>,
    /// MLP.
    pub mlp: SynapticMlp<B>,
    dropout: f32,
}

crate::module!(SynapticBlock { ln1, attn, ln2, mlp });

/// The synaptic GPT.
#[derive(Debug, Clone)]
pub struct SynapticGpt<B: Backend> {
    cfg: SynapticGptConfig,
    /// Token embedding `[V, d]` (also the output head).
    pub wte: Embedding<B>,
    /// Position embedding `[ctx, d]`.
    pub wpe: Embedding<B>,
    /// Blocks.
    pub blocks: Vec<SynapticBlock<B>>,
    /// Final norm.
    pub ln_f: LayerNorm<B>,
    ids: ParamIds,
}

crate::module!(SynapticGpt { wte, wpe, blocks, ln_f });

impl<B: Backend + SynapseOps<B>> LanguageModel<B> for SynapticGpt<B> {
    type Config = SynapticGptConfig;

    /// Initialised exactly as [`super::Gpt`] (the same keys for the same tensors); the
    /// synaptic extras draw from keys of their own.
    fn init(cfg: &SynapticGptConfig, key: RngKey, dev: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let (d, std) = (cfg.d_model, cfg.init_std);
        let proj_std = std / libm::sqrtf(2.0 * cfg.n_layer as f32);
        let lc = cfg.layer_cfg();
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let k = key.fold(100 + i as u64);
            let (ka, km) = (k.fold(1), k.fold(2));
            let hidden = cfg.mlp_mult * d;
            blocks.push(SynapticBlock {
                ln1: LayerNorm::new(d, cfg.ln_eps, dev)?,
                attn: SynapticAttention {
                    qkv: Linear::with_init(d, 3 * d, cfg.bias, Init::Normal(std), ka.fold(1), dev)?,
                    proj: Linear::with_init(d, d, cfg.bias, Init::Normal(proj_std), ka.fold(2), dev)?,
                    ema: Buffer::new(Tensor::ones(&[1], dev)?),
                    n_head: cfg.n_head,
                    layer: i,
                    ctx_len: cfg.ctx_len,
                    mode: cfg.synapses,
                    cfg: cfg.synaptic.clone(),
                },
                ln2: LayerNorm::new(d, cfg.ln_eps, dev)?,
                mlp: SynapticMlp {
                    fc: SynapticLinear::new(d, hidden, cfg.bias, Init::Normal(std), &lc, km.fold(1), dev)?,
                    proj: SynapticLinear::new(hidden, d, cfg.bias, Init::Normal(proj_std), &lc, km.fold(2), dev)?,
                    dropout: cfg.dropout,
                },
                dropout: cfg.dropout,
            });
        }
        Ok(super::adopt(Self {
            cfg: cfg.clone(),
            wte: Embedding::new(cfg.vocab_size, d, std, key.fold(1), dev)?,
            wpe: Embedding::new(cfg.ctx_len, d, std, key.fold(2), dev)?,
            blocks,
            ln_f: LayerNorm::new(d, cfg.ln_eps, dev)?,
            ids: ParamIds::default(),
        }))
    }

    fn config(&self) -> &SynapticGptConfig {
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
        super::check_ids_shape("synaptic-gpt", s, self.cfg.ctx_len, "context length")?;
        let tok = self.wte.forward(ids)?;
        let pos = self.wpe.weight.narrow(0, 0, s[1])?;
        let mut x = dropout(&tok.add(&pos)?, self.cfg.dropout, ctx)?;
        for blk in &self.blocks {
            let a = dropout(&blk.attn.forward(&blk.ln1.forward(&x)?, ctx)?, blk.dropout, ctx)?;
            x = x.add(&a)?;
            let hdn = blk.mlp.fc.forward(&blk.ln2.forward(&x)?, ctx)?.gelu()?;
            let m = dropout(&blk.mlp.proj.forward(&hdn, ctx)?, blk.mlp.dropout, ctx)?;
            x = x.add(&m)?;
        }
        if ctx.train && self.cfg.synapses != PresynMode::Off && self.cfg.synaptic.enable_hebbian {
            for (i, blk) in self.blocks.iter().enumerate() {
                let (a, b) = (blk.mlp.fc.fast_norm()?, blk.mlp.proj.fast_norm()?);
                ctx.log(format!("l{i}.fast_norm"), libm::sqrt(a * a + b * b));
            }
        }
        let x = self.ln_f.forward(&x)?;
        x.matmul_t(&self.wte.weight, false, true)
    }

    /// Keys, values and presynaptic pools are cached per layer (see
    /// [`SynapticAttention::forward_cached`]); the MLPs read their weights and write nothing.
    fn forward_cached(&self, ids: &Ids<B>, cache: &mut KvCache<B>) -> Result<Tensor<B>> {
        cache.extend(Self::ARCH, self.blocks.len(), self.cfg.ctx_len, ids, |cache, pos, n| {
            let ctx = &mut ForwardCtx::eval();
            let mut x = self.wte.forward(ids)?.add(&self.wpe.weight.narrow(0, pos, n)?)?;
            for (blk, lc) in self.blocks.iter().zip(cache.layers.iter_mut()) {
                x = x.add(&blk.attn.forward_cached(&blk.ln1.forward(&x)?, lc, pos)?)?;
                let hdn = blk.mlp.fc.forward(&blk.ln2.forward(&x)?, ctx)?.gelu()?;
                x = x.add(&blk.mlp.proj.forward(&hdn, ctx)?)?;
            }
            self.ln_f.forward(&x)?.matmul_t(&self.wte.weight, false, true)
        })
    }
}
