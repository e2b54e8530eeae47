//! Loading training text into a tokenised train/validation split.
use crate::config::DataConfig;
use protocell_core::data::{synthetic_corpus, TokenSplit, Tokenizer};
use protocell_core::error::Result;
use protocell_core::record::fnv1a;
use std::path::Path;

/// A tokenised text, split, with its fingerprint.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Tokenizer used.
    pub tokenizer: Tokenizer,
    /// Train / validation tokens.
    pub split: TokenSplit,
    /// FNV-1a hash of the whole token stream (checked on resume).
    pub hash: u64,
    /// Human-readable origin.
    pub source: String,
}

/// Loads the text the config names (a file, or the built-in corpus) with the byte tokenizer.
pub fn load(cfg: &DataConfig, seq_len: usize) -> Result<Dataset> {
    let (text, source) = match &cfg.path {
        Some(p) => (crate::io::read_text(Path::new(p))?, p.clone()),
        None => (
            synthetic_corpus(cfg.corpus_seed, cfg.corpus_bytes),
            format!("built-in corpus (seed {}, {} bytes)", cfg.corpus_seed, cfg.corpus_bytes),
        ),
    };
    let tokenizer = Tokenizer::Bytes;
    let tokens = tokenizer.encode(&text)?;
    let hash = fnv1a(tokens.iter().flat_map(|t| t.to_le_bytes()));
    let split = TokenSplit::new(&tokens, cfg.val_fraction, seq_len)?;
    Ok(Dataset { tokenizer, split, hash, source })
}
