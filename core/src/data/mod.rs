//! Text data: tokenizers, a built-in synthetic corpus, and deterministic batching.
mod corpus;
pub mod tasks;
mod tokenizer;

pub use corpus::{phrase_process_floor, seed_phrases, seed_sentences, synthetic_corpus, SEED_PHRASES, SEED_SENTENCES};
pub use tokenizer::{ByteTokenizer, CharTokenizer, Tokenizer};

use crate::error::{Error, Result};
use crate::rng::{Philox, RngKey};
use alloc::format;
use alloc::vec::Vec;

/// A tokenised text split into a training part and a held-out validation tail.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSplit {
    /// Training tokens (the first `1 − val_fraction` of the text).
    pub train: Vec<u32>,
    /// Validation tokens (the rest).
    pub val: Vec<u32>,
}

impl TokenSplit {
    /// Splits `tokens` at `⌊len·(1 − val_fraction)⌋`; both parts must hold at least
    /// `seq + 1` tokens so that one full window fits.
    pub fn new(tokens: &[u32], val_fraction: f64, seq: usize) -> Result<Self> {
        if !(0.0..1.0).contains(&val_fraction) || val_fraction <= 0.0 {
            return Err(Error::Config(format!("val_fraction {val_fraction} must be in (0, 1)")));
        }
        let cut = ((tokens.len() as f64) * (1.0 - val_fraction)) as usize;
        let (train, val) = tokens.split_at(cut);
        let need = seq + 1;
        if train.len() < need || val.len() < need {
            let min_total = libm::ceil(need as f64 / val_fraction.min(1.0 - val_fraction)) as usize;
            return Err(Error::Data(format!(
                "text too short: {} tokens give {} training and {} validation tokens, but each part needs at \
                 least seq_len + 1 = {need} (at least {min_total} tokens in all)",
                tokens.len(),
                train.len(),
                val.len()
            )));
        }
        Ok(Self { train: train.to_vec(), val: val.to_vec() })
    }
}

/// One batch of next-token windows: `inputs[b, t] = text[o_b + t]`, `targets[b, t] = text[o_b + t + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Batch size.
    pub batch: usize,
    /// Window length.
    pub seq: usize,
    /// `[batch · seq]` input ids, row-major.
    pub inputs: Vec<u32>,
    /// `[batch · seq]` target ids.
    pub targets: Vec<u32>,
}

fn window(text: &[u32], offsets: &[usize], seq: usize) -> Batch {
    let mut inputs = Vec::with_capacity(offsets.len() * seq);
    let mut targets = Vec::with_capacity(offsets.len() * seq);
    for &o in offsets {
        inputs.extend_from_slice(&text[o..o + seq]);
        targets.extend_from_slice(&text[o + 1..o + seq + 1]);
    }
    Batch { batch: offsets.len(), seq, inputs, targets }
}

/// Training batch of step `step`: `batch` window offsets drawn uniformly (with replacement)
/// from `[0, len − seq − 1]` by the stream `key.fold(step)`. A pure function of
/// `(key, step)`, so a resumed run sees exactly the batches it would have seen.
pub fn train_batch(text: &[u32], batch: usize, seq: usize, key: RngKey, step: u64) -> Result<Batch> {
    if text.len() < seq + 1 {
        return Err(Error::Data(format!("{} tokens cannot hold a window of {seq} + 1", text.len())));
    }
    let span = (text.len() - seq) as u64;
    let mut rng = Philox::new(key.fold(step));
    let offsets: Vec<usize> = (0..batch).map(|_| rng.below(span) as usize).collect();
    Ok(window(text, &offsets, seq))
}

/// Training batch of step `step` drawn epoch by epoch: every window start in `0..=len − seq − 1`
/// appears once per epoch, in the order of a Fisher–Yates permutation drawn from
/// `key.fold(epoch)`; batch `k` holds global samples `k·batch .. (k+1)·batch` (an epoch
/// boundary may fall inside a batch). A pure function of `(key, step)`; the permutation of
/// the current epoch is cached in `cache`.
pub fn epoch_batch(
    text: &[u32],
    batch: usize,
    seq: usize,
    key: RngKey,
    step: u64,
    cache: &mut Option<(u64, Vec<u32>)>,
) -> Result<Batch> {
    if text.len() < seq + 1 {
        return Err(Error::Data(format!("{} tokens cannot hold a window of {seq} + 1", text.len())));
    }
    let windows = (text.len() - seq) as u64;
    let mut offsets = Vec::with_capacity(batch);
    for b in 0..batch as u64 {
        let g = step * batch as u64 + b;
        let (epoch, pos) = (g / windows, (g % windows) as usize);
        if cache.as_ref().map(|c| c.0) != Some(epoch) {
            let mut perm: Vec<u32> = (0..windows as u32).collect();
            let mut rng = Philox::new(key.fold(epoch));
            for i in (1..perm.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                perm.swap(i, j);
            }
            *cache = Some((epoch, perm));
        }
        offsets.push(cache.as_ref().unwrap().1[pos] as usize);
    }
    Ok(window(text, &offsets, seq))
}

/// Steps in one epoch of [`epoch_batch`] (the last batch of an epoch may reach into the next).
pub fn steps_per_epoch(text_len: usize, batch: usize, seq: usize) -> u64 {
    (text_len.saturating_sub(seq) as u64).div_ceil(batch.max(1) as u64)
}

/// Fixed validation batches: `n_batches · batch` windows at evenly spaced offsets over `text`.
pub fn eval_batches(text: &[u32], batch: usize, seq: usize, n_batches: usize) -> Result<Vec<Batch>> {
    if text.len() < seq + 1 {
        return Err(Error::Data(format!("{} validation tokens cannot hold a window of {seq} + 1", text.len())));
    }
    let span = text.len() - seq - 1;
    let total = (n_batches * batch).max(1);
    let offsets: Vec<usize> = (0..total).map(|i| if total == 1 { 0 } else { i * span / (total - 1) }).collect();
    Ok(offsets.chunks(batch).map(|c| window(text, c, seq)).collect())
}

/// Consecutive non-overlapping windows covering `text` (the last one may be shorter):
/// every token after the first is predicted exactly once. Used for whole-file evaluation.
pub fn sequential_windows(text: &[u32], seq: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < text.len() {
        let len = seq.min(text.len() - 1 - start);
        out.push(window(text, &[start], len));
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_shifted_windows_and_deterministic() {
        let text: Vec<u32> = (0..100).collect();
        let b = train_batch(&text, 4, 8, RngKey::new(1), 3).unwrap();
        for r in 0..4 {
            for t in 0..8 {
                assert_eq!(b.targets[r * 8 + t], b.inputs[r * 8 + t] + 1);
            }
        }
        assert_eq!(b, train_batch(&text, 4, 8, RngKey::new(1), 3).unwrap());
        assert_ne!(b, train_batch(&text, 4, 8, RngKey::new(1), 4).unwrap());
    }

    #[test]
    fn epochs_visit_every_window_once() {
        let text: Vec<u32> = (0..40).collect();
        let mut cache = None;
        let mut seen = alloc::vec![0u32; 40 - 8];
        let steps = steps_per_epoch(40, 4, 8);
        assert_eq!(steps, 8);
        for step in 0..steps {
            let b = epoch_batch(&text, 4, 8, RngKey::new(2), step, &mut cache).unwrap();
            for r in 0..4 {
                seen[b.inputs[r * 8] as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        // pure in (key, step): a fresh cache gives the same batch
        let a = epoch_batch(&text, 4, 8, RngKey::new(2), 11, &mut None).unwrap();
        assert_eq!(a, epoch_batch(&text, 4, 8, RngKey::new(2), 11, &mut cache).unwrap());
    }

    #[test]
    fn split_rejects_short_text() {
        let t: Vec<u32> = (0..20).collect();
        assert!(TokenSplit::new(&t, 0.1, 8).is_err());
        assert!(TokenSplit::new(&(0..200).collect::<Vec<u32>>(), 0.1, 8).is_ok());
    }

    #[test]
    fn sequential_windows_cover_text_once() {
        let text: Vec<u32> = (0..23).collect();
        let w = sequential_windows(&text, 5);
        let predicted: usize = w.iter().map(|b| b.targets.len()).sum();
        assert_eq!(predicted, 22);
        assert_eq!(w.last().unwrap().targets.last(), Some(&22));
    }
}
