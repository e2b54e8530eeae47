//! Models and trainers in checkpoints, written once for every front end.
//!
//! * [`model_checkpoint`] / [`load_model`]: parameters as [`Role::Param`] tensors with their
//!   ids and paths, the model's id counter in section `model`;
//! * [`save_trainer`] / [`restore_trainer`]: the optimiser settings, step count and each
//!   parameter's own step count in section `optim`, the moments as [`Role::OptimM`] /
//!   [`Role::OptimV`] tensors keyed by the parameter's id, the lineage in section `lifecycle`.
//!
//! Version-1 files carry no ids and no `optim` section: their parameters are matched by
//! path and take the ids of a freshly built model (visit order), their moments are matched
//! by path, every parameter's step count is the file's step count, and the optimiser settings
//! come from the caller (who knows where the old writer kept them).
use super::{OptimizerSettings, Trainer};
use crate::backend::Backend;
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::lifecycle::LifecycleRecord;
use crate::models::LanguageModel;
use crate::nn::{export_params, import_params, HostTensor, Module, ParamId, ParamIds};
use crate::optim::{AdamW, ParamState};
use crate::record::{Checkpoint, Role, TensorRecord};
use crate::rng::RngKey;
use crate::tensor::Tensor;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Section `model`: the parameter-id counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModelSection {
    next_param_id: u64,
}

/// Section `optim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OptimSection {
    settings: OptimizerSettings,
    steps: u64,
    /// `(parameter id, its own step count)` for every parameter with moments.
    params: Vec<(u64, u64)>,
}

/// A checkpoint of `model` (architecture, configuration as JSON, parameters with ids and
/// paths, id counter) with `tokenizer`.
pub fn model_checkpoint<B: Backend, M: LanguageModel<B>>(model: &M, tokenizer: &Tokenizer) -> Result<Checkpoint> {
    let cfg = serde_json::to_string(model.config()).map_err(|e| Error::Config(format!("model configuration: {e}")))?;
    let mut ck = Checkpoint::new(M::ARCH, cfg, tokenizer.clone());
    for p in export_params::<B, M>(model)? {
        ck.push(TensorRecord::f32(Role::Param, Some(p.id.0), p.path, p.value.shape, p.value.data))?;
    }
    let mut err = None;
    model.for_each_buffer(&mut |path, b| {
        if err.is_some() {
            return;
        }
        let r =
            b.to_vec().and_then(|data| ck.push(TensorRecord::f32(Role::Buffer, None, path, b.shape().to_vec(), data)));
        if let Err(e) = r {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    ck.put("model", 1, false, &ModelSection { next_param_id: model.param_ids().next() })?;
    Ok(ck)
}

/// The model of `ck` on `dev`: configuration parsed, parameters loaded by path (with their
/// ids, when the file has them), id counter restored, tokenizer checked against the
/// vocabulary. Nothing is allocated on the device before the file has been checked.
pub fn load_model<B: Backend, M: LanguageModel<B>>(ck: &Checkpoint, dev: &B::Device) -> Result<M> {
    if ck.arch != M::ARCH {
        return Err(Error::Checkpoint(format!("checkpoint holds a {} model, not {}", ck.arch, M::ARCH)));
    }
    let cfg: M::Config = serde_json::from_str(&ck.model_config)
        .map_err(|e| Error::Checkpoint(format!("model configuration does not fit {}: {e}", ck.arch)))?;
    let mut model = M::init(&cfg, RngKey::new(0), dev)?;
    let mut params = BTreeMap::new();
    for t in ck.tensors().iter().filter(|t| t.role == Role::Param) {
        let data = t.data.as_f32().ok_or_else(|| Error::Checkpoint(format!("parameter {} is not f32", t.path)))?;
        let value = HostTensor { shape: t.shape.clone(), data: data.to_vec() };
        params.insert(t.path.clone(), (t.id.map(ParamId), value));
    }
    import_params::<B, M>(&mut model, &params, dev)?;
    import_buffers::<B, M>(&mut model, ck, dev)?;
    let section: Option<ModelSection> = ck.get("model", 1)?;
    let mut ids = match &section {
        Some(s) => ParamIds::starting_at(s.next_param_id),
        None => *model.param_ids(),
    };
    let before = ids.next();
    ids.cover(&model);
    if ids.next() != before && section.is_some() {
        return Err(Error::Checkpoint(format!(
            "the id counter ({before}) is behind the parameters' ids (up to {})",
            ids.next() - 1
        )));
    }
    *model.param_ids_mut() = ids;
    if model.vocab_size() != ck.tokenizer.vocab_size() {
        return Err(Error::Checkpoint(format!(
            "tokenizer {} does not match the model vocabulary {}",
            ck.tokenizer.describe(),
            model.vocab_size()
        )));
    }
    Ok(model)
}

/// Replaces every buffer of `model` with the `Role::Buffer` tensor at its path. A version-1
/// file has no buffers (its models had none): the model's own initial values stay. In a
/// version-2 file every buffer must be present with its shape, and no other buffer may be.
/// Nothing changes on an error.
fn import_buffers<B: Backend, M: Module<B>>(model: &mut M, ck: &Checkpoint, dev: &B::Device) -> Result<()> {
    let mut staged = Vec::new();
    let mut err = None;
    model.for_each_buffer(&mut |path, b| {
        if err.is_some() {
            return;
        }
        match ck.tensor(Role::Buffer, path) {
            None if ck.version == 1 => staged.push(None),
            None => err = Some(Error::Checkpoint(format!("buffer {path} is missing"))),
            Some(t) if t.shape != b.shape() => {
                err = Some(Error::Checkpoint(format!(
                    "buffer {path} has shape {:?}, the model expects {:?}",
                    t.shape,
                    b.shape()
                )))
            }
            Some(t) => match t.data.as_f32().map(|d| Tensor::<B>::from_f32(d, &t.shape, dev)) {
                Some(Ok(v)) => staged.push(Some(v)),
                Some(Err(e)) => err = Some(e),
                None => err = Some(Error::Checkpoint(format!("buffer {path} is not f32"))),
            },
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let stored = ck.tensors().iter().filter(|t| t.role == Role::Buffer).count();
    let used = staged.iter().filter(|s| s.is_some()).count();
    if used != stored {
        return Err(Error::Checkpoint(format!("the checkpoint holds {stored} buffers, {used} of them in this model")));
    }
    let mut it = staged.into_iter();
    model.for_each_buffer_mut(&mut |_, b| {
        if let Some(Some(v)) = it.next() {
            b.set(v);
        }
    });
    Ok(())
}

/// Writes `trainer`'s optimiser (settings, step counts, moments of `model`'s parameters)
/// and lifecycle log into `ck`.
pub fn save_trainer<B: Backend, M: Module<AB> + ?Sized, AB: Backend>(
    trainer: &Trainer<B>,
    model: &M,
    ck: &mut Checkpoint,
) -> Result<()> {
    let opt = trainer.optimizer();
    let mut params = Vec::new();
    let mut moments: Vec<(u64, String, &ParamState<B>)> = Vec::new();
    model.for_each_param(&mut |path, p| {
        if let Some(st) = opt.state(p.id()) {
            params.push((p.id().0, st.t));
            moments.push((p.id().0, path.to_string(), st));
        }
    });
    for (id, path, st) in moments {
        ck.push(TensorRecord::f32(Role::OptimM, Some(id), path.clone(), st.m.shape().to_vec(), st.m.to_vec()?))?;
        ck.push(TensorRecord::f32(Role::OptimV, Some(id), path, st.v.shape().to_vec(), st.v.to_vec()?))?;
    }
    let section = OptimSection { settings: trainer.settings().clone(), steps: trainer.steps(), params };
    ck.put("optim", 1, false, &section)?;
    ck.put(LifecycleRecord::SECTION, LifecycleRecord::VERSION, false, trainer.lifecycle())
}

/// True when `ck` holds an optimiser record (section `optim`; version-1 files never do).
pub fn has_optimizer(ck: &Checkpoint) -> bool {
    ck.section("optim").is_some()
}

/// The trainer saved in `ck` for `model` (whose parameters were loaded from the same file),
/// with moments on `dev`. A version-1 file has no `optim` section: then `legacy` gives the
/// settings and step count (from wherever the old writer kept them) and moments are matched
/// by path. Every moment must match its parameter's shape; a parameter without moments is
/// one that was never updated.
pub fn restore_trainer<B: Backend, AB: Backend, M: Module<AB> + ?Sized>(
    ck: &Checkpoint,
    model: &M,
    dev: &B::Device,
    legacy: Option<(OptimizerSettings, u64)>,
) -> Result<Trainer<B>> {
    let section: Option<OptimSection> = ck.get("optim", 1)?;
    let lifecycle: LifecycleRecord = ck.get(LifecycleRecord::SECTION, LifecycleRecord::VERSION)?.unwrap_or_default();
    let (settings, steps, by_id) = match section {
        Some(s) => {
            let t: BTreeMap<u64, u64> = s.params.iter().copied().collect();
            if t.len() != s.params.len() {
                return Err(Error::Checkpoint("optimizer record lists a parameter twice".into()));
            }
            (s.settings, s.steps, Some(t))
        }
        None => {
            let (s, n) = legacy.ok_or_else(|| Error::Checkpoint("this checkpoint holds no optimizer state".into()))?;
            (s, n, None)
        }
    };
    settings.validate().map_err(|e| Error::Checkpoint(format!("optimizer settings: {e}")))?;
    let mut states = BTreeMap::new();
    let mut err: Option<Error> = None;
    let mut used = 0usize;
    model.for_each_param(&mut |path, p| {
        if err.is_some() {
            return;
        }
        let (m, v, t) = match &by_id {
            Some(ts) => match ts.get(&p.id().0) {
                None => return,
                Some(&t) => (ck.tensor_by_id(Role::OptimM, p.id().0), ck.tensor_by_id(Role::OptimV, p.id().0), t),
            },
            None => match (ck.tensor(Role::OptimM, path), ck.tensor(Role::OptimV, path)) {
                (None, None) => return,
                (m, v) => (m, v, steps),
            },
        };
        let r = (|| -> Result<()> {
            let (Some(m), Some(v)) = (m, v) else {
                return Err(Error::Checkpoint(format!("optimizer moments of {path} are missing")));
            };
            if m.shape != p.shape() || v.shape != p.shape() {
                return Err(Error::Checkpoint(format!(
                    "optimizer moments of {path} have shapes {:?} / {:?}, the parameter {:?}",
                    m.shape,
                    v.shape,
                    p.shape()
                )));
            }
            if t == 0 || t > steps {
                return Err(Error::Checkpoint(format!("step count {t} of {path} is outside 1..={steps}")));
            }
            fn host<'a>(r: &'a TensorRecord, path: &str) -> Result<&'a [f32]> {
                r.data.as_f32().ok_or_else(|| Error::Checkpoint(format!("moments of {path} are not f32")))
            }
            let m = Tensor::<B>::from_f32(host(m, path)?, &m.shape, dev)?;
            let v = Tensor::<B>::from_f32(host(v, path)?, &v.shape, dev)?;
            states.insert(p.id(), ParamState { m, v, t });
            used += 1;
            Ok(())
        })();
        if let Err(e) = r {
            err = Some(e);
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let stored = match &by_id {
        Some(ts) => ts.len(),
        None => ck.tensors().iter().filter(|t| t.role == Role::OptimM).count(),
    };
    if used != stored {
        return Err(Error::Checkpoint(format!(
            "the optimizer record holds {stored} parameters, {used} of them in this model"
        )));
    }
    let mut opt = AdamW::new(settings.adamw.clone())?;
    opt.restore(steps, states);
    Ok(Trainer::from_parts(settings, opt, lifecycle))
}
