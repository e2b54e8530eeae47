//! Loading training text into a tokenised train/validation split.
use crate::config::{Corpus, DataConfig, TokenizerKind};
use protocell_core::data::{seed_phrases, seed_sentences, synthetic_corpus, CharTokenizer, TokenSplit, Tokenizer};
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

/// The text the config names (a file, or a built-in corpus) and a description of it.
pub fn text(cfg: &DataConfig) -> Result<(String, String)> {
    Ok(match (&cfg.path, cfg.corpus) {
        (Some(p), _) => (crate::io::read_text(Path::new(p))?, p.clone()),
        (None, Corpus::Synthetic) => (
            synthetic_corpus(cfg.corpus_seed, cfg.corpus_bytes),
            format!("built-in corpus (seed {}, {} bytes)", cfg.corpus_seed, cfg.corpus_bytes),
        ),
        (None, Corpus::SeedSentences) => {
            (seed_sentences(cfg.corpus_bytes), format!("seed corpus (five sentences × {})", cfg.corpus_bytes))
        }
        (None, Corpus::SeedPhrases) => (
            seed_phrases(cfg.corpus_seed, cfg.corpus_bytes),
            format!("seed phrases (seed {}, {} characters)", cfg.corpus_seed, cfg.corpus_bytes),
        ),
    })
}

/// Loads and tokenises the text the config names.
pub fn load(cfg: &DataConfig, seq_len: usize) -> Result<Dataset> {
    let (text, source) = text(cfg)?;
    let tokenizer = match cfg.tokenizer {
        TokenizerKind::Bytes => Tokenizer::Bytes,
        TokenizerKind::Chars => Tokenizer::Chars(CharTokenizer::from_text(&text)),
    };
    let tokens = tokenizer.encode(&text)?;
    let hash = fnv1a(tokens.iter().flat_map(|t| t.to_le_bytes()));
    let split = TokenSplit::new(&tokens, cfg.val_fraction, seq_len)?;
    Ok(Dataset { tokenizer, split, hash, source })
}
