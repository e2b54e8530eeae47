//! The backend trait: a small set of primitive tensor operations, plus fused
//! extension traits ([`NnOps`]) whose default implementations are compositions of
//! the primitives.
//!
//! Shaped after burn's backend: associated types for the device and tensor
//! primitives, operations as associated functions with no `self` that take tensors by
//! value (a backend may reuse a uniquely owned buffer in place), and fallible results
//! everywhere (a GPU may run out of memory or lose its device at any call).
//!
//! Backends may assume valid shapes: [`Tensor`](crate::tensor::Tensor) checks them
//! before calling in. Index tensors are the one exception: their *values* (token ids)
//! are only known on the device, so `gather_rows`, `scatter_add_rows` and
//! `cross_entropy_fwd` must reject out-of-range ids with an error.
use crate::error::Result;
use crate::rng::RngKey;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Debug;

mod composite;
pub mod kernel_abi;
mod nn_ops;

pub use crate::rng::Dist;
pub use composite::*;
pub use nn_ops::{AdamWStep, AttnDropout, AttnSpec, NnOps};

/// Elementwise unary operations. `y = f(x)`; gradients use [`crate::math::unary_grad`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Unary {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// `ln x`
    Log,
    /// `√x`
    Sqrt,
    /// `1/√x`
    Rsqrt,
    /// `1/x`
    Recip,
    /// `|x|`
    Abs,
    /// `x²`
    Square,
    /// `tanh x`
    Tanh,
    /// `1/(1+e^-x)`
    Sigmoid,
    /// Error function `erf x = 2/√π ∫₀ˣ e^{-t²} dt`
    Erf,
    /// `max(x, 0)`
    Relu,
    /// `x·Φ(x) = ½x(1 + erf(x/√2))` (exact GELU, not the tanh approximation)
    Gelu,
    /// `x·σ(x)`
    Silu,
    /// `ln(1 + e^x)`
    Softplus,
    /// `sin x`
    Sin,
    /// `cos x`
    Cos,
    /// `mul·x + add`
    Affine {
        /// Scale.
        mul: f32,
        /// Shift.
        add: f32,
    },
    /// `x^p`
    Powf(f32),
    /// `min(max(x, min), max)`
    Clamp {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
}

/// Elementwise binary operations with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Binary {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Max,
    /// `min(a, b)`
    Min,
    /// `a^b`
    Pow,
    /// `1.0` where `a > b`, else `0.0` (not differentiable)
    Gt,
    /// `1.0` where `a >= b`, else `0.0` (not differentiable)
    Ge,
    /// `1.0` where `a == b`, else `0.0` (not differentiable)
    Eq,
}

impl Binary {
    /// True for the comparison ops, whose gradient is zero everywhere.
    pub fn is_comparison(self) -> bool {
        matches!(self, Binary::Gt | Binary::Ge | Binary::Eq)
    }
}

/// Reductions along one axis (the axis is kept with size 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Reduce {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// Live-memory statistics of a backend's allocator (for the flat-memory tests and benches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Tensors currently alive.
    pub live_tensors: usize,
    /// Bytes currently held by live tensors.
    pub live_bytes: usize,
    /// Highest `live_bytes` seen since the last reset.
    pub peak_bytes: usize,
    /// Bytes of freed buffers a backend keeps for reuse (not counted as live).
    pub pooled_bytes: usize,
}

/// The primitive operations every backend implements.
///
/// `Tensor` is an f32 tensor (contiguous row-major from the caller's point of view;
/// cheap to clone), `Ids` a u32 index tensor (token ids). The generic fused nn operations
/// live in the supertrait [`NnOps`], which every backend also implements (its defaults
/// compose these primitives). Domain op families are separate extension traits declared in
/// their own modules (`cell::CellOps`, ...): a model bounds the families it uses
/// (`B: Backend + CellOps<B>`), and a backend implements each family it runs, overriding
/// the ops it accelerates.
pub trait Backend: Sized + Clone + Copy + Default + Send + Sync + Debug + 'static + NnOps<Self> {
    /// Where tensors live.
    type Device: Clone + Send + Sync + Debug + PartialEq;
    /// f32 tensor primitive.
    type Tensor: Clone + Send + Sync + Debug;
    /// u32 index tensor primitive.
    type Ids: Clone + Send + Sync + Debug;

    /// Short backend name (`"cpu"`, `"wgpu"`, `"autodiff<cpu>"`, ...).
    fn name() -> String;
    /// Blocks until all queued work on `dev` is done (benchmarks call this before reading a clock).
    fn sync(dev: &Self::Device) -> Result<()>;
    /// Allocator statistics, if the backend tracks them.
    fn memory_stats(_dev: &Self::Device) -> Option<MemoryStats> {
        None
    }

    // ---- metadata -------------------------------------------------------------------
    /// Shape of `t`.
    fn shape(t: &Self::Tensor) -> &[usize];
    /// Device of `t`.
    fn device(t: &Self::Tensor) -> Self::Device;
    /// Shape of an index tensor.
    fn ids_shape(t: &Self::Ids) -> &[usize];

    // ---- creation and readback ---------------------------------------------------------
    /// Tensor holding `data` (row-major) with `shape`; `data.len() == numel(shape)`.
    fn from_f32(data: &[f32], shape: &[usize], dev: &Self::Device) -> Result<Self::Tensor>;
    /// Tensor of `shape` filled with `value`.
    fn full(value: f32, shape: &[usize], dev: &Self::Device) -> Result<Self::Tensor>;
    /// Tensor of `shape` filled from `dist` under `key` (see [`crate::rng`] for the exact stream).
    fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &Self::Device) -> Result<Self::Tensor>;
    /// Copies `t` to the host (row-major).
    fn to_f32(t: Self::Tensor) -> Result<Vec<f32>>;
    /// Index tensor from host ids.
    fn ids_from_u32(data: &[u32], shape: &[usize], dev: &Self::Device) -> Result<Self::Ids>;
    /// Copies ids to the host.
    fn ids_to_u32(t: Self::Ids) -> Result<Vec<u32>>;
    /// Same ids with a new shape of equal element count.
    fn ids_reshape(t: Self::Ids, shape: &[usize]) -> Result<Self::Ids>;

    // ---- layout ----------------------------------------------------------------------
    /// Same data, new shape of equal element count.
    fn reshape(x: Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Axis permutation: output axis `i` is input axis `axes[i]`.
    fn permute(x: Self::Tensor, axes: &[usize]) -> Result<Self::Tensor>;
    /// Elements `start..start+len` along `axis`.
    fn narrow(x: Self::Tensor, axis: usize, start: usize, len: usize) -> Result<Self::Tensor>;
    /// Concatenation along `axis` (all other dims equal).
    fn concat(xs: Vec<Self::Tensor>, axis: usize) -> Result<Self::Tensor>;
    /// Materialised numpy broadcast of `x` to `shape`.
    fn expand(x: Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Zero padding along `axis`: `before` zeros, `x`, `after` zeros (the adjoint of `narrow`).
    fn pad(x: Self::Tensor, axis: usize, before: usize, after: usize) -> Result<Self::Tensor> {
        composite::pad::<Self>(x, axis, before, after)
    }

    /// The same values with no gradient history (a stop-gradient; the identity on backends
    /// that record no gradients).
    fn detach(x: Self::Tensor) -> Self::Tensor {
        x
    }

    // ---- elementwise -----------------------------------------------------------------
    /// `y = f(x)` elementwise.
    fn unary(op: Unary, x: Self::Tensor) -> Result<Self::Tensor>;
    /// `dx = dy · f'(x)` for `y = f(x)`; `y` is the saved forward output.
    fn unary_grad(op: Unary, x: Self::Tensor, y: Self::Tensor, dy: Self::Tensor) -> Result<Self::Tensor> {
        composite::unary_grad::<Self>(op, x, y, dy)
    }
    /// `op(a, b)` with numpy broadcasting.
    fn binary(op: Binary, a: Self::Tensor, b: Self::Tensor) -> Result<Self::Tensor>;

    // ---- reductions ------------------------------------------------------------------
    /// Reduction along `axis`, which is kept with size 1.
    fn reduce(op: Reduce, x: Self::Tensor, axis: usize) -> Result<Self::Tensor>;

    // ---- linear algebra --------------------------------------------------------------
    /// Batched matrix product `op(a) · op(b)` where `op` transposes the last two axes when
    /// the flag is set. `a: [..., m, k]`, `b: [..., k, n]` (before transposition); the batch
    /// dims are equal, or one side is a plain matrix that is shared by every batch.
    fn matmul(a: Self::Tensor, b: Self::Tensor, ta: bool, tb: bool) -> Result<Self::Tensor>;

    // ---- indexing --------------------------------------------------------------------
    /// `out[i, :] = table[ids[i], :]`; `table: [V, D]`, `ids: [*]`, output `[*, D]`.
    fn gather_rows(table: Self::Tensor, ids: Self::Ids) -> Result<Self::Tensor>;
    /// Adjoint of `gather_rows`: `out[v, :] = Σ_{i: ids[i]=v} src[i, :]`; `src: [*, D]`, output `[rows, D]`.
    fn scatter_add_rows(src: Self::Tensor, ids: Self::Ids, rows: usize) -> Result<Self::Tensor>;

    // ---- softmax ---------------------------------------------------------------------
    /// Softmax over the last axis.
    fn softmax(x: Self::Tensor) -> Result<Self::Tensor> {
        composite::softmax::<Self>(x)
    }
    /// `dx = y ⊙ (dy − Σ_j dy_j y_j)` for `y = softmax(x)` over the last axis.
    fn softmax_grad(y: Self::Tensor, dy: Self::Tensor) -> Result<Self::Tensor> {
        composite::softmax_grad::<Self>(y, dy)
    }
}

/// Shorthand for a backend's f32 tensor primitive.
pub type Prim<B> = <B as Backend>::Tensor;
