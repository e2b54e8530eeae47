//! Reading format version 1 (the layout before parameter identities), for migration.
//!
//! Layout (all integers little-endian): magic `PROTOCEL`, version 1 (u32), header length
//! `h` (u32), postcard header, zeros to a multiple of 64, f32 tensor data (each tensor on a
//! 64-byte boundary), CRC-32 of every byte before it. Tensors are named by path; AdamW
//! moments are `optim.m.<path>` / `optim.v.<path>`.
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::shape;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use super::{align_up, corrupt, Limits, MAGIC};

/// The version this module reads.
pub const FORMAT_VERSION: u32 = 1;

/// Where one tensor lives in the data section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Dotted parameter name (`optim.m.<name>` / `optim.v.<name>` for AdamW moments).
    pub name: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

/// Training metadata as version 1 stored it (frozen: the postcard layout of the v1 header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainMeta {
    /// Completed optimiser steps.
    pub step: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Last training loss.
    pub loss: f64,
    /// Last validation loss, if one was measured.
    pub val_loss: Option<f64>,
    /// Tokens consumed.
    pub tokens_seen: u64,
    /// FNV-1a hash of the serialised run configuration.
    pub config_hash: u64,
    /// FNV-1a hash of the training token stream.
    pub data_hash: u64,
    /// Serialised run configuration (JSON text, written by the runtime).
    pub run_config: String,
}

/// Checkpoint header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Architecture id (`gpt`, `cell-token`, ...).
    pub arch: String,
    /// Model configuration as JSON text (human-readable in `protocell inspect`).
    pub model_config: String,
    /// Tokenizer the model was trained with.
    pub tokenizer: Tokenizer,
    /// Training metadata, if saved by a trainer.
    pub train: Option<TrainMeta>,
    /// Lifecycle / archive state (structural events, lineage), opaque to the container.
    pub lifecycle: Vec<u8>,
    /// Free-form string pairs.
    pub meta: Vec<(String, String)>,
    /// Tensor directory.
    pub tensors: Vec<TensorEntry>,
}

/// A named tensor held on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A decoded (or to-be-encoded) checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Architecture id.
    pub arch: String,
    /// Model configuration (JSON text).
    pub model_config: String,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// Training metadata.
    pub train: Option<TrainMeta>,
    /// Lifecycle state blob.
    pub lifecycle: Vec<u8>,
    /// Free-form metadata.
    pub meta: Vec<(String, String)>,
    /// Tensors in file order.
    pub tensors: Vec<NamedTensor>,
}

impl Checkpoint {
    /// Serialises to the container format.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.tensors.len());
        let mut off = 0usize;
        for t in &self.tensors {
            if t.data.len() != shape::numel(&t.shape) {
                return Err(Error::InvalidArgument(format!(
                    "tensor {} data does not match shape {:?}",
                    t.name, t.shape
                )));
            }
            entries.push(TensorEntry {
                name: t.name.clone(),
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                offset: off as u64,
            });
            off = align_up(off + t.data.len() * 4);
        }
        let header = Header {
            arch: self.arch.clone(),
            model_config: self.model_config.clone(),
            tokenizer: self.tokenizer.clone(),
            train: self.train.clone(),
            lifecycle: self.lifecycle.clone(),
            meta: self.meta.clone(),
            tensors: entries,
        };
        let hb = postcard::to_allocvec(&header).map_err(|e| Error::Checkpoint(format!("cannot encode header: {e}")))?;
        let data_start = align_up(16 + hb.len());
        let mut out = Vec::with_capacity(data_start + off + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
        out.extend_from_slice(&hb);
        out.resize(data_start, 0);
        for t in &self.tensors {
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.resize(align_up(out.len() - data_start) + data_start, 0);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes with the default [`Limits`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_with(bytes, &Limits::default())
    }

    /// Decodes and validates a container; every inconsistency is an [`Error::Checkpoint`].
    pub fn decode_with(bytes: &[u8], lim: &Limits) -> Result<Self> {
        if bytes.len() > lim.max_total_bytes {
            return Err(corrupt(format!("{} bytes exceed the limit of {}", bytes.len(), lim.max_total_bytes)));
        }
        if bytes.len() < 20 {
            return Err(corrupt(format!("{} bytes is too short to be a protocell checkpoint", bytes.len())));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt("not a protocell checkpoint (bad magic bytes)"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version} is not supported (this build reads {FORMAT_VERSION})"
            )));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc_bytes.try_into().unwrap());
        if crc32fast::hash(body) != stored {
            return Err(corrupt("checksum mismatch: the file is truncated or corrupted"));
        }
        let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        if hlen > lim.max_header_bytes || 16 + hlen > body.len() {
            return Err(corrupt(format!("header length {hlen} is out of range")));
        }
        let header: Header =
            postcard::from_bytes(&body[16..16 + hlen]).map_err(|e| corrupt(format!("cannot decode header: {e}")))?;
        if header.tensors.len() > lim.max_tensors {
            return Err(corrupt(format!("{} tensors exceed the limit of {}", header.tensors.len(), lim.max_tensors)));
        }
        let data_start = align_up(16 + hlen);
        if data_start > body.len() {
            return Err(corrupt("data section starts past the end of the file"));
        }
        let data = &body[data_start..];
        let mut tensors = Vec::with_capacity(header.tensors.len());
        let mut names = alloc::collections::BTreeSet::new();
        let mut expected_off = 0usize;
        for e in &header.tensors {
            if e.name.is_empty() || e.name.len() > lim.max_name_len {
                return Err(corrupt(format!("tensor name of length {} is invalid", e.name.len())));
            }
            if !names.insert(e.name.as_str()) {
                return Err(corrupt(format!("tensor {} appears twice", e.name)));
            }
            if e.shape.len() > lim.max_rank {
                return Err(corrupt(format!("tensor {} has rank {} (limit {})", e.name, e.shape.len(), lim.max_rank)));
            }
            let shape: Vec<usize> = e
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| corrupt(format!("tensor {} has a dimension too large", e.name)))
                })
                .collect::<Result<_>>()?;
            let n = shape::checked_numel(&shape)
                .map_err(|_| corrupt(format!("tensor {} shape {shape:?} is too large", e.name)))?;
            let off = usize::try_from(e.offset).map_err(|_| corrupt("offset too large"))?;
            if off != expected_off {
                return Err(corrupt(format!("tensor {} starts at {off}, expected {expected_off}", e.name)));
            }
            let nbytes = n.checked_mul(4).ok_or_else(|| corrupt("tensor too large"))?;
            let end = off.checked_add(nbytes).ok_or_else(|| corrupt("tensor too large"))?;
            if end > data.len() {
                return Err(corrupt(format!("tensor {} runs past the end of the file (truncated?)", e.name)));
            }
            let mut v = Vec::with_capacity(n);
            for c in data[off..end].chunks_exact(4) {
                let x = f32::from_le_bytes(c.try_into().unwrap());
                if !x.is_finite() {
                    return Err(corrupt(format!("tensor {} holds a non-finite value", e.name)));
                }
                v.push(x);
            }
            tensors.push(NamedTensor { name: e.name.clone(), shape, data: v });
            expected_off = align_up(end);
        }
        if expected_off != data.len() {
            return Err(corrupt(format!("{} trailing bytes after the last tensor", data.len() - expected_off)));
        }
        Ok(Self {
            arch: header.arch,
            model_config: header.model_config,
            tokenizer: header.tokenizer,
            train: header.train,
            lifecycle: header.lifecycle,
            meta: header.meta,
            tensors,
        })
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Checkpoint {
        Checkpoint {
            arch: "gpt".into(),
            model_config: "{}".into(),
            tokenizer: Tokenizer::Bytes,
            train: Some(TrainMeta { step: 7, seed: 1, loss: 1.5, ..Default::default() }),
            lifecycle: vec![],
            meta: vec![("k".into(), "v".into())],
            tensors: vec![
                NamedTensor { name: "a".into(), shape: vec![2, 3], data: vec![1., 2., 3., 4., 5., 6.] },
                NamedTensor { name: "b".into(), shape: vec![], data: vec![-1.0] },
                NamedTensor { name: "c".into(), shape: vec![0, 4], data: vec![] },
            ],
        }
    }

    #[test]
    fn roundtrip_and_alignment() {
        let c = sample();
        let bytes = c.encode().unwrap();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        assert_eq!(align_up(16 + hlen) % super::super::ALIGN, 0);
    }

    #[test]
    fn every_truncation_and_flip_is_rejected() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "truncation at {cut} accepted");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(Checkpoint::decode(&b).is_err(), "flip at {i} accepted");
        }
    }
}
