//! # protocell-runtime
//!
//! The std layer shared by the `protocell` CLI and the C ABI:
//!
//! * [`Device`] — which backend to run on, chosen at run time; the dispatch below
//!   monomorphises every model for each backend;
//! * [`config`] — run configuration (model + training), presets, `--set` overrides and
//!   TOML/JSON config files;
//! * [`session`] — a training session behind the object-safe [`Session`] trait;
//! * [`infer`] — loading checkpoints for generation and evaluation;
//! * [`io`] — atomic file writes and careful reading of data and checkpoints.
pub mod config;
pub mod data;
pub mod embed;
pub mod infer;
pub mod io;
pub mod registry;
pub mod session;
pub mod sys;

pub use config::RunConfig;

/// The backend crates the dispatch macros name (re-exported so that callers of the macros
/// need not depend on each backend themselves).
#[doc(hidden)]
pub mod backends {
    pub use protocell_cpu;
    pub use protocell_cuda;
    pub use protocell_wgpu;
}
pub use infer::{load_model, InferenceModel};
pub use session::{new_session, resume_session, Session, StepStats};

use protocell_core::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Returns the buffers the backends keep for reuse to the system allocator (call when no
/// tensor is alive, e.g. after the last model is dropped).
pub fn release_caches() {
    protocell_cpu::trim_pool();
}

/// A compute device, chosen at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU reference backend (all cores of the rayon pool).
    Cpu,
    /// A wgpu adapter by index.
    Wgpu(usize),
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = Error;
    /// `cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, idx) = match s.split_once(':') {
            Some((k, i)) => {
                let i = i.parse::<usize>().map_err(|_| Error::InvalidArgument(format!("bad device index in {s:?}")))?;
                (k, i)
            }
            None => (s, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" if idx == 0 => Ok(Device::Cpu),
            "wgpu" => Ok(Device::Wgpu(idx)),
            "cuda" => Ok(Device::Cuda(idx)),
            _ => Err(Error::InvalidArgument(format!("unknown backend {s:?} (expected cpu, wgpu[:N] or cuda[:N])"))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Wgpu(i) => write!(f, "wgpu:{i}"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Device {
    /// Error for a backend that is not built into this binary yet (used by the dispatch macros).
    pub fn unavailable(&self) -> Error {
        match self {
            Device::Cpu => Error::Unavailable("cpu".into()),
            Device::Wgpu(i) => Error::Unavailable(format!("wgpu adapter {i} is not available")),
            Device::Cuda(i) => Error::Unavailable(format!("CUDA unavailable: device {i}")),
        }
    }
}
