//! # protocell-cuda
//!
//! The CUDA backend of protocell: cudarc with dynamic loading (no CUDA toolkit needed to
//! build), CUDA C kernels compiled at run time by NVRTC, cuBLAS for matrix products and a
//! caching allocator.
//!
//! This crate is part of the workspace build from the start so that its dependency
//! direction (`core` ← backends) is fixed; its kernels are the subject of the CUDA backend
//! work item. Until they land, `protocell --backend cuda` reports "CUDA unavailable" with a
//! clear error.
