//! # protocell-cuda
//!
//! The CUDA backend of protocell: cudarc with dynamic loading (building needs no CUDA
//! toolkit), CUDA C kernels (`backend-cuda/kernels/`) compiled at run time by NVRTC for the
//! device's compute capability (once per device per process), cuBLAS for matrix products
//! (a tiled kernel when cuBLAS is not installed) and a caching allocator (buffers pooled by
//! size class: no `cuMemAlloc` per op in steady state).
//!
//! Fused kernels: softmax, LayerNorm and RMSNorm forward/backward, cross-entropy forward and
//! backward, AdamW, attention (plain and packed, causal, dropout) forward/backward and the
//! colony update forward/backward; they mirror protocell-wgpu's WGSL kernels.
//!
//! Each kernel takes its launch parameters by value as one struct after its pointers
//! (`const ColonyParams p`), defined once in Rust in `protocell-core` (`backend::kernel_abi`,
//! `cell::kernel`); [`source`] starts with the structs' C declarations, generated from those
//! definitions with `static_assert`s of their sizes and field offsets ([`KERNELS`] lists every
//! entry point and its struct). The host code of the attention and colony kernels is core's
//! too, through [`GpuKernels`].
//!
//! No CUDA on the machine (no driver library, no device, no NVRTC) is an `Err` starting with
//! "CUDA unavailable", never a panic: the libraries are probed before any driver call.
//! NVRTC and cuBLAS are found through the loader's path or in `PROTOCELL_CUDA_LIB_DIR`,
//! `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`.
use protocell_core::backend::kernel_abi::{
    self, broadcast_strides, check_ids, scatter_csr, u32_of, AdamWParams, BinaryParams, CopyParams,
    CrossEntropyBwdParams, FillParams, GpuKernels, Grid, IndexParams, KernelParams, LayerNormParams, MatmulParams,
    NormBwdParams, RandomParams, ReduceParams, RowParams, UnaryParams,
};
use protocell_core::backend::{AdamWStep, AttnSpec, Backend, Binary, Dist, MemoryStats, NnOps, Reduce, Unary};
use protocell_core::cell::{kernel as colony, CellOps, ColonyGrads, ColonyOut, ColonySpec};
use protocell_core::error::{Error, Result};
use protocell_core::rng::RngKey;
use protocell_core::shape;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

mod context;

use context::PoolBuf;
pub use context::{
    compile, compile_cubin, driver_present, nvrtc_present, source, Context, Kernel, KERNELS, PARAM_WORDS,
};

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;
/// Threads per block of the row kernels (`ROW_THREADS` in `kernels/prelude.cuh`).
const ROW: u32 = 128;

/// The CUDA backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cuda;

/// A CUDA device (cheap to clone; one context per device per process).
#[derive(Clone)]
pub struct CudaDevice {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({})", self.ctx.info)
    }
}

impl PartialEq for CudaDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }
}

impl CudaDevice {
    /// Device `ordinal`, opened once per process and shared. Without CUDA: an `Err` starting
    /// with "CUDA unavailable".
    pub fn new(ordinal: usize) -> Result<Self> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<Context>>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Default::default).lock().map_err(|_| Error::Backend("cuda registry".into()))?;
        if let Some(ctx) = open.get(&ordinal) {
            return Ok(Self { ctx: ctx.clone() });
        }
        let ctx = Context::new(ordinal)?;
        open.insert(ordinal, ctx.clone());
        Ok(Self { ctx })
    }

    /// Device description.
    pub fn info(&self) -> &str {
        &self.ctx.info
    }

    /// Returns the pool's unused blocks to the driver.
    pub fn trim(&self) {
        self.ctx.trim();
    }

    fn alloc(&self, n: usize) -> Result<Arc<PoolBuf>> {
        self.ctx.alloc(4 * n)
    }
    fn tensor(&self, buf: Arc<PoolBuf>, shape: Vec<usize>) -> CudaTensor {
        CudaTensor { buf, shape, dev: self.clone() }
    }
    /// An elementwise launch over `n` threads.
    fn launch_n<P: KernelParams>(&self, name: &'static str, ptrs: &[u64], p: &P, n: usize) -> Result<()> {
        self.ctx.launch(name, ptrs, p, (blocks(n)?, 1, 1), (BLOCK, 1, 1))
    }
    /// A row launch: one block of [`ROW`] threads per row.
    fn launch_rows<P: KernelParams>(&self, name: &'static str, ptrs: &[u64], p: &P, rows: usize) -> Result<()> {
        self.ctx.launch(name, ptrs, p, (u32_of(rows, "rows")?, 1, 1), (ROW, 1, 1))
    }

    /// The strided copy kernel: every index of `shape` from `src` to `dst`.
    fn copy(&self, shape: &[usize], src: View, dst: View) -> Result<()> {
        let n = shape::numel(shape);
        if n == 0 {
            return Ok(());
        }
        let p = CopyParams::new(shape, src.base, src.strides, dst.base, dst.strides)?;
        self.launch_n("copy", &[src.ptr, dst.ptr], &p, n)
    }
}

/// A strided view: element `j` of a logical shape is at `base + Σ jₖ·strides[k]`.
struct View<'a> {
    ptr: u64,
    base: usize,
    strides: &'a [usize],
}

/// An f32 tensor in a pooled device buffer (row-major, contiguous).
#[derive(Clone)]
pub struct CudaTensor {
    buf: Arc<PoolBuf>,
    shape: Vec<usize>,
    dev: CudaDevice,
}

impl CudaTensor {
    fn ptr(&self) -> u64 {
        self.buf.ptr()
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?}", self.shape)
    }
}

/// Token ids on the device, with a host copy for range checks and the scatter index.
#[derive(Clone)]
pub struct CudaIds {
    buf: Arc<PoolBuf>,
    host: Arc<Vec<u32>>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for CudaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaIds{:?}", self.shape)
    }
}

fn blocks(n: usize) -> Result<u32> {
    Ok(u32_of(n, "element count")?.div_ceil(BLOCK))
}

impl Backend for Cuda {
    type Device = CudaDevice;
    type Tensor = CudaTensor;
    type Ids = CudaIds;

    fn name() -> String {
        "cuda".into()
    }
    fn sync(dev: &CudaDevice) -> Result<()> {
        dev.ctx.sync()
    }
    fn memory_stats(dev: &CudaDevice) -> Option<MemoryStats> {
        Some(dev.ctx.memory_stats())
    }
    fn shape(t: &CudaTensor) -> &[usize] {
        &t.shape
    }
    fn device(t: &CudaTensor) -> CudaDevice {
        t.dev.clone()
    }
    fn ids_shape(t: &CudaIds) -> &[usize] {
        &t.shape
    }

    fn from_f32(data: &[f32], shape: &[usize], dev: &CudaDevice) -> Result<CudaTensor> {
        if data.len() != shape::numel(shape) {
            return Err(Error::Shape { op: "from_f32", msg: format!("{} values for {shape:?}", data.len()) });
        }
        Ok(dev.tensor(dev.ctx.upload(data)?, shape.to_vec()))
    }
    fn full(value: f32, shape: &[usize], dev: &CudaDevice) -> Result<CudaTensor> {
        let n = shape::checked_numel(shape)?;
        let out = dev.alloc(n)?;
        dev.launch_n("fill", &[out.ptr()], &FillParams { n: u32_of(n, "elements")?, value }, n)?;
        Ok(dev.tensor(out, shape.to_vec()))
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &CudaDevice) -> Result<CudaTensor> {
        let n = shape::checked_numel(shape)?;
        let out = dev.alloc(n)?;
        dev.launch_n("random", &[out.ptr()], &RandomParams::new(dist, key, n)?, n)?;
        Ok(dev.tensor(out, shape.to_vec()))
    }
    fn to_f32(t: CudaTensor) -> Result<Vec<f32>> {
        t.dev.ctx.read(&t.buf, shape::numel(&t.shape))
    }
    fn ids_from_u32(data: &[u32], shape: &[usize], dev: &CudaDevice) -> Result<CudaIds> {
        if data.len() != shape::numel(shape) {
            return Err(Error::Shape { op: "ids_from_u32", msg: format!("{} values for {shape:?}", data.len()) });
        }
        Ok(CudaIds { buf: dev.ctx.upload(data)?, host: Arc::new(data.to_vec()), shape: shape.to_vec() })
    }
    fn ids_to_u32(t: CudaIds) -> Result<Vec<u32>> {
        Ok(Arc::try_unwrap(t.host).unwrap_or_else(|a| a.as_ref().clone()))
    }
    fn ids_reshape(t: CudaIds, shape: &[usize]) -> Result<CudaIds> {
        Ok(CudaIds { shape: shape.to_vec(), ..t })
    }

    fn reshape(x: CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        Ok(CudaTensor { shape: shape.to_vec(), ..x })
    }
    fn permute(x: CudaTensor, axes: &[usize]) -> Result<CudaTensor> {
        let s = shape::strides(&x.shape);
        let out_shape: Vec<usize> = axes.iter().map(|&a| x.shape[a]).collect();
        let src_strides: Vec<usize> = axes.iter().map(|&a| s[a]).collect();
        let out = x.dev.alloc(shape::numel(&out_shape))?;
        let ds = shape::strides(&out_shape);
        let src = View { ptr: x.ptr(), base: 0, strides: &src_strides };
        x.dev.copy(&out_shape, src, View { ptr: out.ptr(), base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn narrow(x: CudaTensor, axis: usize, start: usize, len: usize) -> Result<CudaTensor> {
        let s = shape::strides(&x.shape);
        let mut out_shape = x.shape.clone();
        out_shape[axis] = len;
        let out = x.dev.alloc(shape::numel(&out_shape))?;
        let ds = shape::strides(&out_shape);
        let src = View { ptr: x.ptr(), base: start * s[axis], strides: &s };
        x.dev.copy(&out_shape, src, View { ptr: out.ptr(), base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn concat(xs: Vec<CudaTensor>, axis: usize) -> Result<CudaTensor> {
        let first = xs.first().ok_or_else(|| Error::InvalidArgument("concat of no tensors".into()))?;
        let dev = first.dev.clone();
        let mut out_shape = first.shape.clone();
        out_shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
        let ds = shape::strides(&out_shape);
        let out = dev.alloc(shape::numel(&out_shape))?;
        let mut at = 0;
        for x in &xs {
            let xs = shape::strides(&x.shape);
            let src = View { ptr: x.ptr(), base: 0, strides: &xs };
            dev.copy(&x.shape, src, View { ptr: out.ptr(), base: at * ds[axis], strides: &ds })?;
            at += x.shape[axis];
        }
        Ok(dev.tensor(out, out_shape))
    }
    fn expand(x: CudaTensor, to: &[usize]) -> Result<CudaTensor> {
        let src_strides = broadcast_strides(&x.shape, to);
        let out = x.dev.alloc(shape::numel(to))?;
        let ds = shape::strides(to);
        let src = View { ptr: x.ptr(), base: 0, strides: &src_strides };
        x.dev.copy(to, src, View { ptr: out.ptr(), base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, to.to_vec()))
    }
    fn pad(x: CudaTensor, axis: usize, before: usize, after: usize) -> Result<CudaTensor> {
        let mut out_shape = x.shape.clone();
        out_shape[axis] += before + after;
        let out = Self::full(0.0, &out_shape, &x.dev)?;
        let ds = shape::strides(&out_shape);
        let xs = shape::strides(&x.shape);
        let src = View { ptr: x.ptr(), base: 0, strides: &xs };
        x.dev.copy(&x.shape, src, View { ptr: out.ptr(), base: before * ds[axis], strides: &ds })?;
        Ok(out)
    }

    fn unary(op: Unary, x: CudaTensor) -> Result<CudaTensor> {
        let n = shape::numel(&x.shape);
        let out = x.dev.alloc(n)?;
        x.dev.launch_n("unary", &[x.ptr(), out.ptr()], &UnaryParams::new(op, n)?, n)?;
        Ok(x.dev.tensor(out, x.shape))
    }
    fn binary(op: Binary, a: CudaTensor, b: CudaTensor) -> Result<CudaTensor> {
        let out_shape = shape::broadcast_shapes("binary", &a.shape, &b.shape)?;
        let n = shape::numel(&out_shape);
        let p = BinaryParams::new(op, &out_shape, &a.shape, &b.shape)?;
        let out = a.dev.alloc(n)?;
        a.dev.launch_n("binary", &[a.ptr(), b.ptr(), out.ptr()], &p, n)?;
        Ok(a.dev.tensor(out, out_shape))
    }
    fn reduce(op: Reduce, x: CudaTensor, axis: usize) -> Result<CudaTensor> {
        let n = x.shape[axis];
        let inner: usize = x.shape[axis + 1..].iter().product();
        let outer: usize = x.shape[..axis].iter().product();
        let mut out_shape = x.shape.clone();
        out_shape[axis] = 1;
        if n == 0 {
            let v = match op {
                Reduce::Sum => 0.0,
                Reduce::Mean => f32::NAN,
                Reduce::Max => f32::NEG_INFINITY,
                Reduce::Min => f32::INFINITY,
            };
            return Self::full(v, &out_shape, &x.dev);
        }
        let m = outer * inner;
        let out = x.dev.alloc(m)?;
        let p = ReduceParams::new(op, outer, n, inner)?;
        x.dev.launch_rows("reduce", &[x.ptr(), out.ptr()], &p, m)?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn matmul(a: CudaTensor, b: CudaTensor, ta: bool, tb: bool) -> Result<CudaTensor> {
        let (ra, rb) = (a.shape.len(), b.shape.len());
        let (m, k) = if ta { (a.shape[ra - 1], a.shape[ra - 2]) } else { (a.shape[ra - 2], a.shape[ra - 1]) };
        let n = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
        let batch_dims: Vec<usize> = if ra >= rb { a.shape[..ra - 2].to_vec() } else { b.shape[..rb - 2].to_vec() };
        let batch: usize = batch_dims.iter().product();
        let a_stride = if ra > 2 { m * k } else { 0 };
        let b_stride = if rb > 2 { k * n } else { 0 };
        let mut out_shape = batch_dims;
        out_shape.extend([m, n]);
        let total = batch * m * n;
        let out = a.dev.alloc(total)?;
        if total == 0 {
            return Ok(a.dev.tensor(out, out_shape));
        }
        if k == 0 {
            return Self::full(0.0, &out_shape, &a.dev);
        }
        let ctx = &a.dev.ctx;
        if let Some(blas) = &ctx.blas {
            gemm(ctx, blas, &a, &b, &out, Gemm { batch, m, n, k, ta, tb, a_stride, b_stride })?;
        } else {
            let p = MatmulParams {
                batch: u32_of(batch, "batch")?,
                m: u32_of(m, "m")?,
                n: u32_of(n, "n")?,
                k: u32_of(k, "k")?,
                ta: ta as u32,
                tb: tb as u32,
                a_stride: u32_of(a_stride, "stride")?,
                b_stride: u32_of(b_stride, "stride")?,
                tiles_n: u32_of(n.div_ceil(16), "tiles")?,
                tiles_m: u32_of(m.div_ceil(16), "tiles")?,
            };
            let grid = (p.tiles_n, p.tiles_m, p.batch);
            ctx.launch("matmul", &[a.ptr(), b.ptr(), out.ptr()], &p, grid, (16, 16, 1))?;
        }
        Ok(a.dev.tensor(out, out_shape))
    }
    fn gather_rows(table: CudaTensor, ids: CudaIds) -> Result<CudaTensor> {
        let (rows, d) = (table.shape[0], table.shape[1]);
        check_ids("gather_rows", &ids.host, rows)?;
        let n = ids.host.len() * d;
        let out = table.dev.alloc(n)?;
        let p = IndexParams { n: u32_of(n, "elements")?, width: u32_of(d.max(1), "width")? };
        table.dev.launch_n("gather", &[table.ptr(), ids.buf.ptr(), out.ptr()], &p, n)?;
        let mut shape = ids.shape.clone();
        shape.push(d);
        Ok(table.dev.tensor(out, shape))
    }
    fn softmax(x: CudaTensor) -> Result<CudaTensor> {
        let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("softmax needs rank >= 1".into()))?;
        let n = shape::numel(&x.shape);
        let out = x.dev.alloc(n)?;
        if n > 0 {
            let rows = n / d;
            let p = RowParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")? };
            x.dev.launch_rows("softmax", &[x.ptr(), out.ptr()], &p, rows)?;
        }
        Ok(x.dev.tensor(out, x.shape))
    }
    fn scatter_add_rows(src: CudaTensor, ids: CudaIds, rows: usize) -> Result<CudaTensor> {
        let d = *src.shape.last().unwrap_or(&1);
        check_ids("scatter_add_rows", &ids.host, rows)?;
        let (starts, order) = scatter_csr(&ids.host, rows);
        let n = rows * d;
        let dev = &src.dev;
        let out = dev.alloc(n)?;
        let sb = dev.ctx.upload(&starts)?;
        let ob = dev.ctx.upload(&order)?;
        let p = IndexParams { n: u32_of(n, "elements")?, width: u32_of(d.max(1), "width")? };
        dev.launch_n("scatter", &[src.ptr(), sb.ptr(), ob.ptr(), out.ptr()], &p, n)?;
        Ok(dev.tensor(out, vec![rows, d]))
    }
}

/// One batched product `C[b] = op(A[b])·op(B[b])` (row-major; batch stride 0 shares a matrix).
struct Gemm {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    a_stride: usize,
    b_stride: usize,
}

/// [`Gemm`] through cuBLAS (column-major): the row-major `C = op(A)·op(B)` is the
/// column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`, so B goes first with m and n swapped.
fn gemm(
    ctx: &Context,
    blas: &Mutex<cudarc::cublas::CudaBlas>,
    a: &CudaTensor,
    b: &CudaTensor,
    c: &PoolBuf,
    g: Gemm,
) -> Result<()> {
    use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    let int = |v: usize, what: &str| {
        i32::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} exceeds cuBLAS's int")))
    };
    let (m, n, k) = (int(g.m, "m")?, int(g.n, "n")?, int(g.k, "k")?);
    let op_b = if g.tb { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let op_a = if g.ta { CUBLAS_OP_T } else { CUBLAS_OP_N };
    let ldb = if g.tb { k } else { n };
    let lda = if g.ta { m } else { k };
    let (alpha, beta) = (1.0f32, 0.0f32);
    let blas = blas.lock().map_err(|_| Error::Backend("cuBLAS handle poisoned".into()))?;
    ctx.ctx.bind_to_thread().map_err(|e| Error::Backend(format!("CUDA bind: {e}")))?;
    // SAFETY: the pointers are live device allocations sized for these shapes; the handle is
    // bound to the context's stream, so the product is ordered with the kernels around it.
    unsafe {
        cudarc::cublas::result::sgemm_strided_batched(
            *blas.handle(),
            op_b,
            op_a,
            n,
            m,
            k,
            &alpha,
            b.ptr() as *const f32,
            ldb,
            g.b_stride as i64,
            a.ptr() as *const f32,
            lda,
            g.a_stride as i64,
            &beta,
            c.ptr() as *mut f32,
            n,
            (g.m * g.n) as i64,
            int(g.batch, "batch")?,
        )
    }
    .map_err(|e| Error::Backend(format!("cuBLAS sgemm: {e}")))
}

/// LayerNorm (`beta` given) or RMSNorm (`beta` absent) forward: `(y, mean, rstd)`.
fn norm_fwd(
    x: CudaTensor,
    gamma: CudaTensor,
    beta: Option<CudaTensor>,
    eps: f32,
) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
    let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("layer_norm needs rank >= 1".into()))?;
    let n = shape::numel(&x.shape);
    let rows = n.checked_div(d).unwrap_or(0);
    let dev = &x.dev;
    let (y, mean, rstd) = (dev.alloc(n)?, dev.alloc(rows)?, dev.alloc(rows)?);
    let rms = beta.is_none();
    let beta_ptr = beta.as_ref().map_or(gamma.ptr(), |b| b.ptr()); // not read for RMSNorm
    let p = LayerNormParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")?, eps, rms: rms as u32 };
    dev.launch_rows("layer_norm", &[x.ptr(), gamma.ptr(), beta_ptr, y.ptr(), mean.ptr(), rstd.ptr()], &p, rows)?;
    let mut stat_shape = x.shape.clone();
    *stat_shape.last_mut().expect("rank >= 1") = 1;
    Ok((dev.tensor(y, x.shape.clone()), dev.tensor(mean, stat_shape.clone()), dev.tensor(rstd, stat_shape)))
}

/// Backward of [`norm_fwd`]: `(dx, dgamma, dbeta)` (RMSNorm when `mean` is absent).
fn norm_bwd(
    x: CudaTensor,
    gamma: CudaTensor,
    mean: Option<CudaTensor>,
    rstd: CudaTensor,
    dy: CudaTensor,
) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
    let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("layer_norm needs rank >= 1".into()))?;
    let n = shape::numel(&x.shape);
    let rows = n.checked_div(d).unwrap_or(0);
    let dev = &x.dev;
    let (dx, dgamma, dbeta) = (dev.alloc(n)?, dev.alloc(d)?, dev.alloc(d)?);
    let p = NormBwdParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")?, rms: mean.is_none() as u32 };
    let mean_ptr = mean.as_ref().map_or(rstd.ptr(), |m| m.ptr()); // not read for RMSNorm
    dev.launch_rows("layer_norm_bwd", &[x.ptr(), gamma.ptr(), mean_ptr, rstd.ptr(), dy.ptr(), dx.ptr()], &p, rows)?;
    dev.launch_n("layer_norm_params", &[x.ptr(), mean_ptr, rstd.ptr(), dy.ptr(), dgamma.ptr(), dbeta.ptr()], &p, d)?;
    Ok((dev.tensor(dx, x.shape.clone()), dev.tensor(dgamma, vec![d]), dev.tensor(dbeta, vec![d])))
}

/// Fused kernels for every extension op (mirroring the wgpu backend's).
impl NnOps<Cuda> for Cuda {
    fn layer_norm_fwd(
        x: CudaTensor,
        gamma: CudaTensor,
        beta: CudaTensor,
        eps: f32,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        norm_fwd(x, gamma, Some(beta), eps)
    }
    fn layer_norm_bwd(
        x: CudaTensor,
        gamma: CudaTensor,
        mean: CudaTensor,
        rstd: CudaTensor,
        dy: CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        norm_bwd(x, gamma, Some(mean), rstd, dy)
    }
    fn rms_norm_fwd(x: CudaTensor, gamma: CudaTensor, eps: f32) -> Result<(CudaTensor, CudaTensor)> {
        let (y, _, rstd) = norm_fwd(x, gamma, None, eps)?;
        Ok((y, rstd))
    }
    fn rms_norm_bwd(
        x: CudaTensor,
        gamma: CudaTensor,
        rstd: CudaTensor,
        dy: CudaTensor,
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (dx, dgamma, _) = norm_bwd(x, gamma, None, rstd, dy)?;
        Ok((dx, dgamma))
    }
    fn attention_fwd(
        q: CudaTensor,
        k: CudaTensor,
        v: CudaTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(CudaTensor, CudaTensor)> {
        kernel_abi::attention_fwd::<Cuda>(q, k, v, causal, scale)
    }
    fn attention_bwd(
        q: CudaTensor,
        k: CudaTensor,
        v: CudaTensor,
        _o: CudaTensor,
        lse: CudaTensor,
        dout: CudaTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        kernel_abi::attention_bwd::<Cuda>(q, k, v, lse, dout, causal, scale)
    }
    fn self_attention_fwd(qkv: CudaTensor, spec: &AttnSpec) -> Result<(CudaTensor, CudaTensor)> {
        kernel_abi::self_attention_fwd::<Cuda>(qkv, spec)
    }
    fn self_attention_bwd(
        qkv: CudaTensor,
        _o: CudaTensor,
        lse: CudaTensor,
        dout: CudaTensor,
        spec: &AttnSpec,
    ) -> Result<CudaTensor> {
        kernel_abi::self_attention_bwd::<Cuda>(qkv, lse, dout, spec)
    }
    fn cross_entropy_fwd(logits: CudaTensor, targets: CudaIds) -> Result<(CudaTensor, CudaTensor)> {
        let (n, v) = (logits.shape[0], logits.shape[1]);
        check_ids("cross_entropy", &targets.host, v)?;
        let dev = &logits.dev;
        let (lse, nll) = (dev.alloc(n)?, dev.alloc(n)?);
        let p = RowParams { rows: u32_of(n, "rows")?, width: u32_of(v, "classes")? };
        dev.launch_rows("cross_entropy", &[logits.ptr(), targets.buf.ptr(), lse.ptr(), nll.ptr()], &p, n)?;
        let loss = Self::reduce(Reduce::Mean, dev.tensor(nll, vec![n]), 0)?;
        Ok((Self::reshape(loss, &[])?, dev.tensor(lse, vec![n, 1])))
    }
    fn cross_entropy_bwd(
        logits: CudaTensor,
        targets: CudaIds,
        lse: CudaTensor,
        dloss: CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, v) = (logits.shape[0], logits.shape[1]);
        check_ids("cross_entropy", &targets.host, v)?;
        let dev = &logits.dev;
        let total = n * v;
        let out = dev.alloc(total)?;
        let p = CrossEntropyBwdParams {
            n: u32_of(total, "elements")?,
            classes: u32_of(v.max(1), "classes")?,
            inv_rows: 1.0 / n.max(1) as f32,
        };
        let ptrs = [logits.ptr(), targets.buf.ptr(), lse.ptr(), dloss.ptr(), out.ptr()];
        dev.launch_n("cross_entropy_bwd", &ptrs, &p, total)?;
        Ok(dev.tensor(out, vec![n, v]))
    }
    fn adamw_step(
        w: CudaTensor,
        g: CudaTensor,
        m: CudaTensor,
        v: CudaTensor,
        h: &AdamWStep,
    ) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
        let n = shape::numel(&w.shape);
        let dev = &w.dev;
        let (wo, mo, vo) = (dev.alloc(n)?, dev.alloc(n)?, dev.alloc(n)?);
        let p = AdamWParams::new(h, n)?;
        dev.launch_n("adamw", &[w.ptr(), g.ptr(), m.ptr(), v.ptr(), wo.ptr(), mo.ptr(), vo.ptr()], &p, n)?;
        let s = w.shape.clone();
        Ok((dev.tensor(wo, s.clone()), dev.tensor(mo, s.clone()), dev.tensor(vo, s)))
    }
}

/// The colony update, one thread per token (`kernels/colony.cu`), recomputing backward; the
/// host side is `protocell_core::cell::kernel`'s.
/// Presynaptic release runs the host scan of the family's default for now (the scores travel
/// to the host and back); a dedicated kernel is future work.
impl protocell_core::synapse::SynapseOps<Cuda> for Cuda {}

impl CellOps<Cuda> for Cuda {
    fn colony_fwd(
        h0: CudaTensor,
        w0: CudaTensor,
        stim: CudaTensor,
        coeffs: CudaTensor,
        spec: &ColonySpec,
    ) -> Result<ColonyOut<Cuda>> {
        colony::colony_fwd::<Cuda>(h0, w0, stim, coeffs, spec)
    }
    fn colony_bwd(
        h0: CudaTensor,
        w0: CudaTensor,
        stim: CudaTensor,
        coeffs: CudaTensor,
        spec: &ColonySpec,
        dh: CudaTensor,
        dw: CudaTensor,
    ) -> Result<ColonyGrads<Cuda>> {
        colony::colony_bwd::<Cuda>(h0, w0, stim, coeffs, spec, dh, dw)
    }
}

/// What the shared host code of the fused kernels (attention, colony) launches through.
impl GpuKernels for Cuda {
    fn alloc(dev: &CudaDevice, n: usize) -> Result<CudaTensor> {
        Ok(dev.tensor(dev.alloc(n)?, vec![n]))
    }
    fn launch<P: KernelParams>(
        dev: &CudaDevice,
        name: &'static str,
        bufs: &[&CudaTensor],
        params: &P,
        grid: Grid,
    ) -> Result<()> {
        let ptrs: Vec<u64> = bufs.iter().map(|t| t.ptr()).collect();
        match grid {
            Grid::Items(n) => dev.launch_n(name, &ptrs, params, n),
            Grid::Rows(n) => dev.launch_rows(name, &ptrs, params, n),
        }
    }
    fn copy_words(src: &CudaTensor, src_at: usize, dst: &CudaTensor, dst_at: usize, n: usize) -> Result<()> {
        src.dev.ctx.copy_words(&src.buf, src_at, &dst.buf, dst_at, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A skip line on the process's stderr, past the test harness's capture.
    fn skip(why: &str) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
    }

    /// Every kernel compiles with NVRTC (needs NVRTC, not a GPU; skipped with a line when
    /// NVRTC is not installed): the generated parameter structs' `static_assert`s hold (the C
    /// size and field offsets are the Rust ones), and every entry point takes its struct, of
    /// the Rust size, as its last parameter.
    #[test]
    fn kernels_compile_with_nvrtc() {
        if !nvrtc_present() {
            skip("kernels_compile_with_nvrtc: NVRTC (libnvrtc.so.13) not found; set PROTOCELL_CUDA_LIB_DIR to its directory");
            return;
        }
        for arch in ["compute_80", "compute_90"] {
            let ptx = compile(Some(arch)).unwrap_or_else(|e| panic!("{arch}: {e}"));
            let src = ptx.to_src();
            for k in KERNELS {
                // the last parameter of the entry is the struct, of the Rust size
                let entry = format!(".entry {}(", k.name);
                let at = src.find(&entry).unwrap_or_else(|| panic!("{arch}: kernel {} missing from the PTX", k.name));
                let params = &src[at + entry.len()..];
                let params = &params[..params.find(')').expect("PTX parameter list")];
                let last = params.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default();
                let want = format!("[{}]", k.params.size);
                assert!(
                    last.starts_with(".param .align 4 .b8 ") && last.ends_with(&want),
                    "{arch}: kernel {} takes `{last}`, not its {} of {} bytes",
                    k.name,
                    k.params.name,
                    k.params.size
                );
            }
        }
        // the cubins a device of these architectures loads (no PTX JIT by the driver)
        for arch in ["sm_80", "sm_90"] {
            let cubin = compile_cubin(arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
            assert_eq!(&cubin[..4], b"\x7fELF", "{arch}: not an ELF cubin");
        }
    }

    /// The source declares each parameter struct once, before the kernels, each fits the
    /// launch's parameter buffer, and the kernels read no positional parameter words.
    #[test]
    fn source_declares_every_parameter_struct_once() {
        let src = source();
        let prelude = src.find("// Shared by every kernel of the module").expect("prelude");
        for k in KERNELS {
            let decl = format!("struct {} {{", k.params.name);
            assert_eq!(src.matches(&decl).count(), 1, "{decl}");
            assert!(src.find(&decl).unwrap() < prelude, "{decl} after the prelude");
            assert!(src.contains(&format!("const {} p)", k.params.name)), "no kernel takes a {}", k.params.name);
            assert!(k.params.size <= 4 * PARAM_WORDS, "{} does not fit the launch buffer", k.params.name);
        }
        for old in ["p.v[", "U(", "F(", " P p", "const P&"] {
            assert!(!src.contains(old), "positional parameter words ({old}) left in the kernels");
        }
    }

    /// Without a CUDA driver, opening a device is an `Err` naming the cause, never a panic.
    #[test]
    fn no_driver_is_an_error() {
        match CudaDevice::new(0) {
            Ok(d) => eprintln!("CUDA device present ({}); the no-driver path is not exercised here", d.info()),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("CUDA unavailable"), "{msg}");
                skip(&format!("CUDA device tests: {msg}"));
            }
        }
    }
}
