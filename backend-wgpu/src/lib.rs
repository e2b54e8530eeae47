//! # protocell-wgpu
//!
//! The wgpu backend of protocell: WGSL compute kernels (`backend-wgpu/kernels/`) for every
//! primitive op of [`protocell_core::backend::Backend`], cached pipelines and pooled
//! buffers, run on Vulkan, Metal, DX12 or GL (Mesa's lavapipe/llvmpipe in CI).
//!
//! Fused WGSL kernels for every extension op of [`NnOps`] and [`CellOps`] but `linear` and
//! `sum_squares` (a matrix product and a reduction): softmax, LayerNorm and RMSNorm forward
//! and backward, cross-entropy forward and backward, the AdamW update, attention (plain and
//! packed, causal, dropout) forward and backward, and the colony update forward and backward.
//!
//! Each kernel reads its launch parameters as one struct bound after its buffers
//! (`var<storage, read> p: ColonyParams`), defined once in Rust in `protocell-core`
//! (`backend::kernel_abi`, `cell::kernel`); the struct's WGSL declaration is generated from that
//! definition and prepended when the pipeline is built ([`KERNELS`] lists every pipeline and
//! its struct). The host code of the attention and colony kernels is core's too, through
//! [`GpuKernels`].
//!
//! Adapters follow wgpu's environment variables (`WGPU_BACKEND=vulkan|gl|…`,
//! `WGPU_ADAPTER_NAME`); `WgpuDevice::new(i)` opens the `i`-th adapter with compute shaders.
//! Validation errors, out-of-memory and a lost device come back as `Err`s from the op that
//! met them.
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
mod kernels;

pub use context::{adapters, Context};
use context::{PoolBuf, WG};
use kernels::*;
pub use kernels::{Kernel, KERNELS};

/// The wgpu backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wgpu;

/// A wgpu adapter and its device (cheap to clone; one context per adapter per process).
#[derive(Clone)]
pub struct WgpuDevice {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for WgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuDevice({})", self.ctx.info)
    }
}

impl PartialEq for WgpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }
}

impl WgpuDevice {
    /// Adapter `index` (see [`adapters`]); opened once per process and shared.
    pub fn new(index: usize) -> Result<Self> {
        static OPEN: OnceLock<Mutex<HashMap<usize, Arc<Context>>>> = OnceLock::new();
        let mut open = OPEN.get_or_init(Default::default).lock().map_err(|_| Error::Backend("wgpu registry".into()))?;
        if let Some(ctx) = open.get(&index) {
            return Ok(Self { ctx: ctx.clone() });
        }
        let ctx = Context::new(index)?;
        open.insert(index, ctx.clone());
        Ok(Self { ctx })
    }

    /// Adapter description.
    pub fn info(&self) -> &str {
        &self.ctx.info
    }
}

/// An f32 tensor in a pooled device buffer (row-major, contiguous).
#[derive(Clone)]
pub struct WgpuTensor {
    buf: Arc<PoolBuf>,
    shape: Vec<usize>,
    dev: WgpuDevice,
}

impl std::fmt::Debug for WgpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuTensor{:?}", self.shape)
    }
}

/// Token ids on the device, with a host copy for range checks and the scatter index.
#[derive(Clone)]
pub struct WgpuIds {
    buf: Arc<PoolBuf>,
    host: Arc<Vec<u32>>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for WgpuIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuIds{:?}", self.shape)
    }
}

fn groups(n: usize) -> Result<u32> {
    Ok(u32_of(n, "element count")?.div_ceil(WG))
}

impl WgpuDevice {
    fn alloc(&self, n: usize) -> Result<Arc<PoolBuf>> {
        self.ctx.alloc(4 * n as u64)
    }
    fn tensor(&self, buf: Arc<PoolBuf>, shape: Vec<usize>) -> WgpuTensor {
        WgpuTensor { buf, shape, dev: self.clone() }
    }

    /// The strided copy kernel (see `kernels/copy.wgsl`): every index of `shape` from `src`
    /// to `dst`.
    fn copy(&self, shape: &[usize], src: View, dst: View) -> Result<()> {
        let n = shape::numel(shape);
        if n == 0 {
            return Ok(());
        }
        let p = CopyParams::new(shape, src.base, src.strides, dst.base, dst.strides)?;
        self.ctx.launch(&COPY, &[src.buf, dst.buf], &p, groups(n)?)
    }
}

/// A strided view of a buffer: element `j` of a logical shape is at `base + Σ jₖ·strides[k]`.
struct View<'a> {
    buf: &'a wgpu::Buffer,
    base: usize,
    strides: &'a [usize],
}

impl Backend for Wgpu {
    type Device = WgpuDevice;
    type Tensor = WgpuTensor;
    type Ids = WgpuIds;

    fn name() -> String {
        "wgpu".into()
    }
    fn sync(dev: &WgpuDevice) -> Result<()> {
        dev.ctx.sync()
    }
    fn memory_stats(dev: &WgpuDevice) -> Option<MemoryStats> {
        Some(dev.ctx.memory_stats())
    }
    fn shape(t: &WgpuTensor) -> &[usize] {
        &t.shape
    }
    fn device(t: &WgpuTensor) -> WgpuDevice {
        t.dev.clone()
    }
    fn ids_shape(t: &WgpuIds) -> &[usize] {
        &t.shape
    }

    fn from_f32(data: &[f32], shape: &[usize], dev: &WgpuDevice) -> Result<WgpuTensor> {
        if data.len() != shape::numel(shape) {
            return Err(Error::Shape { op: "from_f32", msg: format!("{} values for {shape:?}", data.len()) });
        }
        Ok(dev.tensor(dev.ctx.upload(data)?, shape.to_vec()))
    }
    fn full(value: f32, shape: &[usize], dev: &WgpuDevice) -> Result<WgpuTensor> {
        let n = shape::checked_numel(shape)?;
        let out = dev.alloc(n)?;
        dev.ctx.launch(&FILL, &[&out.buf], &FillParams { n: u32_of(n, "elements")?, value }, groups(n)?)?;
        Ok(dev.tensor(out, shape.to_vec()))
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &WgpuDevice) -> Result<WgpuTensor> {
        let n = shape::checked_numel(shape)?;
        let out = dev.alloc(n)?;
        dev.ctx.launch(&RANDOM, &[&out.buf], &RandomParams::new(dist, key, n)?, groups(n)?)?;
        Ok(dev.tensor(out, shape.to_vec()))
    }
    fn to_f32(t: WgpuTensor) -> Result<Vec<f32>> {
        t.dev.ctx.read(&t.buf.buf, shape::numel(&t.shape))
    }
    fn ids_from_u32(data: &[u32], shape: &[usize], dev: &WgpuDevice) -> Result<WgpuIds> {
        if data.len() != shape::numel(shape) {
            return Err(Error::Shape { op: "ids_from_u32", msg: format!("{} values for {shape:?}", data.len()) });
        }
        Ok(WgpuIds { buf: dev.ctx.upload(data)?, host: Arc::new(data.to_vec()), shape: shape.to_vec() })
    }
    fn ids_to_u32(t: WgpuIds) -> Result<Vec<u32>> {
        Ok(Arc::try_unwrap(t.host).unwrap_or_else(|a| a.as_ref().clone()))
    }
    fn ids_reshape(t: WgpuIds, shape: &[usize]) -> Result<WgpuIds> {
        Ok(WgpuIds { shape: shape.to_vec(), ..t })
    }

    fn reshape(x: WgpuTensor, shape: &[usize]) -> Result<WgpuTensor> {
        Ok(WgpuTensor { shape: shape.to_vec(), ..x })
    }
    fn permute(x: WgpuTensor, axes: &[usize]) -> Result<WgpuTensor> {
        let s = shape::strides(&x.shape);
        let out_shape: Vec<usize> = axes.iter().map(|&a| x.shape[a]).collect();
        let src_strides: Vec<usize> = axes.iter().map(|&a| s[a]).collect();
        let out = x.dev.alloc(shape::numel(&out_shape))?;
        let ds = shape::strides(&out_shape);
        let src = View { buf: &x.buf.buf, base: 0, strides: &src_strides };
        x.dev.copy(&out_shape, src, View { buf: &out.buf, base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn narrow(x: WgpuTensor, axis: usize, start: usize, len: usize) -> Result<WgpuTensor> {
        let s = shape::strides(&x.shape);
        let mut out_shape = x.shape.clone();
        out_shape[axis] = len;
        let out = x.dev.alloc(shape::numel(&out_shape))?;
        let ds = shape::strides(&out_shape);
        let src = View { buf: &x.buf.buf, base: start * s[axis], strides: &s };
        x.dev.copy(&out_shape, src, View { buf: &out.buf, base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn concat(xs: Vec<WgpuTensor>, axis: usize) -> Result<WgpuTensor> {
        let first = xs.first().ok_or_else(|| Error::InvalidArgument("concat of no tensors".into()))?;
        let dev = first.dev.clone();
        let mut out_shape = first.shape.clone();
        out_shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
        let ds = shape::strides(&out_shape);
        let out = dev.alloc(shape::numel(&out_shape))?;
        let mut at = 0;
        for x in &xs {
            let xs = shape::strides(&x.shape);
            let src = View { buf: &x.buf.buf, base: 0, strides: &xs };
            dev.copy(&x.shape, src, View { buf: &out.buf, base: at * ds[axis], strides: &ds })?;
            at += x.shape[axis];
        }
        Ok(dev.tensor(out, out_shape))
    }
    fn expand(x: WgpuTensor, to: &[usize]) -> Result<WgpuTensor> {
        let src_strides = broadcast_strides(&x.shape, to);
        let out = x.dev.alloc(shape::numel(to))?;
        let ds = shape::strides(to);
        let src = View { buf: &x.buf.buf, base: 0, strides: &src_strides };
        x.dev.copy(to, src, View { buf: &out.buf, base: 0, strides: &ds })?;
        Ok(x.dev.tensor(out, to.to_vec()))
    }
    fn pad(x: WgpuTensor, axis: usize, before: usize, after: usize) -> Result<WgpuTensor> {
        let mut out_shape = x.shape.clone();
        out_shape[axis] += before + after;
        let out = Self::full(0.0, &out_shape, &x.dev)?;
        let ds = shape::strides(&out_shape);
        let xs = shape::strides(&x.shape);
        let src = View { buf: &x.buf.buf, base: 0, strides: &xs };
        x.dev.copy(&x.shape, src, View { buf: &out.buf.buf, base: before * ds[axis], strides: &ds })?;
        Ok(out)
    }

    fn unary(op: Unary, x: WgpuTensor) -> Result<WgpuTensor> {
        let n = shape::numel(&x.shape);
        let out = x.dev.alloc(n)?;
        x.dev.ctx.launch(&UNARY, &[&x.buf.buf, &out.buf], &UnaryParams::new(op, n)?, groups(n)?)?;
        Ok(x.dev.tensor(out, x.shape))
    }
    fn binary(op: Binary, a: WgpuTensor, b: WgpuTensor) -> Result<WgpuTensor> {
        let out_shape = shape::broadcast_shapes("binary", &a.shape, &b.shape)?;
        let n = shape::numel(&out_shape);
        let p = BinaryParams::new(op, &out_shape, &a.shape, &b.shape)?;
        let out = a.dev.alloc(n)?;
        a.dev.ctx.launch(&BINARY, &[&a.buf.buf, &b.buf.buf, &out.buf], &p, groups(n)?)?;
        Ok(a.dev.tensor(out, out_shape))
    }
    fn reduce(op: Reduce, x: WgpuTensor, axis: usize) -> Result<WgpuTensor> {
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
        // one workgroup per output
        x.dev.ctx.launch(&REDUCE, &[&x.buf.buf, &out.buf], &p, u32_of(m, "outputs")?)?;
        Ok(x.dev.tensor(out, out_shape))
    }
    fn matmul(a: WgpuTensor, b: WgpuTensor, ta: bool, tb: bool) -> Result<WgpuTensor> {
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
        let (tn, tm) = (n.div_ceil(64), m.div_ceil(64));
        let p = MatmulParams {
            batch: u32_of(batch, "batch")?,
            m: u32_of(m, "m")?,
            n: u32_of(n, "n")?,
            k: u32_of(k, "k")?,
            ta: ta as u32,
            tb: tb as u32,
            a_stride: u32_of(a_stride, "stride")?,
            b_stride: u32_of(b_stride, "stride")?,
            tiles_n: u32_of(tn, "tiles")?,
            tiles_m: u32_of(tm, "tiles")?,
        };
        let g = u32_of(batch * tn * tm, "workgroups")?;
        a.dev.ctx.launch(&MATMUL, &[&a.buf.buf, &b.buf.buf, &out.buf], &p, g)?;
        Ok(a.dev.tensor(out, out_shape))
    }
    fn gather_rows(table: WgpuTensor, ids: WgpuIds) -> Result<WgpuTensor> {
        let (rows, d) = (table.shape[0], table.shape[1]);
        check_ids("gather_rows", &ids.host, rows)?;
        let n = ids.host.len() * d;
        let out = table.dev.alloc(n)?;
        let p = IndexParams { n: u32_of(n, "elements")?, width: u32_of(d.max(1), "width")? };
        table.dev.ctx.launch(&GATHER, &[&table.buf.buf, &ids.buf.buf, &out.buf], &p, groups(n)?)?;
        let mut shape = ids.shape.clone();
        shape.push(d);
        Ok(table.dev.tensor(out, shape))
    }
    fn softmax(x: WgpuTensor) -> Result<WgpuTensor> {
        let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("softmax needs rank >= 1".into()))?;
        let n = shape::numel(&x.shape);
        let out = x.dev.alloc(n)?;
        if n > 0 {
            let rows = n / d;
            let p = RowParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")? };
            x.dev.ctx.launch(&SOFTMAX, &[&x.buf.buf, &out.buf], &p, u32_of(rows, "rows")?)?;
        }
        Ok(x.dev.tensor(out, x.shape))
    }
    fn scatter_add_rows(src: WgpuTensor, ids: WgpuIds, rows: usize) -> Result<WgpuTensor> {
        let d = *src.shape.last().unwrap_or(&1);
        check_ids("scatter_add_rows", &ids.host, rows)?;
        let (starts, order) = scatter_csr(&ids.host, rows);
        let n = rows * d;
        let dev = &src.dev;
        let out = dev.alloc(n)?;
        let sb = dev.ctx.upload(&starts)?;
        let ob = dev.ctx.upload(&order)?;
        let p = IndexParams { n: u32_of(n, "elements")?, width: u32_of(d.max(1), "width")? };
        dev.ctx.launch(&SCATTER, &[&src.buf.buf, &sb.buf, &ob.buf, &out.buf], &p, groups(n)?)?;
        Ok(dev.tensor(out, vec![rows, d]))
    }
}

/// Fused kernels where they exist (`softmax` lives on [`Backend`]); the other ops run as the
/// default compositions of primitives.
impl NnOps<Wgpu> for Wgpu {
    fn layer_norm_fwd(
        x: WgpuTensor,
        gamma: WgpuTensor,
        beta: WgpuTensor,
        eps: f32,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        norm_fwd(x, gamma, Some(beta), eps)
    }
    fn layer_norm_bwd(
        x: WgpuTensor,
        gamma: WgpuTensor,
        mean: WgpuTensor,
        rstd: WgpuTensor,
        dy: WgpuTensor,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        norm_bwd(x, gamma, Some(mean), rstd, dy)
    }
    fn rms_norm_fwd(x: WgpuTensor, gamma: WgpuTensor, eps: f32) -> Result<(WgpuTensor, WgpuTensor)> {
        let (y, _, rstd) = norm_fwd(x, gamma, None, eps)?;
        Ok((y, rstd))
    }
    fn rms_norm_bwd(
        x: WgpuTensor,
        gamma: WgpuTensor,
        rstd: WgpuTensor,
        dy: WgpuTensor,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        let (dx, dgamma, _) = norm_bwd(x, gamma, None, rstd, dy)?;
        Ok((dx, dgamma))
    }
    fn attention_fwd(
        q: WgpuTensor,
        k: WgpuTensor,
        v: WgpuTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        kernel_abi::attention_fwd::<Wgpu>(q, k, v, causal, scale)
    }
    fn attention_bwd(
        q: WgpuTensor,
        k: WgpuTensor,
        v: WgpuTensor,
        _o: WgpuTensor,
        lse: WgpuTensor,
        dout: WgpuTensor,
        causal: bool,
        scale: f32,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        kernel_abi::attention_bwd::<Wgpu>(q, k, v, lse, dout, causal, scale)
    }
    fn self_attention_fwd(qkv: WgpuTensor, spec: &AttnSpec) -> Result<(WgpuTensor, WgpuTensor)> {
        kernel_abi::self_attention_fwd::<Wgpu>(qkv, spec)
    }
    fn self_attention_bwd(
        qkv: WgpuTensor,
        _o: WgpuTensor,
        lse: WgpuTensor,
        dout: WgpuTensor,
        spec: &AttnSpec,
    ) -> Result<WgpuTensor> {
        kernel_abi::self_attention_bwd::<Wgpu>(qkv, lse, dout, spec)
    }
    fn cross_entropy_fwd(logits: WgpuTensor, targets: WgpuIds) -> Result<(WgpuTensor, WgpuTensor)> {
        let (n, v) = (logits.shape[0], logits.shape[1]);
        check_ids("cross_entropy", &targets.host, v)?;
        let dev = &logits.dev;
        let lse = dev.alloc(n)?;
        let nll = dev.alloc(n)?;
        let p = RowParams { rows: u32_of(n, "rows")?, width: u32_of(v, "classes")? };
        let bufs = [&logits.buf.buf, &targets.buf.buf, &lse.buf, &nll.buf];
        dev.ctx.launch(&CROSS_ENTROPY, &bufs, &p, u32_of(n, "rows")?)?;
        let loss = Self::reduce(Reduce::Mean, dev.tensor(nll, vec![n]), 0)?;
        Ok((Self::reshape(loss, &[])?, dev.tensor(lse, vec![n, 1])))
    }
    fn cross_entropy_bwd(
        logits: WgpuTensor,
        targets: WgpuIds,
        lse: WgpuTensor,
        dloss: WgpuTensor,
    ) -> Result<WgpuTensor> {
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
        let bufs = [&logits.buf.buf, &targets.buf.buf, &lse.buf.buf, &dloss.buf.buf, &out.buf];
        dev.ctx.launch(&CROSS_ENTROPY_BWD, &bufs, &p, groups(total)?)?;
        Ok(dev.tensor(out, vec![n, v]))
    }
    fn adamw_step(
        w: WgpuTensor,
        g: WgpuTensor,
        m: WgpuTensor,
        v: WgpuTensor,
        h: &AdamWStep,
    ) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
        let n = shape::numel(&w.shape);
        let dev = &w.dev;
        let (wo, mo, vo) = (dev.alloc(n)?, dev.alloc(n)?, dev.alloc(n)?);
        let bufs = [&w.buf.buf, &g.buf.buf, &m.buf.buf, &v.buf.buf, &wo.buf, &mo.buf, &vo.buf];
        dev.ctx.launch(&ADAMW, &bufs, &AdamWParams::new(h, n)?, groups(n)?)?;
        let s = w.shape.clone();
        Ok((dev.tensor(wo, s.clone()), dev.tensor(mo, s.clone()), dev.tensor(vo, s)))
    }
}
/// The colony update as two kernels (`kernels/colony*.wgsl`), one invocation per token, the
/// equations of `protocell_core::cell::scalar` line by line; the backward pass recomputes each
/// token's trajectory, as the CPU kernel does. The host side is `protocell_core::cell::kernel`'s.
/// Presynaptic release runs the host scan of the family's default for now (the scores travel
/// to the host and back); a dedicated kernel is future work.
impl protocell_core::synapse::SynapseOps<Wgpu> for Wgpu {}

impl CellOps<Wgpu> for Wgpu {
    fn colony_fwd(
        h0: WgpuTensor,
        w0: WgpuTensor,
        stim: WgpuTensor,
        coeffs: WgpuTensor,
        spec: &ColonySpec,
    ) -> Result<ColonyOut<Wgpu>> {
        colony::colony_fwd::<Wgpu>(h0, w0, stim, coeffs, spec)
    }
    fn colony_bwd(
        h0: WgpuTensor,
        w0: WgpuTensor,
        stim: WgpuTensor,
        coeffs: WgpuTensor,
        spec: &ColonySpec,
        dh: WgpuTensor,
        dw: WgpuTensor,
    ) -> Result<ColonyGrads<Wgpu>> {
        colony::colony_bwd::<Wgpu>(h0, w0, stim, coeffs, spec, dh, dw)
    }
}

/// What the shared host code of the fused kernels (attention, colony) launches through.
impl GpuKernels for Wgpu {
    fn alloc(dev: &WgpuDevice, n: usize) -> Result<WgpuTensor> {
        Ok(dev.tensor(dev.alloc(n)?, vec![n]))
    }
    fn launch<P: KernelParams>(
        dev: &WgpuDevice,
        name: &'static str,
        bufs: &[&WgpuTensor],
        params: &P,
        grid: Grid,
    ) -> Result<()> {
        let groups = match grid {
            Grid::Items(n) => groups(n)?,
            Grid::Rows(n) => u32_of(n, "rows")?,
        };
        let bufs: Vec<&wgpu::Buffer> = bufs.iter().map(|t| &t.buf.buf).collect();
        dev.ctx.launch(kernels::by_name(name)?, &bufs, params, groups)
    }
    fn copy_words(src: &WgpuTensor, src_at: usize, dst: &WgpuTensor, dst_at: usize, n: usize) -> Result<()> {
        src.dev.ctx.copy_words(&src.buf.buf, src_at, &dst.buf.buf, dst_at, n)
    }
}

/// LayerNorm (`beta` given) or RMSNorm (`beta` absent: no centring, no shift) forward over
/// the last axis, one workgroup per row: returns `(y, mean, rstd)` (`mean` is zero-filled
/// storage for RMSNorm and not meaningful).
fn norm_fwd(
    x: WgpuTensor,
    gamma: WgpuTensor,
    beta: Option<WgpuTensor>,
    eps: f32,
) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
    let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("layer_norm needs rank >= 1".into()))?;
    let n = shape::numel(&x.shape);
    let rows = n.checked_div(d).unwrap_or(0);
    let dev = &x.dev;
    let (y, mean, rstd) = (dev.alloc(n)?, dev.alloc(rows)?, dev.alloc(rows)?);
    let rms = beta.is_none();
    let p = LayerNormParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")?, eps, rms: rms as u32 };
    let beta_buf = beta.as_ref().map_or(&gamma.buf.buf, |b| &b.buf.buf); // not read for RMSNorm
    let bufs = [&x.buf.buf, &gamma.buf.buf, beta_buf, &y.buf, &mean.buf, &rstd.buf];
    dev.ctx.launch(&LAYER_NORM, &bufs, &p, u32_of(rows, "rows")?)?;
    let mut stat_shape = x.shape.clone();
    *stat_shape.last_mut().expect("rank >= 1") = 1;
    Ok((dev.tensor(y, x.shape.clone()), dev.tensor(mean, stat_shape.clone()), dev.tensor(rstd, stat_shape)))
}

/// Backward of [`norm_fwd`]: `(dx, dgamma, dbeta)` (`dbeta` not meaningful for RMSNorm,
/// selected by `mean` being absent).
fn norm_bwd(
    x: WgpuTensor,
    gamma: WgpuTensor,
    mean: Option<WgpuTensor>,
    rstd: WgpuTensor,
    dy: WgpuTensor,
) -> Result<(WgpuTensor, WgpuTensor, WgpuTensor)> {
    let d = *x.shape.last().ok_or_else(|| Error::InvalidArgument("layer_norm needs rank >= 1".into()))?;
    let n = shape::numel(&x.shape);
    let rows = n.checked_div(d).unwrap_or(0);
    let dev = &x.dev;
    let (dx, dgamma, dbeta) = (dev.alloc(n)?, dev.alloc(d)?, dev.alloc(d)?);
    let p = NormBwdParams { rows: u32_of(rows, "rows")?, width: u32_of(d, "width")?, rms: mean.is_none() as u32 };
    let mean_buf = mean.as_ref().map_or(&rstd.buf.buf, |m| &m.buf.buf); // not read for RMSNorm
    let bufs = [&x.buf.buf, &gamma.buf.buf, mean_buf, &rstd.buf.buf, &dy.buf.buf, &dx.buf];
    dev.ctx.launch(&LAYER_NORM_BWD, &bufs, &p, u32_of(rows, "rows")?)?;
    let bufs = [&x.buf.buf, mean_buf, &rstd.buf.buf, &dy.buf.buf, &dgamma.buf, &dbeta.buf];
    dev.ctx.launch(&LAYER_NORM_PARAMS, &bufs, &p, groups(d)?)?;
    Ok((dev.tensor(dx, x.shape.clone()), dev.tensor(dgamma, vec![d]), dev.tensor(dbeta, vec![d])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Option<WgpuDevice> {
        match WgpuDevice::new(0) {
            Ok(d) => Some(d),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI needs a wgpu adapter: {e}"),
            Err(e) => {
                eprintln!("SKIPPED: no wgpu adapter ({e})");
                None
            }
        }
    }

    /// A shader that does not compile and a tensor larger than the device allows are `Err`s
    /// naming the cause, and the device keeps working after both.
    #[test]
    fn failures_are_errors_and_the_device_survives() {
        let Some(dev) = device() else { return };
        let broken =
            Kernel { name: "broken", body: "@compute @workgroup_size(1) fn main( {", params: &FillParams::LAYOUT };
        let e = dev.ctx.launch(&broken, &[], &FillParams::default(), 1).unwrap_err();
        assert!(e.to_string().contains("kernel broken"), "{e}");
        let e = Wgpu::full(0.0, &[1 << 31], &dev).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let ok = Wgpu::to_f32(Wgpu::full(2.5, &[3], &dev).unwrap()).unwrap();
        assert_eq!(ok, vec![2.5; 3]);
    }
}
