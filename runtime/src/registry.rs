//! The models this build knows — one list, [`for_each_model!`](crate::for_each_model) — their
//! presets, and run-time dispatch over (device × architecture) to monomorphised code.
//!
//! Adding a model is one line in that list plus its module in `protocell_core::models`: the
//! model type implements `LanguageModel` and its configuration type implements
//! `Architecture` (id, description, presets). Everything else — `--model`, `protocell
//! models`, checkpoints, the C ABI, the benches and the every-model tests — reads the list.
use crate::config::RunConfig;
use protocell_core::error::{Error, Result};
use protocell_core::models::{Architecture, LanguageModel};
use serde_json::Value;

/// Calls `$mac!($args ; Model1, Model2, …)` with every model type of this build (the names
/// of types in `protocell_core::models`, each generic over the backend). The default model
/// is the first.
#[macro_export]
#[doc(hidden)]
macro_rules! for_each_model {
    ($mac:ident ! ( $($args:tt)* )) => {
        $crate::$mac!($($args)* ; CellToken, CellularTransformer, Gpt, SynapticGpt)
    };
}

/// A model the CLI can train.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    /// Architecture id (also the `--model` name).
    pub name: &'static str,
    /// One-line description.
    pub about: &'static str,
    /// `(preset, description)` pairs; the first is the default.
    pub presets: Vec<(&'static str, &'static str)>,
}

type Cpu = protocell_cpu::Cpu;

fn entry<C: Architecture>() -> ModelEntry {
    ModelEntry { name: C::ARCH, about: C::ABOUT, presets: C::presets().iter().map(|p| (p.name, p.about)).collect() }
}

/// The configuration type of model `$m` (used by the list macros).
#[doc(hidden)]
pub type ConfigOf<M> = <M as LanguageModel<Cpu>>::Config;

#[doc(hidden)]
#[macro_export]
macro_rules! __model_entries {
    (; $($m:ident),*) => {
        vec![$( $crate::registry::__entry::<$crate::registry::ConfigOf<protocell_core::models::$m<protocell_cpu::Cpu>>>() ),*]
    };
}

#[doc(hidden)]
pub fn __entry<C: Architecture>() -> ModelEntry {
    entry::<C>()
}

/// Every model of this build, the default first.
pub fn models() -> Vec<ModelEntry> {
    crate::for_each_model!(__model_entries!())
}

/// The model trained when `--model` is not given.
pub fn default_model() -> &'static str {
    models()[0].name
}

/// Looks a model up by name.
pub fn model(name: &str) -> Result<ModelEntry> {
    models().into_iter().find(|m| m.name == name).ok_or_else(|| unknown_model(name))
}

/// The error for a model name this build does not know.
pub fn unknown_model(name: &str) -> Error {
    Error::Config(format!(
        "unknown model {name:?}; available: {}",
        models().iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
    ))
}

fn json<T: serde::Serialize>(x: T) -> Value {
    serde_json::to_value(x).expect("config serialises")
}

#[doc(hidden)]
pub fn __preset<C: Architecture>(preset: Option<&str>) -> Result<RunConfig> {
    let all = C::presets();
    let p = match preset {
        None => all.into_iter().next().ok_or_else(|| Error::Config(format!("model {} has no preset", C::ARCH)))?,
        Some(name) => all.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
            Error::Config(format!(
                "unknown preset {name:?} for model {}; available: {}",
                C::ARCH,
                all.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            ))
        })?,
    };
    Ok(RunConfig { arch: C::ARCH.to_string(), preset: p.name.to_string(), model: json(p.model), train: p.train })
}

/// The run configuration of `model` at `preset` (`None`: the model's default preset).
pub fn preset(model_name: &str, preset: Option<&str>) -> Result<RunConfig> {
    crate::with_arch!(model_name, Cpu, |M| __preset::<<M as LanguageModel<Cpu>>::Config>(preset))
}

/// Runs `$body` with `$M` bound to the model type of architecture `$arch` on backend `$B`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_arch {
    ($arch:expr, $B:ty, |$M:ident| $body:expr) => {
        $crate::for_each_model!(__with_arch!($arch, $B, $M, $body))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __with_arch {
    ($arch:expr, $B:ty, $M:ident, $body:expr ; $($m:ident),*) => {{
        let arch: &str = $arch;
        $(
            if arch == <protocell_core::models::$m<$B> as protocell_core::models::LanguageModel<$B>>::ARCH {
                type $M = protocell_core::models::$m<$B>;
                $body
            } else
        )* {
            Err($crate::registry::unknown_model(arch))
        }
    }};
}

/// Runs `$body` with `$B` bound to the backend type and `$dev` to the device value of `$device`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_device {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {
        match $device {
            $crate::Device::Cpu => {
                type $B = $crate::backends::protocell_cpu::Cpu;
                let $dev = $crate::backends::protocell_cpu::CpuDevice;
                $body
            }
            $crate::Device::Wgpu(index) => match $crate::backends::protocell_wgpu::WgpuDevice::new(index) {
                Ok($dev) => {
                    type $B = $crate::backends::protocell_wgpu::Wgpu;
                    $body
                }
                Err(e) => Err(e),
            },
            $crate::Device::Cuda(index) => match $crate::backends::protocell_cuda::CudaDevice::new(index) {
                Ok($dev) => {
                    type $B = $crate::backends::protocell_cuda::Cuda;
                    $body
                }
                Err(e) => Err(e),
            },
        }
    };
}
