//! # protocell-cpu
//!
//! The CPU reference backend. Tensors are contiguous row-major `f32` buffers behind an
//! `Arc` (a uniquely owned buffer is reused in place); matrix products go through the
//! `gemm` crate; everything else is plain loops, vectorised at run time for the host's
//! SIMD level (`multiversion`) and spread over a rayon pool in fixed-size chunks, so the
//! result never depends on the number of threads.
//!
//! Fused kernels ([`protocell_core::NnOps`]) call the scalar functions of
//! `protocell_core::math` and are checked against the primitive compositions of
//! `protocell_core::backend` by the conformance suite.
#![warn(missing_docs)]

pub mod interop;
mod kernels;
mod profile;
mod storage;

use protocell_core::backend::{AdamWStep, AttnSpec, Backend, Binary, Dist, MemoryStats, NnOps, Reduce, Unary};
use protocell_core::error::{Error, Result};
use protocell_core::rng::RngKey;
use protocell_core::shape;
use std::sync::Arc;

pub use interop::{from_ndarray, from_view, NdArrayExt};
use profile::timed;
pub use profile::{profile_report, set_profiling};
use storage::Buf;
pub use storage::{memory_stats, reset_peak, trim_pool};

/// The CPU backend (a zero-sized marker type).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

/// The CPU device: the host and its rayon thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuDevice;

/// An `f32` tensor in host memory (contiguous, row-major).
#[derive(Clone)]
pub struct CpuTensor {
    buf: Arc<Buf>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor{:?}", self.shape)
    }
}

impl CpuTensor {
    pub(crate) fn new(data: Vec<f32>, shape: Vec<usize>) -> Self {
        debug_assert_eq!(data.len(), shape::numel(&shape));
        Self { buf: Arc::new(Buf::new(data)), shape }
    }
    pub(crate) fn data(&self) -> &[f32] {
        self.buf.as_slice()
    }
    /// Buffer and shape, the buffer moved out when uniquely owned (so a kernel can write
    /// its result in place), else copied.
    pub(crate) fn into_parts(self) -> (Vec<f32>, Vec<usize>) {
        let shape = self.shape;
        let data = match Arc::try_unwrap(self.buf) {
            Ok(b) => b.into_vec(),
            Err(shared) => {
                let mut v = storage::alloc(shared.as_slice().len());
                v.copy_from_slice(shared.as_slice());
                v
            }
        };
        (data, shape)
    }
}

/// A `u32` index tensor in host memory.
#[derive(Clone, Debug)]
pub struct CpuIds {
    data: Arc<Vec<u32>>,
    shape: Vec<usize>,
}

/// Sets the number of worker threads of the global pool (call before any tensor work;
/// later calls, and calls after the pool started, return an error).
pub fn set_num_threads(n: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| Error::Backend(format!("cannot configure {n} threads: {e}")))
}

/// Number of worker threads of the pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads()
}

impl Backend for Cpu {
    type Device = CpuDevice;
    type Tensor = CpuTensor;
    type Ids = CpuIds;

    fn name() -> String {
        "cpu".into()
    }
    fn sync(_dev: &CpuDevice) -> Result<()> {
        Ok(())
    }
    fn memory_stats(_dev: &CpuDevice) -> Option<MemoryStats> {
        Some(memory_stats())
    }
    fn shape(t: &CpuTensor) -> &[usize] {
        &t.shape
    }
    fn device(_t: &CpuTensor) -> CpuDevice {
        CpuDevice
    }
    fn ids_shape(t: &CpuIds) -> &[usize] {
        &t.shape
    }

    fn from_f32(data: &[f32], shape: &[usize], _dev: &CpuDevice) -> Result<CpuTensor> {
        timed("from_f32", || {
            if data.len() != shape::numel(shape) {
                return Err(Error::Shape { op: "from_f32", msg: format!("{} values for {shape:?}", data.len()) });
            }
            let mut v = storage::alloc(data.len());
            v.copy_from_slice(data);
            Ok(CpuTensor::new(v, shape.to_vec()))
        })
    }
    fn full(value: f32, shape: &[usize], _dev: &CpuDevice) -> Result<CpuTensor> {
        timed("full", || {
            let mut v = storage::alloc(shape::checked_numel(shape)?);
            v.fill(value);
            Ok(CpuTensor::new(v, shape.to_vec()))
        })
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], _dev: &CpuDevice) -> Result<CpuTensor> {
        timed("random", || {
            let n = shape::checked_numel(shape)?;
            Ok(CpuTensor::new(kernels::random::fill(dist, key, n), shape.to_vec()))
        })
    }
    fn to_f32(t: CpuTensor) -> Result<Vec<f32>> {
        timed("to_f32", || Ok(t.into_parts().0))
    }
    fn ids_from_u32(data: &[u32], shape: &[usize], _dev: &CpuDevice) -> Result<CpuIds> {
        if data.len() != shape::numel(shape) {
            return Err(Error::Shape { op: "ids_from_u32", msg: format!("{} values for {shape:?}", data.len()) });
        }
        Ok(CpuIds { data: Arc::new(data.to_vec()), shape: shape.to_vec() })
    }
    fn ids_to_u32(t: CpuIds) -> Result<Vec<u32>> {
        Ok(Arc::try_unwrap(t.data).unwrap_or_else(|a| a.as_ref().clone()))
    }
    fn ids_reshape(t: CpuIds, shape: &[usize]) -> Result<CpuIds> {
        Ok(CpuIds { data: t.data, shape: shape.to_vec() })
    }

    fn reshape(x: CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        Ok(CpuTensor { buf: x.buf, shape: shape.to_vec() })
    }
    fn permute(x: CpuTensor, axes: &[usize]) -> Result<CpuTensor> {
        timed("permute", || Ok(kernels::layout::permute(&x, axes)))
    }
    fn narrow(x: CpuTensor, axis: usize, start: usize, len: usize) -> Result<CpuTensor> {
        timed("narrow", || Ok(kernels::layout::narrow(&x, axis, start, len)))
    }
    fn concat(xs: Vec<CpuTensor>, axis: usize) -> Result<CpuTensor> {
        timed("concat", || Ok(kernels::layout::concat(&xs, axis)))
    }
    fn expand(x: CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        timed("expand", || Ok(kernels::layout::expand(&x, shape)))
    }
    fn pad(x: CpuTensor, axis: usize, before: usize, after: usize) -> Result<CpuTensor> {
        timed("pad", || Ok(kernels::layout::pad(&x, axis, before, after)))
    }

    fn unary(op: Unary, x: CpuTensor) -> Result<CpuTensor> {
        timed(unary_name(op), || Ok(kernels::elementwise::unary(op, x)))
    }
    fn unary_grad(op: Unary, x: CpuTensor, y: CpuTensor, dy: CpuTensor) -> Result<CpuTensor> {
        timed("unary_grad", || Ok(kernels::elementwise::unary_grad(op, &x, &y, dy)))
    }
    fn binary(op: Binary, a: CpuTensor, b: CpuTensor) -> Result<CpuTensor> {
        timed(binary_name(op), || kernels::elementwise::binary(op, a, b))
    }
    fn reduce(op: Reduce, x: CpuTensor, axis: usize) -> Result<CpuTensor> {
        timed("reduce", || Ok(kernels::reduce::reduce(op, &x, axis)))
    }
    fn matmul(a: CpuTensor, b: CpuTensor, ta: bool, tb: bool) -> Result<CpuTensor> {
        timed("matmul", || Ok(kernels::matmul::matmul(&a, &b, ta, tb)))
    }
    fn gather_rows(table: CpuTensor, ids: CpuIds) -> Result<CpuTensor> {
        timed("gather_rows", || kernels::index::gather_rows(&table, &ids))
    }
    fn scatter_add_rows(src: CpuTensor, ids: CpuIds, rows: usize) -> Result<CpuTensor> {
        timed("scatter_add_rows", || kernels::index::scatter_add_rows(&src, &ids, rows))
    }
    fn softmax(x: CpuTensor) -> Result<CpuTensor> {
        timed("softmax", || Ok(kernels::nn::softmax(x)))
    }
    fn softmax_grad(y: CpuTensor, dy: CpuTensor) -> Result<CpuTensor> {
        timed("softmax_grad", || Ok(kernels::nn::softmax_grad(&y, dy)))
    }
}

impl protocell_core::cell::CellOps<Cpu> for Cpu {
    fn colony_fwd(
        h0: CpuTensor,
        w0: CpuTensor,
        stim: CpuTensor,
        coeffs: CpuTensor,
        spec: &protocell_core::cell::ColonySpec,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("colony_fwd", || Ok(kernels::cell::forward(&h0, &w0, &stim, &coeffs, spec)))
    }
    fn colony_bwd(
        h0: CpuTensor,
        w0: CpuTensor,
        stim: CpuTensor,
        coeffs: CpuTensor,
        spec: &protocell_core::cell::ColonySpec,
        dh: CpuTensor,
        dw: CpuTensor,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor, CpuTensor)> {
        timed("colony_bwd", || Ok(kernels::cell::backward(&h0, &w0, &stim, &coeffs, spec, &dh, &dw)))
    }
}

/// Presynaptic release: the scan of `protocell_core::synapse::scan`, attention rows in parallel.
impl protocell_core::synapse::SynapseOps<Cpu> for Cpu {
    fn presyn_fwd(
        scores: CpuTensor,
        state0: CpuTensor,
        spec: &protocell_core::synapse::PresynSpec,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("presyn_fwd", || kernels::synapse::forward(&scores, &state0, spec))
    }
    fn presyn_bwd(
        scores: CpuTensor,
        state0: CpuTensor,
        spec: &protocell_core::synapse::PresynSpec,
        de: CpuTensor,
    ) -> Result<CpuTensor> {
        timed("presyn_bwd", || kernels::synapse::backward(&scores, &state0, None, spec, &de))
    }
    fn presyn_fwd_saving(
        scores: CpuTensor,
        state0: CpuTensor,
        spec: &protocell_core::synapse::PresynSpec,
    ) -> Result<((CpuTensor, CpuTensor, CpuTensor), Option<CpuTensor>)> {
        timed("presyn_fwd", || kernels::synapse::forward_saving(&scores, &state0, spec))
    }
    fn presyn_bwd_saved(
        scores: CpuTensor,
        state0: CpuTensor,
        saved: Option<CpuTensor>,
        spec: &protocell_core::synapse::PresynSpec,
        de: CpuTensor,
    ) -> Result<CpuTensor> {
        timed("presyn_bwd", || kernels::synapse::backward(&scores, &state0, saved.as_ref(), spec, &de))
    }
}

impl NnOps<Cpu> for Cpu {
    fn layer_norm_fwd(x: CpuTensor, g: CpuTensor, b: CpuTensor, eps: f32) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("layer_norm_fwd", || Ok(kernels::nn::layer_norm_fwd(&x, &g, Some(&b), eps)))
    }
    fn layer_norm_bwd(
        x: CpuTensor,
        g: CpuTensor,
        mean: CpuTensor,
        rstd: CpuTensor,
        dy: CpuTensor,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("layer_norm_bwd", || {
            let (dx, dg, db) = kernels::nn::layer_norm_bwd(&x, &g, Some(&mean), &rstd, &dy);
            Ok((dx, dg, db.expect("layer norm has a bias gradient")))
        })
    }
    fn rms_norm_fwd(x: CpuTensor, g: CpuTensor, eps: f32) -> Result<(CpuTensor, CpuTensor)> {
        timed("rms_norm_fwd", || {
            let (y, _, rstd) = kernels::nn::layer_norm_fwd(&x, &g, None, eps);
            Ok((y, rstd))
        })
    }
    fn rms_norm_bwd(x: CpuTensor, g: CpuTensor, rstd: CpuTensor, dy: CpuTensor) -> Result<(CpuTensor, CpuTensor)> {
        timed("rms_norm_bwd", || {
            let (dx, dg, _) = kernels::nn::layer_norm_bwd(&x, &g, None, &rstd, &dy);
            Ok((dx, dg))
        })
    }
    fn attention_fwd(
        q: CpuTensor,
        k: CpuTensor,
        v: CpuTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(CpuTensor, CpuTensor)> {
        timed("attention_fwd", || Ok(kernels::attention::forward(&q, &k, &v, causal, scale)))
    }
    fn attention_bwd(
        q: CpuTensor,
        k: CpuTensor,
        v: CpuTensor,
        o: CpuTensor,
        lse: CpuTensor,
        dout: CpuTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("attention_bwd", || Ok(kernels::attention::backward(&q, &k, &v, &o, &lse, &dout, causal, scale)))
    }
    fn self_attention_fwd(qkv: CpuTensor, spec: &AttnSpec) -> Result<(CpuTensor, CpuTensor)> {
        timed("self_attention_fwd", || Ok(kernels::attention::packed_forward(&qkv, spec)))
    }
    fn self_attention_bwd(
        qkv: CpuTensor,
        o: CpuTensor,
        lse: CpuTensor,
        dout: CpuTensor,
        spec: &AttnSpec,
    ) -> Result<CpuTensor> {
        timed("self_attention_bwd", || Ok(kernels::attention::packed_backward(&qkv, &o, &lse, &dout, spec)))
    }
    fn cross_entropy_fwd(logits: CpuTensor, targets: CpuIds) -> Result<(CpuTensor, CpuTensor)> {
        timed("cross_entropy_fwd", || kernels::nn::cross_entropy_fwd(&logits, &targets))
    }
    fn cross_entropy_bwd(logits: CpuTensor, targets: CpuIds, lse: CpuTensor, dloss: CpuTensor) -> Result<CpuTensor> {
        timed("cross_entropy_bwd", || kernels::nn::cross_entropy_bwd(logits, &targets, &lse, &dloss))
    }
    fn linear(x: CpuTensor, w: CpuTensor, b: Option<CpuTensor>) -> Result<CpuTensor> {
        timed("linear", || Ok(kernels::matmul::linear(&x, &w, b.as_ref())))
    }
    fn sum_squares(x: CpuTensor) -> Result<CpuTensor> {
        timed("sum_squares", || Ok(kernels::nn::sum_squares(&x)))
    }
    fn adamw_step(
        p: CpuTensor,
        g: CpuTensor,
        m: CpuTensor,
        v: CpuTensor,
        h: &AdamWStep,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        timed("adamw_step", || Ok(kernels::nn::adamw(p, &g, m, v, h)))
    }
}

fn binary_name(op: Binary) -> &'static str {
    match op {
        Binary::Add => "binary add",
        Binary::Sub => "binary sub",
        Binary::Mul => "binary mul",
        Binary::Div => "binary div",
        Binary::Max | Binary::Min => "binary max/min",
        Binary::Pow => "binary pow",
        Binary::Gt | Binary::Ge | Binary::Eq => "binary compare",
    }
}

fn unary_name(op: Unary) -> &'static str {
    match op {
        Unary::Gelu => "unary gelu",
        Unary::Exp => "unary exp",
        Unary::Affine { .. } => "unary affine",
        Unary::Square => "unary square",
        _ => "unary other",
    }
}
