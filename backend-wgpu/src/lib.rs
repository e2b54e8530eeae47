//! # protocell-wgpu
//!
//! The wgpu backend of protocell: WGSL compute kernels for every primitive and fused op of
//! [`protocell_core::backend`], cached pipelines and pooled buffers, run on Vulkan, Metal,
//! DX12 or GL (lavapipe/llvmpipe in CI).
//!
//! This crate is part of the workspace build from the start so that its dependency
//! direction (`core` ← backends) is fixed; its kernels are the subject of the wgpu backend
//! work item. Until they land, `protocell --backend wgpu` reports the backend as
//! unavailable with a clear error.
