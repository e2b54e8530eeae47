//! Tokenizers. Byte-level (vocabulary 256) is the default; a character vocabulary
//! reproduces the seed scripts that index the sorted set of a corpus's characters.
use crate::error::{Error, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// A tokenizer description that travels inside checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tokenizer {
    /// UTF-8 bytes, ids 0–255.
    Bytes,
    /// The given characters, id = position (sorted, unique).
    Chars(CharTokenizer),
}

impl Tokenizer {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Bytes => 256,
            Tokenizer::Chars(c) => c.chars.len(),
        }
    }
    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Bytes => Ok(ByteTokenizer.encode(text)),
            Tokenizer::Chars(c) => c.encode(text),
        }
    }
    /// Text of `ids` (invalid UTF-8 byte sequences become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Bytes => ByteTokenizer.decode(ids),
            Tokenizer::Chars(c) => c.decode(ids),
        }
    }
    /// Bytes of UTF-8 text that token `id` stands for (1 for the byte tokenizer).
    pub fn bytes_of(&self, id: u32) -> usize {
        match self {
            Tokenizer::Bytes => 1,
            Tokenizer::Chars(c) => c.chars.get(id as usize).map_or(1, |ch| ch.len_utf8()),
        }
    }
    /// Short name (`bytes` or `chars(N)`).
    pub fn describe(&self) -> String {
        match self {
            Tokenizer::Bytes => "bytes".into(),
            Tokenizer::Chars(c) => format!("chars({})", c.chars.len()),
        }
    }
}

/// UTF-8 bytes as tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// One id per byte.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    /// Bytes back to text (lossy for invalid UTF-8).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes: Result<Vec<u8>> = ids
            .iter()
            .map(|&i| u8::try_from(i).map_err(|_| Error::InvalidArgument(format!("byte token {i} > 255"))))
            .collect();
        Ok(String::from_utf8_lossy(&bytes?).into_owned())
    }
}

/// A character vocabulary: the sorted set of characters of a corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharTokenizer {
    /// Vocabulary in id order.
    pub chars: Vec<char>,
}

impl CharTokenizer {
    /// The sorted set of characters of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }
    /// Ids of `text`; a character outside the vocabulary is an error.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.chars.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    Error::Data(format!("character {c:?} is not in the {}-character vocabulary", self.chars.len()))
                })
            })
            .collect()
    }
    /// Characters of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .map(|&i| {
                self.chars.get(i as usize).copied().ok_or_else(|| {
                    Error::InvalidArgument(format!("token {i} outside the {}-character vocabulary", self.chars.len()))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        let t = Tokenizer::Bytes;
        let s = "héllo, wörld";
        assert_eq!(t.decode(&t.encode(s).unwrap()).unwrap(), s);
        let c = Tokenizer::Chars(CharTokenizer::from_text("abcab "));
        assert_eq!(c.vocab_size(), 4);
        assert_eq!(c.encode("cab ").unwrap(), alloc::vec![3, 1, 2, 0]);
        assert!(c.encode("z").is_err());
        assert_eq!(c.decode(&[3, 1]).unwrap(), "ca");
    }
}
