//! # protocell-core
//!
//! The embeddable heart of protocell: a small primitive [`Backend`](backend::Backend)
//! trait with fused extension slots ([`NnOps`](backend::NnOps)), a shape-checked
//! [`Tensor`](tensor::Tensor) wrapper, reverse-mode autodiff as a backend decorator
//! ([`Autodiff`](autodiff::Autodiff)), a counter-based RNG every backend reproduces
//! ([`rng`]), neural-network layers ([`nn`]), optimisers ([`optim`]), data pipelines
//! ([`data`]), checkpoints ([`record`]), models ([`models`]), the trainer ([`train`]) and the
//! lifecycle log ([`lifecycle`]).
//!
//! The crate is `#![no_std]` + `alloc`; the `std` feature (on by default) only adds
//! `std::error::Error` conveniences. It performs no I/O, spawns no threads and never
//! touches the OS: files, devices and threads belong to the backend and runtime crates.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod autodiff;
pub mod backend;
pub mod cell;
pub mod data;
pub mod error;
pub mod lifecycle;
pub mod math;
pub mod models;
pub mod nn;
pub mod optim;
pub mod recipe;
pub mod record;
pub mod rng;
pub mod shape;
pub mod synapse;
pub mod tensor;
pub mod train;

pub use autodiff::{Autodiff, AutodiffBackend, Gradients};
pub use backend::{Backend, Binary, Dist, NnOps, Reduce, Unary};
pub use error::{Error, Result};
pub use rng::RngKey;
pub use tensor::{Ids, Tensor};

/// A backend that runs every op family of this build (the primitives, [`NnOps`] and each
/// domain family such as [`cell::CellOps`]): one bound for code that uses them all, such as
/// the conformance suite and the model registry. Implemented for every such backend.
pub trait AllOps: Backend + cell::CellOps<Self> + synapse::SynapseOps<Self> {}

impl<B: Backend + cell::CellOps<B> + synapse::SynapseOps<B>> AllOps for B {}
