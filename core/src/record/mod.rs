//! Checkpoints: one self-describing container for parameters (with their identities),
//! optimiser state, model and training configuration, tokenizer, lifecycle state and
//! training metadata.
//!
//! Format version 2 (all integers little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `PROTOCEL` |
//! | 4 | major version (u32) = 2 |
//! | 4 | minor version (u32) |
//! | 4 | header length `h` (u32) |
//! | h | header: postcard-encoded `Header` (architecture, model configuration, tokenizer, free-form metadata, the tensor table, the sections) |
//! | pad | zeros up to a multiple of 64 |
//! | … | tensor data, little-endian in each tensor's dtype, each tensor starting on a 64-byte boundary |
//! | 4 | CRC-32 of every byte before it |
//!
//! The **tensor table** lists every tensor: id (the [`ParamId`](crate::nn::ParamId) of the
//! parameter it belongs to, when it belongs to one), path, shape, dtype (f32, u32, i64, u64),
//! [`Role`] and offset. Only [`Role::Archive`] tensors may hold non-finite values (an empty
//! archive niche is −∞). **Sections** carry everything else, each named and versioned:
//! `train` (training metadata), `model` (the parameter-id counter), `optim` (the optimiser
//! record), `lifecycle` (lineage and ledger). A section is *required* or *optional*: a reader
//! skips optional sections it does not know, so a file of a newer minor version loads in an
//! older build, and refuses a required one it does not know. New minor versions add
//! sections, never header fields.
//!
//! Version 1 files (no ids, moments named `optim.m.<path>`) still load: [`Checkpoint::decode`]
//! migrates them (see [`v1`]).
//!
//! Decoding works on a byte slice (no I/O, no_std) and is hardened against hostile input:
//! every length, count, offset, shape and dtype is checked against [`Limits`] and the buffer
//! before it is used, no allocation exceeds what the file's length justifies, and the CRC
//! catches truncation and bit flips. Lookups by path or by (role, id) go through indices, not
//! scans.
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::shape;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod v1;

/// File magic.
pub const MAGIC: [u8; 8] = *b"PROTOCEL";
/// Major format version written.
pub const FORMAT_VERSION: u32 = 2;
/// Minor format version written (sections added in later minors are skipped by older readers).
pub const FORMAT_MINOR: u32 = 0;
/// Alignment of the data section and of each tensor, in bytes.
pub const ALIGN: usize = 64;

/// Hard limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest header.
    pub max_header_bytes: usize,
    /// Most tensors.
    pub max_tensors: usize,
    /// Largest total checkpoint, in bytes.
    pub max_total_bytes: usize,
    /// Highest tensor rank.
    pub max_rank: usize,
    /// Longest tensor path.
    pub max_name_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 << 20,
            max_tensors: 1 << 20,
            max_total_bytes: usize::MAX,
            max_rank: 8,
            max_name_len: 1024,
        }
    }
}

pub(crate) fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

pub(crate) fn corrupt(msg: impl Into<String>) -> Error {
    Error::Checkpoint(msg.into())
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit unsigned integer.
    U64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::I64 | DType::U64 => 8,
        }
    }
}

/// What a stored tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// A trainable parameter (id = its [`ParamId`](crate::nn::ParamId)).
    Param,
    /// AdamW first moment of the parameter with the same id.
    OptimM,
    /// AdamW second moment of the parameter with the same id.
    OptimV,
    /// Model state that is not trained (running statistics, pools, masks).
    Buffer,
    /// Archive contents (elites, fitness); the only role that may hold ±∞ or NaN.
    Archive,
}

impl Role {
    /// True for roles whose values may be non-finite.
    pub fn allows_non_finite(self) -> bool {
        self == Role::Archive
    }
}

/// Values of a stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 32-bit unsigned integers.
    U32(Vec<u32>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
    /// 64-bit unsigned integers.
    U64(Vec<u64>),
}

impl TensorData {
    /// Its dtype.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::U32(_) => DType::U32,
            TensorData::I64(_) => DType::I64,
            TensorData::U64(_) => DType::U64,
        }
    }
    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U64(v) => v.len(),
        }
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The floats, if this is f32 data.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        match self {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
    fn read_le(dtype: DType, bytes: &[u8]) -> Self {
        match dtype {
            DType::F32 => TensorData::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(le(c))).collect()),
            DType::U32 => TensorData::U32(bytes.chunks_exact(4).map(|c| u32::from_le_bytes(le(c))).collect()),
            DType::I64 => TensorData::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(le(c))).collect()),
            DType::U64 => TensorData::U64(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(le(c))).collect()),
        }
    }
}

fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

/// One stored tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRecord {
    /// The id of the parameter it belongs to (`None` for tensors of no parameter, and for
    /// parameters of a migrated version-1 file, whose ids the model assigns on load).
    pub id: Option<u64>,
    /// Dotted path (the parameter's path for its moments too).
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// What it is.
    pub role: Role,
    /// Values.
    pub data: TensorData,
}

impl TensorRecord {
    /// An f32 tensor.
    pub fn f32(role: Role, id: Option<u64>, path: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { id, path: path.into(), shape, role, data: TensorData::F32(data) }
    }
}

/// A named, versioned blob: everything beyond the tensor table lives in sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Name (`train`, `model`, `optim`, `lifecycle`, …).
    pub name: String,
    /// Version of the section's own layout.
    pub version: u32,
    /// A reader that does not know this section must refuse the file (instead of skipping it).
    pub required: bool,
    /// Contents (postcard, unless the section says otherwise).
    pub bytes: Vec<u8>,
}

/// Names and versions of the sections this build reads.
pub const KNOWN_SECTIONS: &[(&str, u32)] = &[("train", 1), ("model", 1), ("optim", 1), ("lifecycle", 1)];

/// Training metadata (section `train`).
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    id: Option<u64>,
    path: String,
    shape: Vec<u64>,
    dtype: DType,
    role: Role,
    offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    arch: String,
    model_config: String,
    tokenizer: Tokenizer,
    meta: Vec<(String, String)>,
    tensors: Vec<Entry>,
    sections: Vec<Section>,
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
    /// Free-form metadata.
    pub meta: Vec<(String, String)>,
    /// Format version the checkpoint was read from (`FORMAT_VERSION` for new ones).
    pub version: u32,
    tensors: Vec<TensorRecord>,
    by_path: BTreeMap<(Role, String), usize>,
    by_id: BTreeMap<(Role, u64), usize>,
    sections: Vec<Section>,
}

impl Checkpoint {
    /// An empty checkpoint of a model.
    pub fn new(arch: impl Into<String>, model_config: impl Into<String>, tokenizer: Tokenizer) -> Self {
        Self {
            arch: arch.into(),
            model_config: model_config.into(),
            tokenizer,
            meta: Vec::new(),
            version: FORMAT_VERSION,
            tensors: Vec::new(),
            by_path: BTreeMap::new(),
            by_id: BTreeMap::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a tensor. Its data must match its shape, its (role, path) and (role, id) must be
    /// new, and only archive tensors may hold non-finite values.
    pub fn push(&mut self, t: TensorRecord) -> Result<()> {
        if t.data.len() != shape::checked_numel(&t.shape).map_err(|_| corrupt("tensor too large"))? {
            return Err(Error::InvalidArgument(format!("tensor {} data does not match shape {:?}", t.path, t.shape)));
        }
        if t.path.is_empty() {
            return Err(Error::InvalidArgument("tensor path is empty".into()));
        }
        if matches!(t.role, Role::Param | Role::OptimM | Role::OptimV) && t.data.dtype() != DType::F32 {
            return Err(corrupt(format!("tensor {} ({:?}) must be f32, not {:?}", t.path, t.role, t.data.dtype())));
        }
        if !t.role.allows_non_finite() {
            if let TensorData::F32(v) = &t.data {
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(Error::NonFinite(format!("tensor {} ({:?}) holds a non-finite value", t.path, t.role)));
                }
            }
        }
        let i = self.tensors.len();
        if self.by_path.contains_key(&(t.role, t.path.clone())) {
            return Err(corrupt(format!("tensor {} ({:?}) appears twice", t.path, t.role)));
        }
        if let Some(id) = t.id {
            if self.by_id.insert((t.role, id), i).is_some() {
                return Err(corrupt(format!("id {id} ({:?}) appears twice", t.role)));
            }
        }
        self.by_path.insert((t.role, t.path.clone()), i);
        self.tensors.push(t);
        Ok(())
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorRecord] {
        &self.tensors
    }

    /// The tensor of `role` at `path` (an index lookup).
    pub fn tensor(&self, role: Role, path: &str) -> Option<&TensorRecord> {
        self.by_path.get(&(role, String::from(path))).map(|&i| &self.tensors[i])
    }

    /// The values of the tensor of `role` at `path`, to change in place (its identity stays).
    pub fn data_mut(&mut self, role: Role, path: &str) -> Option<&mut TensorData> {
        let i = *self.by_path.get(&(role, String::from(path)))?;
        Some(&mut self.tensors[i].data)
    }

    /// The tensor of `role` with `id` (an index lookup).
    pub fn tensor_by_id(&self, role: Role, id: u64) -> Option<&TensorRecord> {
        self.by_id.get(&(role, id)).map(|&i| &self.tensors[i])
    }

    /// Every section, in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Adds or replaces a section.
    pub fn set_section(&mut self, s: Section) {
        self.sections.retain(|x| x.name != s.name);
        self.sections.push(s);
    }

    /// Removes section `name` (returns whether it was there).
    pub fn remove_section(&mut self, name: &str) -> bool {
        let n = self.sections.len();
        self.sections.retain(|x| x.name != name);
        self.sections.len() != n
    }

    /// Writes `value` as section `name` (postcard, version `version`).
    pub fn put<T: Serialize>(&mut self, name: &str, version: u32, required: bool, value: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(|e| corrupt(format!("cannot encode section {name}: {e}")))?;
        self.set_section(Section { name: name.to_string(), version, required, bytes });
        Ok(())
    }

    /// Reads section `name` if present. A version other than `version` is an error (this
    /// build knows one layout per section).
    pub fn get<T: DeserializeOwned>(&self, name: &str, version: u32) -> Result<Option<T>> {
        let Some(s) = self.section(name) else { return Ok(None) };
        if s.version != version {
            return Err(corrupt(format!(
                "section {name} has version {}, this build reads version {version}",
                s.version
            )));
        }
        postcard::from_bytes(&s.bytes).map(Some).map_err(|e| corrupt(format!("section {name}: {e}")))
    }

    /// Training metadata (section `train`), if saved by a trainer.
    pub fn train_meta(&self) -> Result<Option<TrainMeta>> {
        self.get("train", 1)
    }

    /// Sets the training metadata.
    pub fn set_train_meta(&mut self, m: &TrainMeta) -> Result<()> {
        self.put("train", 1, false, m)
    }

    /// The metadata value of `key`.
    pub fn meta_value(&self, key: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Serialises to the current format version.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut entries = Vec::with_capacity(self.tensors.len());
        let mut off = 0usize;
        for t in &self.tensors {
            entries.push(Entry {
                id: t.id,
                path: t.path.clone(),
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                dtype: t.data.dtype(),
                role: t.role,
                offset: off as u64,
            });
            off = align_up(off + t.data.len() * t.data.dtype().size());
        }
        let header = Header {
            arch: self.arch.clone(),
            model_config: self.model_config.clone(),
            tokenizer: self.tokenizer.clone(),
            meta: self.meta.clone(),
            tensors: entries,
            sections: self.sections.clone(),
        };
        let hb = postcard::to_allocvec(&header).map_err(|e| Error::Checkpoint(format!("cannot encode header: {e}")))?;
        let hlen = u32::try_from(hb.len()).map_err(|_| Error::Checkpoint("header exceeds 4 GiB".into()))?;
        let data_start = align_up(20 + hb.len());
        let mut out = Vec::with_capacity(data_start + off + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        out.extend_from_slice(&hlen.to_le_bytes());
        out.extend_from_slice(&hb);
        out.resize(data_start, 0);
        for t in &self.tensors {
            t.data.write_le(&mut out);
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

    /// Decodes and validates a container of version 2 (any minor) or 1 (migrated); every
    /// inconsistency is an [`Error::Checkpoint`].
    pub fn decode_with(bytes: &[u8], lim: &Limits) -> Result<Self> {
        if bytes.len() > lim.max_total_bytes {
            return Err(corrupt(format!("{} bytes exceed the limit of {}", bytes.len(), lim.max_total_bytes)));
        }
        if bytes.len() < 12 || bytes[..8] != MAGIC {
            return Err(corrupt("not a protocell checkpoint (bad magic bytes)"));
        }
        let version = u32::from_le_bytes(le(&bytes[8..12]));
        match version {
            1 => return v1::Checkpoint::decode_with(bytes, lim).and_then(Self::from_v1),
            FORMAT_VERSION => {}
            _ => {
                return Err(corrupt(format!(
                    "format version {version} is not supported (this build reads versions 1 and {FORMAT_VERSION})"
                )))
            }
        }
        if bytes.len() < 24 {
            return Err(corrupt(format!("{} bytes is too short to be a protocell checkpoint", bytes.len())));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(le(crc_bytes)) {
            return Err(corrupt("checksum mismatch: the file is truncated or corrupted"));
        }
        let hlen = u32::from_le_bytes(le(&bytes[16..20])) as usize;
        if hlen > lim.max_header_bytes || 20 + hlen > body.len() {
            return Err(corrupt(format!("header length {hlen} is out of range")));
        }
        let header: Header =
            postcard::from_bytes(&body[20..20 + hlen]).map_err(|e| corrupt(format!("cannot decode header: {e}")))?;
        if header.tensors.len() > lim.max_tensors {
            return Err(corrupt(format!("{} tensors exceed the limit of {}", header.tensors.len(), lim.max_tensors)));
        }
        let mut names = alloc::collections::BTreeSet::new();
        for s in &header.sections {
            if !names.insert(s.name.as_str()) {
                return Err(corrupt(format!("section {} appears twice", s.name)));
            }
            if s.required && !KNOWN_SECTIONS.iter().any(|(n, v)| *n == s.name && *v == s.version) {
                return Err(corrupt(format!(
                    "required section {} (version {}) is not known to this build: the file needs a newer protocell",
                    s.name, s.version
                )));
            }
        }
        let data_start = align_up(20 + hlen);
        if data_start > body.len() {
            return Err(corrupt("data section starts past the end of the file"));
        }
        let data = &body[data_start..];
        let mut ck = Checkpoint::new(header.arch, header.model_config, header.tokenizer);
        ck.meta = header.meta;
        ck.sections = header.sections;
        let mut expected_off = 0usize;
        for e in header.tensors {
            if e.path.is_empty() || e.path.len() > lim.max_name_len {
                return Err(corrupt(format!("tensor path of length {} is invalid", e.path.len())));
            }
            if e.shape.len() > lim.max_rank {
                return Err(corrupt(format!("tensor {} has rank {} (limit {})", e.path, e.shape.len(), lim.max_rank)));
            }
            let shape: Vec<usize> = e
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| corrupt(format!("tensor {} has a dimension too large", e.path)))
                })
                .collect::<Result<_>>()?;
            let n = shape::checked_numel(&shape)
                .map_err(|_| corrupt(format!("tensor {} shape {shape:?} is too large", e.path)))?;
            let off = usize::try_from(e.offset).map_err(|_| corrupt("offset too large"))?;
            if off != expected_off {
                return Err(corrupt(format!("tensor {} starts at {off}, expected {expected_off}", e.path)));
            }
            let nbytes = n.checked_mul(e.dtype.size()).ok_or_else(|| corrupt("tensor too large"))?;
            let end = off.checked_add(nbytes).ok_or_else(|| corrupt("tensor too large"))?;
            if end > data.len() {
                return Err(corrupt(format!("tensor {} runs past the end of the file (truncated?)", e.path)));
            }
            // the bytes exist, so the allocation below is bounded by the file's length
            let values = TensorData::read_le(e.dtype, &data[off..end]);
            let rec = TensorRecord { id: e.id, path: e.path, shape, role: e.role, data: values };
            ck.push(rec).map_err(|err| match err {
                Error::NonFinite(m) => corrupt(m),
                other => other,
            })?;
            expected_off = align_up(end);
        }
        if expected_off != data.len() {
            return Err(corrupt(format!("{} trailing bytes after the last tensor", data.len() - expected_off)));
        }
        Ok(ck)
    }

    /// Migrates a version-1 checkpoint: parameters keep their paths and get no id (the model
    /// assigns them on load), `optim.m.<path>` / `optim.v.<path>` become moment tensors of
    /// `<path>`, training metadata becomes the `train` section; the optimiser settings stay in
    /// the training configuration or the `optim.*` metadata of the file.
    fn from_v1(c: v1::Checkpoint) -> Result<Self> {
        let mut ck = Checkpoint::new(c.arch, c.model_config, c.tokenizer);
        ck.version = 1;
        ck.meta = c.meta;
        for t in c.tensors {
            let (role, path) = if let Some(p) = t.name.strip_prefix("optim.m.") {
                (Role::OptimM, p.to_string())
            } else if let Some(p) = t.name.strip_prefix("optim.v.") {
                (Role::OptimV, p.to_string())
            } else {
                (Role::Param, t.name)
            };
            ck.push(TensorRecord::f32(role, None, path, t.shape, t.data))?;
        }
        if let Some(m) = c.train {
            ck.set_train_meta(&TrainMeta {
                step: m.step,
                seed: m.seed,
                loss: m.loss,
                val_loss: m.val_loss,
                tokens_seen: m.tokens_seen,
                config_hash: m.config_hash,
                data_hash: m.data_hash,
                run_config: m.run_config,
            })?;
        }
        Ok(ck)
    }
}

/// 64-bit FNV-1a hash (config and data fingerprints).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::new("gpt", "{}", Tokenizer::Bytes);
        c.meta.push(("k".into(), "v".into()));
        c.push(TensorRecord::f32(Role::Param, Some(0), "a", vec![2, 3], vec![1., 2., 3., 4., 5., 6.])).unwrap();
        c.push(TensorRecord::f32(Role::Param, Some(1), "b", vec![], vec![-1.0])).unwrap();
        c.push(TensorRecord::f32(Role::OptimM, Some(0), "a", vec![2, 3], vec![0.5; 6])).unwrap();
        c.push(TensorRecord::f32(Role::Param, Some(2), "c", vec![0, 4], vec![])).unwrap();
        let archive = vec![f32::NEG_INFINITY, 0.25, f32::NEG_INFINITY];
        c.push(TensorRecord::f32(Role::Archive, None, "archive.fitness", vec![3], archive)).unwrap();
        c.push(TensorRecord {
            id: None,
            path: "ids".into(),
            shape: vec![2],
            role: Role::Buffer,
            data: TensorData::U32(vec![7, 9]),
        })
        .unwrap();
        let big = TensorData::I64(vec![-3, i64::MAX]);
        c.push(TensorRecord { id: None, path: "steps".into(), shape: vec![2], role: Role::Buffer, data: big }).unwrap();
        let u = TensorData::U64(vec![u64::MAX]);
        c.push(TensorRecord { id: None, path: "u".into(), shape: vec![1], role: Role::Buffer, data: u }).unwrap();
        c.set_train_meta(&TrainMeta { step: 7, seed: 1, loss: 1.5, ..Default::default() }).unwrap();
        c
    }

    #[test]
    fn roundtrip_alignment_dtypes_and_lookup() {
        let c = sample();
        let bytes = c.encode().unwrap();
        let d = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(d, c);
        let hlen = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        assert_eq!(align_up(20 + hlen) % ALIGN, 0);
        assert_eq!(d.tensor(Role::OptimM, "a").unwrap().data, TensorData::F32(vec![0.5; 6]));
        assert_eq!(d.tensor_by_id(Role::Param, 1).unwrap().path, "b");
        assert!(d.tensor(Role::Param, "archive.fitness").is_none());
        assert_eq!(d.train_meta().unwrap().unwrap().step, 7);
    }

    #[test]
    fn non_finite_values_only_where_the_role_allows() {
        let mut c = Checkpoint::new("gpt", "{}", Tokenizer::Bytes);
        let e = c.push(TensorRecord::f32(Role::Param, Some(0), "w", vec![1], vec![f32::NAN])).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        // a forged file that marks a parameter's infinities as such is refused too
        let mut bytes = sample().encode().unwrap();
        let body = bytes.len() - 4;
        let pos = bytes.windows(4).rposition(|w| w == 1.0f32.to_le_bytes()).unwrap();
        bytes[pos..pos + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        let e = Checkpoint::decode(&bytes).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
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

    /// Re-encodes `c` with its header changed by `f` (as a newer or forged writer would).
    fn forge(c: &Checkpoint, minor: u32, f: impl FnOnce(&mut Header)) -> Vec<u8> {
        let bytes = c.encode().unwrap();
        let hlen = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let mut h: Header = postcard::from_bytes(&bytes[20..20 + hlen]).unwrap();
        let data = bytes[align_up(20 + hlen)..bytes.len() - 4].to_vec();
        f(&mut h);
        let hb = postcard::to_allocvec(&h).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&minor.to_le_bytes());
        out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
        out.extend_from_slice(&hb);
        out.resize(align_up(out.len()), 0);
        out.extend_from_slice(&data);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn unknown_optional_sections_of_a_newer_minor_are_skipped_required_ones_refused() {
        let c = sample();
        let newer = forge(&c, 7, |h| {
            h.sections.push(Section { name: "future".into(), version: 3, required: false, bytes: vec![1, 2, 3] })
        });
        let d = Checkpoint::decode(&newer).unwrap();
        assert_eq!(d.tensors(), c.tensors());
        assert_eq!(d.section("future").unwrap().bytes, vec![1, 2, 3]);
        let needs = forge(&c, 7, |h| {
            h.sections.push(Section { name: "future".into(), version: 1, required: true, bytes: vec![] })
        });
        let e = Checkpoint::decode(&needs).unwrap_err();
        assert!(e.to_string().contains("newer protocell"), "{e}");
        let twice = forge(&c, 0, |h| {
            let s = h.sections[0].clone();
            h.sections.push(s)
        });
        assert!(Checkpoint::decode(&twice).is_err());
    }

    #[test]
    fn forged_tables_are_rejected() {
        let c = sample();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("huge dimension", forge(&c, 0, |h| h.tensors[0].shape = vec![u64::MAX, 2])),
            ("wrong dtype", forge(&c, 0, |h| h.tensors[0].dtype = DType::U64)),
            ("bad offset", forge(&c, 0, |h| h.tensors[1].offset += 64)),
            ("repeated id", forge(&c, 0, |h| h.tensors[1].id = Some(0))),
            ("rank", forge(&c, 0, |h| h.tensors[0].shape = vec![1; 9])),
            ("empty path", forge(&c, 0, |h| h.tensors[0].path.clear())),
        ];
        for (what, bytes) in cases {
            assert!(Checkpoint::decode(&bytes).is_err(), "{what} accepted");
        }
        let mut v = sample().encode().unwrap();
        v[8..12].copy_from_slice(&9u32.to_le_bytes());
        let e = Checkpoint::decode(&v).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
    }
}
