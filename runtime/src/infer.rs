//! Inference: generation and whole-text evaluation, generic over backend and model, and
//! checkpoint loading behind the object-safe [`InferenceModel`].
use crate::{with_arch, with_device, Device};
use protocell_core::backend::Backend;
use protocell_core::data::{sequential_windows, Tokenizer};
use protocell_core::error::{Error, Result};
use protocell_core::models::LanguageModel;
use protocell_core::nn::{Decoder, ForwardCtx};
use protocell_core::record::Checkpoint;
use protocell_core::rng::{Philox, RngKey};
use protocell_core::train::checkpoint;
use protocell_core::Ids;

/// Token sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Seed of the sampling stream.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: 0, seed: 0 }
    }
}

impl Sampling {
    /// Rejects a negative, non-finite or absurd temperature.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature <= 100.0) {
            return Err(Error::InvalidArgument(format!("temperature {} must be in [0, 100]", self.temperature)));
        }
        Ok(())
    }
}

/// Picks a token from one row of logits.
pub fn sample_token(logits: &[f32], s: &Sampling, rng: &mut Philox) -> Result<u32> {
    if logits.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("the model produced non-finite logits".into()));
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    // descending by logit, ties by index: deterministic
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if s.temperature == 0.0 {
        return Ok(idx[0] as u32);
    }
    if s.top_k > 0 {
        idx.truncate(s.top_k);
    }
    let t = s.temperature as f64;
    let m = logits[idx[0]] as f64;
    let w: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - m) / t).exp()).collect();
    let z: f64 = w.iter().sum();
    let mut u = rng.next_f64() * z;
    for (k, &wk) in w.iter().enumerate() {
        if u < wk {
            return Ok(idx[k] as u32);
        }
        u -= wk;
    }
    Ok(*idx.last().unwrap() as u32)
}

/// Logits of the last position for `ids` (cropped to the context), as a host vector.
pub fn last_logits<B: Backend, M: LanguageModel<B>>(model: &M, ids: &[u32], dev: &B::Device) -> Result<Vec<f32>> {
    if ids.is_empty() {
        return Err(Error::InvalidArgument("need at least one token".into()));
    }
    let ctx = &ids[ids.len().saturating_sub(model.context_len())..];
    let x = Ids::<B>::from_u32(ctx, &[1, ctx.len()], dev)?;
    let logits = model.forward(&x, &mut ForwardCtx::eval())?;
    let v = model.vocab_size();
    logits.narrow(1, ctx.len() - 1, 1)?.reshape(&[v])?.to_vec()
}

/// Appends `n_new` sampled tokens to `prompt`, decoding incrementally (the model's key/value
/// cache: each new token costs the same whatever the context length; beyond the context the
/// window slides by half a context, see [`Decoder`]).
pub fn generate<B: Backend, M: LanguageModel<B>>(
    model: &M,
    prompt: &[u32],
    n_new: usize,
    s: &Sampling,
    dev: &B::Device,
) -> Result<Vec<u32>> {
    s.validate()?;
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= model.vocab_size()) {
        return Err(Error::InvalidArgument(format!(
            "prompt token {bad} is outside the vocabulary of {}",
            model.vocab_size()
        )));
    }
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("need at least one token".into()));
    }
    let mut out = Vec::with_capacity(n_new);
    let mut rng = Philox::new(RngKey::new(s.seed).fold(0x5A3D));
    let mut dec = Decoder::new(model, dev)?;
    let mut logits = if n_new > 0 { dec.feed(prompt)? } else { Vec::new() };
    for i in 0..n_new {
        let t = sample_token(&logits, s, &mut rng)?;
        out.push(t);
        if i + 1 < n_new {
            logits = dec.feed(&[t])?;
        }
    }
    Ok(out)
}

/// Loss of a model on a whole text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalReport {
    /// Predicted tokens.
    pub tokens: usize,
    /// UTF-8 bytes those tokens stand for.
    pub bytes: usize,
    /// Mean cross-entropy in nats per token.
    pub loss: f64,
    /// `e^loss`.
    pub perplexity: f64,
    /// Total nats / ln 2 / bytes.
    pub bits_per_byte: f64,
}

/// Evaluates on `tokens` in consecutive windows of the model's context (every token after
/// the first predicted once), `batch` windows per forward pass.
pub fn evaluate<B: Backend, M: LanguageModel<B>>(
    model: &M,
    tok: &Tokenizer,
    tokens: &[u32],
    batch: usize,
    dev: &B::Device,
) -> Result<EvalReport> {
    if tokens.len() < 2 {
        return Err(Error::Data("evaluation needs at least two tokens".into()));
    }
    let windows = sequential_windows(tokens, model.context_len());
    let mut nats = 0f64;
    let mut count = 0usize;
    let mut bytes = 0usize;
    let mut i = 0;
    while i < windows.len() {
        let seq = windows[i].seq;
        let mut j = i;
        while j < windows.len() && j - i < batch.max(1) && windows[j].seq == seq {
            j += 1;
        }
        let inputs: Vec<u32> = windows[i..j].iter().flat_map(|w| w.inputs.iter().copied()).collect();
        let targets: Vec<u32> = windows[i..j].iter().flat_map(|w| w.targets.iter().copied()).collect();
        let n = j - i;
        let x = Ids::<B>::from_u32(&inputs, &[n, seq], dev)?;
        let y = Ids::<B>::from_u32(&targets, &[n, seq], dev)?;
        let loss = model.loss(&x, &y, &mut ForwardCtx::eval())?.to_scalar()? as f64;
        nats += loss * targets.len() as f64;
        count += targets.len();
        bytes += targets.iter().map(|&t| tok.bytes_of(t)).sum::<usize>();
        i = j;
    }
    let loss = nats / count as f64;
    Ok(EvalReport {
        tokens: count,
        bytes,
        loss,
        perplexity: loss.exp(),
        bits_per_byte: nats / std::f64::consts::LN_2 / bytes as f64,
    })
}

/// A trained model ready for inference, whatever its backend and architecture.
pub trait InferenceModel: Send {
    /// Architecture id.
    fn arch(&self) -> &str;
    /// Tokenizer.
    fn tokenizer(&self) -> &Tokenizer;
    /// Context length.
    fn context_len(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Logits `[batch·seq·V]` for ids `[batch, seq]`.
    fn logits(&self, ids: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>>;
    /// Sampled continuation of `prompt`.
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>>;
    /// Whole-text evaluation.
    fn evaluate(&self, tokens: &[u32], batch: usize) -> Result<EvalReport>;
}

struct Loaded<B: Backend, M> {
    model: M,
    tok: Tokenizer,
    dev: B::Device,
}

impl<B: Backend, M: LanguageModel<B> + Send> InferenceModel for Loaded<B, M>
where
    B::Device: Send,
{
    fn arch(&self) -> &str {
        M::ARCH
    }
    fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }
    fn context_len(&self) -> usize {
        self.model.context_len()
    }
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    fn logits(&self, ids: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        if batch == 0 || seq == 0 || ids.len() != batch * seq {
            return Err(Error::InvalidArgument(format!("{} ids do not form a [{batch}, {seq}] batch", ids.len())));
        }
        let x = Ids::<B>::from_u32(ids, &[batch, seq], &self.dev)?;
        self.model.forward(&x, &mut ForwardCtx::eval())?.to_vec()
    }
    fn generate(&self, prompt: &[u32], n_new: usize, s: &Sampling) -> Result<Vec<u32>> {
        generate::<B, M>(&self.model, prompt, n_new, s, &self.dev)
    }
    fn evaluate(&self, tokens: &[u32], batch: usize) -> Result<EvalReport> {
        evaluate::<B, M>(&self.model, &self.tok, tokens, batch, &self.dev)
    }
}

/// Builds the model of `ckpt` on `device` and loads its weights.
pub fn load_model(ckpt: &Checkpoint, device: Device) -> Result<Box<dyn InferenceModel>> {
    with_device!(device, |B, dev| {
        with_arch!(ckpt.arch.as_str(), B, |M| {
            let model = checkpoint::load_model::<B, M>(ckpt, &dev)?;
            Ok(Box::new(Loaded::<B, M> { model, tok: ckpt.tokenizer.clone(), dev }) as Box<dyn InferenceModel>)
        })
    })
}
