//! Synthetic sequence tasks with a held-out split: associative recall and copy.
//!
//! **Associative recall.** A sequence lists `pairs` key→value pairs, a query marker, then
//! `queries` queries, each an earlier key followed by its value:
//! `k₁ v₁ k₂ v₂ … kₙ vₙ  ▷  q₁ a₁ q₂ a₂ …`. Keys are distinct within a sequence; every sequence
//! draws its own pairing, so recall cannot be memorised in the weights — it has to be read
//! from the context. Token `1` is the marker, keys are `2 .. 2 + keys`, values follow. The
//! scored positions are the queries (their next token is the answer). Training sequences and
//! held-out sequences come from disjoint random streams (unseen pairings).
//!
//! **Copy** (the seed's tuner task): `half` random tokens, then the same tokens again; the
//! scored positions are those of the second copy.
use super::Batch;
use crate::error::{Error, Result};
use crate::rng::{Philox, RngKey};
use alloc::format;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Which split a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training sequences.
    Train,
    /// Held-out sequences (a disjoint random stream).
    HeldOut,
}

impl Split {
    fn stream(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::HeldOut => 2,
        }
    }
}

/// A task's batch: the token batch and, per sequence, the scored input positions.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskBatch {
    /// Inputs and next-token targets `[batch, seq]`.
    pub batch: Batch,
    /// Flat positions (`b·seq + t`) whose target is scored.
    pub scored: Vec<usize>,
}

/// Associative recall.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recall {
    /// Size of the key alphabet.
    pub keys: u32,
    /// Size of the value alphabet.
    pub values: u32,
    /// Key→value pairs per sequence.
    pub pairs: usize,
    /// Queries per sequence.
    pub queries: usize,
}

impl Default for Recall {
    fn default() -> Self {
        Self { keys: 16, values: 16, pairs: 8, queries: 8 }
    }
}

impl Recall {
    /// Tokens the task uses (`2 + keys + values`).
    pub fn vocab(&self) -> usize {
        2 + self.keys as usize + self.values as usize
    }
    /// Input length of a sequence (`2·pairs + 1 + 2·queries − 1`).
    pub fn seq_len(&self) -> usize {
        2 * self.pairs + 2 * self.queries
    }
    /// Rejects an impossible task or one that does not fit `vocab` tokens.
    pub fn validate(&self, vocab: usize) -> Result<()> {
        if self.pairs == 0 || self.queries == 0 || self.keys == 0 || self.values == 0 {
            return Err(Error::Config("recall: keys, values, pairs and queries must be > 0".into()));
        }
        if self.pairs > self.keys as usize {
            return Err(Error::Config(format!("recall: {} distinct keys cannot come from {}", self.pairs, self.keys)));
        }
        if self.vocab() > vocab {
            return Err(Error::Config(format!("recall needs {} tokens, the model has {vocab}", self.vocab())));
        }
        Ok(())
    }

    /// Batch `index` of `split` (`batch` sequences), deterministic in `key`.
    pub fn batch(&self, batch: usize, key: RngKey, split: Split, index: u64) -> TaskBatch {
        let seq = self.seq_len();
        let mut rng = Philox::new(key.fold(split.stream()).fold(index));
        let (mut inputs, mut targets, mut scored) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..batch {
            let mut pool: Vec<u32> = (0..self.keys).collect();
            let mut tokens = Vec::with_capacity(seq + 1);
            let mut pairs = Vec::with_capacity(self.pairs);
            for i in 0..self.pairs {
                let j = i + rng.below((pool.len() - i) as u64) as usize;
                pool.swap(i, j);
                let (k, v) = (2 + pool[i], 2 + self.keys + rng.below(self.values as u64) as u32);
                pairs.push((k, v));
                tokens.extend([k, v]);
            }
            tokens.push(1);
            for _ in 0..self.queries {
                let (k, v) = pairs[rng.below(self.pairs as u64) as usize];
                scored.push(b * seq + tokens.len());
                tokens.extend([k, v]);
            }
            inputs.extend_from_slice(&tokens[..seq]);
            targets.extend_from_slice(&tokens[1..]);
        }
        TaskBatch { batch: Batch { batch, seq, inputs, targets }, scored }
    }
}

/// The seed's copy task: `half` random tokens from `1..vocab`, repeated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// Tokens of each half.
    pub half: usize,
}

impl Copy {
    /// Batch `index` of `split` for a model of `vocab` tokens.
    pub fn batch(&self, vocab: usize, batch: usize, key: RngKey, split: Split, index: u64) -> TaskBatch {
        let seq = 2 * self.half - 1;
        let mut rng = Philox::new(key.fold(10 + split.stream()).fold(index));
        let (mut inputs, mut targets, mut scored) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..batch {
            let half: Vec<u32> = (0..self.half).map(|_| 1 + rng.below(vocab as u64 - 1) as u32).collect();
            let tokens: Vec<u32> = half.iter().chain(&half).copied().collect();
            inputs.extend_from_slice(&tokens[..seq]);
            targets.extend_from_slice(&tokens[1..]);
            scored.extend((self.half - 1..seq).map(|t| b * seq + t));
        }
        TaskBatch { batch: Batch { batch, seq, inputs, targets }, scored }
    }
}

/// Fraction of the scored positions of `tb` where the arg-max of `logits` (`[batch·seq, vocab]`
/// row-major) is the target; returns `(correct, scored)`.
pub fn accuracy(logits: &[f32], vocab: usize, tb: &TaskBatch) -> (usize, usize) {
    let mut correct = 0;
    for &p in &tb.scored {
        let row = &logits[p * vocab..(p + 1) * vocab];
        let best = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        if best as u32 == tb.batch.targets[p] {
            correct += 1;
        }
    }
    (correct, tb.scored.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_sequences_answer_their_queries() {
        let t = Recall { keys: 10, values: 7, pairs: 5, queries: 6 };
        let tb = t.batch(3, RngKey::new(4), Split::Train, 0);
        let seq = t.seq_len();
        assert_eq!(tb.batch.inputs.len(), 3 * seq);
        assert_eq!(tb.scored.len(), 3 * 6);
        for b in 0..3 {
            let x = &tb.batch.inputs[b * seq..(b + 1) * seq];
            let keys: Vec<u32> = (0..5).map(|i| x[2 * i]).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "keys repeat: {keys:?}");
            assert_eq!(x[10], 1, "the marker follows the pairs");
        }
        for &p in &tb.scored {
            let (b, t) = (p / seq, p % seq);
            let x = &tb.batch.inputs[b * seq..(b + 1) * seq];
            let (q, a) = (x[t], tb.batch.targets[p]);
            let i = (0..5).find(|&i| x[2 * i] == q).expect("a query asks for a listed key");
            assert_eq!(a, x[2 * i + 1], "the answer is the key's value");
        }
        let held = t.batch(3, RngKey::new(4), Split::HeldOut, 0);
        assert_ne!(held.batch.inputs, tb.batch.inputs, "held-out sequences come from another stream");
        assert_eq!(t.batch(3, RngKey::new(4), Split::Train, 0), tb, "deterministic");
    }

    #[test]
    fn copy_scores_the_second_half() {
        let c = Copy { half: 4 };
        let tb = c.batch(16, 2, RngKey::new(1), Split::Train, 3);
        for &p in &tb.scored {
            let (b, t) = (p / 7, p % 7);
            let full: Vec<u32> =
                tb.batch.inputs[b * 7..(b + 1) * 7].iter().chain([&tb.batch.targets[b * 7 + 6]]).copied().collect();
            assert_eq!(tb.batch.targets[p], full[t + 1 - 4]);
        }
        assert!(tb.batch.inputs.iter().all(|&x| (1..16).contains(&x)));
    }
}
