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
//! Adapters follow wgpu's environment variables (`WGPU_BACKEND=vulkan|gl|…`,
//! `WGPU_ADAPTER_NAME`); `WgpuDevice::new(i)` opens the `i`-th adapter with compute shaders.
//! Validation errors, out-of-memory and a lost device come back as `Err`s from the op that
//! met them.
use protocell_core::backend::{
    attention_dropout_mask, AdamWStep, AttnSpec, Backend, Binary, Dist, MemoryStats, NnOps, Reduce, Unary,
};
use protocell_core::cell::{CellMode, CellOps, ColonyGrads, ColonyOut, ColonySpec, N_COEFFS};
use protocell_core::error::{Error, Result};
use protocell_core::rng::{bernoulli_threshold, RngKey};
use protocell_core::shape;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

mod context;

pub use context::{adapters, Context};
use context::{PoolBuf, WG};

const FILL: &str = include_str!("../kernels/fill.wgsl");
const UNARY: &str = concat!(include_str!("../kernels/math.wgsl"), include_str!("../kernels/unary.wgsl"));
const BINARY: &str = concat!(include_str!("../kernels/math.wgsl"), include_str!("../kernels/binary.wgsl"));
const COPY: &str = include_str!("../kernels/copy.wgsl");
const REDUCE: &str = include_str!("../kernels/reduce.wgsl");
const MATMUL: &str = include_str!("../kernels/matmul.wgsl");
const GATHER: &str = include_str!("../kernels/gather.wgsl");
const SCATTER: &str = include_str!("../kernels/scatter.wgsl");
const RANDOM: &str = include_str!("../kernels/random.wgsl");
const SOFTMAX: &str = concat!(include_str!("../kernels/rows.wgsl"), include_str!("../kernels/softmax.wgsl"));
const CROSS_ENTROPY: &str =
    concat!(include_str!("../kernels/rows.wgsl"), include_str!("../kernels/cross_entropy.wgsl"));
const CROSS_ENTROPY_BWD: &str = include_str!("../kernels/cross_entropy_bwd.wgsl");
const ADAMW: &str = include_str!("../kernels/adamw.wgsl");
const LAYER_NORM: &str = concat!(include_str!("../kernels/rows.wgsl"), include_str!("../kernels/layer_norm.wgsl"));
const LAYER_NORM_BWD: &str =
    concat!(include_str!("../kernels/rows.wgsl"), include_str!("../kernels/layer_norm_bwd.wgsl"));
const LAYER_NORM_PARAMS: &str = include_str!("../kernels/layer_norm_params.wgsl");
const ATTENTION: &str = concat!(
    include_str!("../kernels/rows.wgsl"),
    include_str!("../kernels/attn.wgsl"),
    include_str!("../kernels/attention.wgsl")
);
const ATTENTION_BWD: &str = concat!(
    include_str!("../kernels/rows.wgsl"),
    include_str!("../kernels/attn.wgsl"),
    include_str!("../kernels/attention_bwd.wgsl")
);
const COLONY_FWD: &str = concat!(include_str!("../kernels/colony.wgsl"), include_str!("../kernels/colony_fwd.wgsl"));
const COLONY_BWD: &str = concat!(include_str!("../kernels/colony.wgsl"), include_str!("../kernels/colony_bwd.wgsl"));
const ATTENTION_APPLY: &str =
    concat!(include_str!("../kernels/attn.wgsl"), include_str!("../kernels/attention_apply.wgsl"));

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

fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} {n} exceeds the wgpu backend's 2³² limit")))
}

fn groups(n: usize) -> Result<u32> {
    Ok(u32_of(n, "element count")?.div_ceil(WG))
}

impl WgpuDevice {
    fn alloc(&self, n: usize) -> Result<Arc<PoolBuf>> {
        self.ctx.alloc(4 * n as u64)
    }
    fn params(&self, p: &[u32]) -> Result<Arc<PoolBuf>> {
        self.ctx.upload(p)
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
        let mut p =
            vec![u32_of(n, "elements")?, shape.len() as u32, u32_of(src.base, "offset")?, u32_of(dst.base, "offset")?];
        for v in shape.iter().chain(src.strides).chain(dst.strides) {
            p.push(u32_of(*v, "stride")?);
        }
        let pb = self.params(&p)?;
        self.ctx.launch("copy", COPY, &[src.buf, dst.buf, &pb.buf], groups(n)?)
    }
}

/// A strided view of a buffer: element `j` of a logical shape is at `base + Σ jₖ·strides[k]`.
struct View<'a> {
    buf: &'a wgpu::Buffer,
    base: usize,
    strides: &'a [usize],
}

fn unary_code(op: Unary) -> (u32, f32, f32) {
    match op {
        Unary::Neg => (0, 0.0, 0.0),
        Unary::Exp => (1, 0.0, 0.0),
        Unary::Log => (2, 0.0, 0.0),
        Unary::Sqrt => (3, 0.0, 0.0),
        Unary::Rsqrt => (4, 0.0, 0.0),
        Unary::Recip => (5, 0.0, 0.0),
        Unary::Abs => (6, 0.0, 0.0),
        Unary::Square => (7, 0.0, 0.0),
        Unary::Tanh => (8, 0.0, 0.0),
        Unary::Sigmoid => (9, 0.0, 0.0),
        Unary::Erf => (10, 0.0, 0.0),
        Unary::Relu => (11, 0.0, 0.0),
        Unary::Gelu => (12, 0.0, 0.0),
        Unary::Silu => (13, 0.0, 0.0),
        Unary::Softplus => (14, 0.0, 0.0),
        Unary::Sin => (15, 0.0, 0.0),
        Unary::Cos => (16, 0.0, 0.0),
        Unary::Affine { mul, add } => (17, mul, add),
        Unary::Powf(e) => (18, e, 0.0),
        Unary::Clamp { min, max } => (19, min, max),
    }
}

fn binary_code(op: Binary) -> u32 {
    match op {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        Binary::Pow => 6,
        Binary::Gt => 7,
        Binary::Ge => 8,
        Binary::Eq => 9,
    }
}

/// Strides of `from` broadcast to `to` (right-aligned; 0 on broadcast axes).
fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let s = shape::strides(from);
    let pad = to.len() - from.len();
    (0..to.len()).map(|i| if i < pad || from[i - pad] == 1 { 0 } else { s[i - pad] }).collect()
}

fn check_ids(op: &str, ids: &[u32], rows: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
        return Err(Error::InvalidArgument(format!("{op}: id {bad} out of range for {rows} rows")));
    }
    Ok(())
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
        let p = dev.params(&[u32_of(n, "elements")?, value.to_bits()])?;
        dev.ctx.launch("fill", FILL, &[&out.buf, &p.buf], groups(n)?)?;
        Ok(dev.tensor(out, shape.to_vec()))
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &WgpuDevice) -> Result<WgpuTensor> {
        let n = shape::checked_numel(shape)?;
        let (code, a, b) = match dist {
            Dist::Uniform { lo, hi } => (0u32, lo.to_bits(), hi.to_bits()),
            Dist::Bernoulli { p } => (1, bernoulli_threshold(p), 0),
            Dist::Normal { mean, std } => (2, mean.to_bits(), std.to_bits()),
        };
        let out = dev.alloc(n)?;
        let p = dev.params(&[
            u32_of(n, "elements")?,
            code,
            a,
            b,
            key.seed as u32,
            (key.seed >> 32) as u32,
            key.offset as u32,
            (key.offset >> 32) as u32,
        ])?;
        dev.ctx.launch("random", RANDOM, &[&out.buf, &p.buf], groups(n)?)?;
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
        let (code, a, b) = unary_code(op);
        let out = x.dev.alloc(n)?;
        let p = x.dev.params(&[u32_of(n, "elements")?, code, a.to_bits(), b.to_bits()])?;
        x.dev.ctx.launch("unary", UNARY, &[&x.buf.buf, &out.buf, &p.buf], groups(n)?)?;
        Ok(x.dev.tensor(out, x.shape))
    }
    fn binary(op: Binary, a: WgpuTensor, b: WgpuTensor) -> Result<WgpuTensor> {
        let out_shape = shape::broadcast_shapes("binary", &a.shape, &b.shape)?;
        let n = shape::numel(&out_shape);
        let mut p = vec![u32_of(n, "elements")?, binary_code(op), out_shape.len() as u32];
        for v in out_shape
            .iter()
            .copied()
            .chain(broadcast_strides(&a.shape, &out_shape))
            .chain(broadcast_strides(&b.shape, &out_shape))
        {
            p.push(u32_of(v, "stride")?);
        }
        let out = a.dev.alloc(n)?;
        let pb = a.dev.params(&p)?;
        a.dev.ctx.launch("binary", BINARY, &[&a.buf.buf, &b.buf.buf, &out.buf, &pb.buf], groups(n)?)?;
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
        let code = match op {
            Reduce::Sum => 0,
            Reduce::Mean => 1,
            Reduce::Max => 2,
            Reduce::Min => 3,
        };
        let m = outer * inner;
        let out = x.dev.alloc(m)?;
        let p = x.dev.params(&[u32_of(m, "elements")?, u32_of(n, "axis")?, u32_of(inner.max(1), "inner")?, code])?;
        // one workgroup per output
        x.dev.ctx.launch("reduce", REDUCE, &[&x.buf.buf, &out.buf, &p.buf], u32_of(m, "outputs")?)?;
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
        let p = a.dev.params(&[
            u32_of(batch, "batch")?,
            u32_of(m, "m")?,
            u32_of(n, "n")?,
            u32_of(k, "k")?,
            ta as u32,
            tb as u32,
            u32_of(a_stride, "stride")?,
            u32_of(b_stride, "stride")?,
            u32_of(tn, "tiles")?,
            u32_of(tm, "tiles")?,
        ])?;
        let g = u32_of(batch * tn * tm, "workgroups")?;
        a.dev.ctx.launch("matmul", MATMUL, &[&a.buf.buf, &b.buf.buf, &out.buf, &p.buf], g)?;
        Ok(a.dev.tensor(out, out_shape))
    }
    fn gather_rows(table: WgpuTensor, ids: WgpuIds) -> Result<WgpuTensor> {
        let (rows, d) = (table.shape[0], table.shape[1]);
        check_ids("gather_rows", &ids.host, rows)?;
        let n = ids.host.len() * d;
        let out = table.dev.alloc(n)?;
        let p = table.dev.params(&[u32_of(n, "elements")?, u32_of(d.max(1), "width")?])?;
        table.dev.ctx.launch("gather", GATHER, &[&table.buf.buf, &ids.buf.buf, &out.buf, &p.buf], groups(n)?)?;
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
            let p = x.dev.params(&[u32_of(rows, "rows")?, u32_of(d, "width")?])?;
            x.dev.ctx.launch("softmax", SOFTMAX, &[&x.buf.buf, &out.buf, &p.buf], u32_of(rows, "rows")?)?;
        }
        Ok(x.dev.tensor(out, x.shape))
    }
    fn scatter_add_rows(src: WgpuTensor, ids: WgpuIds, rows: usize) -> Result<WgpuTensor> {
        let d = *src.shape.last().unwrap_or(&1);
        check_ids("scatter_add_rows", &ids.host, rows)?;
        // CSR of positions by id, increasing within each id: the CPU's summation order
        let mut starts = vec![0u32; rows + 1];
        for &i in ids.host.iter() {
            starts[i as usize + 1] += 1;
        }
        for r in 0..rows {
            starts[r + 1] += starts[r];
        }
        let mut fill = starts.clone();
        let mut order = vec![0u32; ids.host.len()];
        for (pos, &i) in ids.host.iter().enumerate() {
            order[fill[i as usize] as usize] = pos as u32;
            fill[i as usize] += 1;
        }
        let n = rows * d;
        let dev = &src.dev;
        let out = dev.alloc(n)?;
        let sb = dev.ctx.upload(&starts)?;
        let ob = dev.ctx.upload(&order)?;
        let p = dev.params(&[u32_of(n, "elements")?, u32_of(d.max(1), "width")?])?;
        dev.ctx.launch("scatter", SCATTER, &[&src.buf.buf, &sb.buf, &ob.buf, &out.buf, &p.buf], groups(n)?)?;
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
        let g = AttnGeom::plain(&q, &k, &v, causal, scale)?;
        g.forward(&q, &k, &v, None)
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
        let g = AttnGeom::plain(&q, &k, &v, causal, scale)?;
        let dev = &q.dev;
        let (dq, dk, dv) =
            (dev.alloc(g.bh * g.sq * g.d)?, dev.alloc(g.bh * g.sk * g.d)?, dev.alloc(g.bh * g.sk * g.dv)?);
        g.backward(&q, &k, &v, &lse, &dout, None, [&dq, &dk, &dv])?;
        let with_rows = |t: &WgpuTensor, rows: usize, w: usize| {
            let mut s = t.shape[..t.shape.len() - 2].to_vec();
            s.extend([rows, w]);
            s
        };
        Ok((
            dev.tensor(dq, q.shape.clone()),
            dev.tensor(dk, with_rows(&k, g.sk, g.d)),
            dev.tensor(dv, with_rows(&v, g.sk, g.dv)),
        ))
    }
    fn self_attention_fwd(qkv: WgpuTensor, spec: &AttnSpec) -> Result<(WgpuTensor, WgpuTensor)> {
        let (g, mask) = AttnGeom::packed(&qkv, spec)?;
        g.forward(&qkv, &qkv, &qkv, mask.as_ref())
    }
    fn self_attention_bwd(
        qkv: WgpuTensor,
        _o: WgpuTensor,
        lse: WgpuTensor,
        dout: WgpuTensor,
        spec: &AttnSpec,
    ) -> Result<WgpuTensor> {
        let (g, mask) = AttnGeom::packed(&qkv, spec)?;
        let dqkv = qkv.dev.alloc(shape::numel(&qkv.shape))?;
        g.backward(&qkv, &qkv, &qkv, &lse, &dout, mask.as_ref(), [&dqkv, &dqkv, &dqkv])?;
        Ok(qkv.dev.tensor(dqkv, qkv.shape.clone()))
    }
    fn cross_entropy_fwd(logits: WgpuTensor, targets: WgpuIds) -> Result<(WgpuTensor, WgpuTensor)> {
        let (n, v) = (logits.shape[0], logits.shape[1]);
        check_ids("cross_entropy", &targets.host, v)?;
        let dev = &logits.dev;
        let lse = dev.alloc(n)?;
        let nll = dev.alloc(n)?;
        let p = dev.params(&[u32_of(n, "rows")?, u32_of(v, "classes")?])?;
        let bufs = [&logits.buf.buf, &targets.buf.buf, &lse.buf, &nll.buf, &p.buf];
        dev.ctx.launch("cross_entropy", CROSS_ENTROPY, &bufs, u32_of(n, "rows")?)?;
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
        let p =
            dev.params(&[u32_of(total, "elements")?, u32_of(v.max(1), "classes")?, (1.0 / n.max(1) as f32).to_bits()])?;
        let bufs = [&logits.buf.buf, &targets.buf.buf, &lse.buf.buf, &dloss.buf.buf, &out.buf, &p.buf];
        dev.ctx.launch("cross_entropy_bwd", CROSS_ENTROPY_BWD, &bufs, groups(total)?)?;
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
        let p = dev.params(&[
            u32_of(n, "elements")?,
            h.beta1.to_bits(),
            h.beta2.to_bits(),
            h.eps.to_bits(),
            h.decay.to_bits(),
            h.step_size.to_bits(),
            h.inv_sqrt_bc2.to_bits(),
            h.grad_scale.to_bits(),
        ])?;
        let bufs = [&w.buf.buf, &g.buf.buf, &m.buf.buf, &v.buf.buf, &wo.buf, &mo.buf, &vo.buf, &p.buf];
        dev.ctx.launch("adamw", ADAMW, &bufs, groups(n)?)?;
        let s = w.shape.clone();
        Ok((dev.tensor(wo, s.clone()), dev.tensor(mo, s.clone()), dev.tensor(vo, s)))
    }
}
/// The colony update as two kernels (`kernels/colony*.wgsl`), one invocation per token, the
/// equations of `protocell_core::cell::scalar` line by line; the backward pass recomputes each
/// token's trajectory, as the CPU kernel does.
impl CellOps<Wgpu> for Wgpu {
    fn colony_fwd(
        h0: WgpuTensor,
        w0: WgpuTensor,
        stim: WgpuTensor,
        coeffs: WgpuTensor,
        spec: &ColonySpec,
    ) -> Result<ColonyOut<Wgpu>> {
        let c = ColonyCall::new(&h0, &w0, &stim, &coeffs, spec)?;
        let dev = &h0.dev;
        let (t, n) = (c.t, c.n);
        let (h, w, alive) = (dev.alloc(t * 4 * n)?, dev.alloc(t * n * n)?, dev.alloc(t * n)?);
        if t > 0 && n > 0 {
            let stride = c.stride_fwd();
            let work = dev.alloc(t * stride)?;
            let p = dev.params(&c.params(stride)?)?;
            let bufs = [&h0.buf.buf, &w0.buf.buf, &c.sc.buf, &h.buf, &w.buf, &alive.buf, &work.buf, &p.buf];
            dev.ctx.launch("colony_fwd", COLONY_FWD, &bufs, groups(t)?)?;
        }
        Ok((dev.tensor(h, vec![t, n, 4]), dev.tensor(w, vec![t, n, n]), dev.tensor(alive, vec![t, n])))
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
        let c = ColonyCall::new(&h0, &w0, &stim, &coeffs, spec)?;
        if dh.shape != h0.shape || dw.shape != w0.shape {
            return Err(Error::InvalidArgument(format!(
                "colony_bwd: gradients {:?}, {:?} do not match the states {:?}, {:?}",
                dh.shape, dw.shape, h0.shape, w0.shape
            )));
        }
        let dev = &h0.dev;
        let (t, n) = (c.t, c.n);
        if t == 0 || n == 0 {
            let z = |s: &[usize]| Self::full(0.0, s, dev);
            return Ok((z(&[t, n, 4])?, z(&[t, n, n])?, z(&[t, n])?, z(&[N_COEFFS])?));
        }
        let parts = [t * 4 * n, t * n * n, t * n, t * N_COEFFS];
        let gout = dev.alloc(parts.iter().sum())?;
        let stride = c.stride_fwd() + 20 * n + 2 * n * n + n;
        let work = dev.alloc(t * stride)?;
        let p = dev.params(&c.params(stride)?)?;
        let bufs = [&h0.buf.buf, &w0.buf.buf, &c.sc.buf, &dh.buf.buf, &dw.buf.buf, &gout.buf, &work.buf, &p.buf];
        dev.ctx.launch("colony_bwd", COLONY_BWD, &bufs, groups(t)?)?;
        let mut at = 0;
        let mut split = Vec::with_capacity(4);
        for &len in &parts {
            let b = dev.alloc(len)?;
            dev.ctx.copy_words(&gout.buf, at, &b.buf, 0, len)?;
            split.push(b);
            at += len;
        }
        let [gh, gw, gs, gc]: [Arc<PoolBuf>; 4] =
            split.try_into().map_err(|_| Error::Backend("colony split".into()))?;
        let gc = Self::reshape(Self::reduce(Reduce::Sum, dev.tensor(gc, vec![t, N_COEFFS]), 0)?, &[N_COEFFS])?;
        let (gh, gw, gs) = (dev.tensor(gh, vec![t, n, 4]), dev.tensor(gw, vec![t, n, n]), dev.tensor(gs, vec![t, n]));
        Ok((gh, gw, gs, gc))
    }
}

/// Shapes, constants and the packed `[coefficients | stimulus]` buffer of one colony call.
struct ColonyCall {
    t: usize,
    n: usize,
    spec: ColonySpec,
    sc: Arc<PoolBuf>,
}

impl ColonyCall {
    fn new(
        h0: &WgpuTensor,
        w0: &WgpuTensor,
        stim: &WgpuTensor,
        coeffs: &WgpuTensor,
        spec: &ColonySpec,
    ) -> Result<Self> {
        spec.validate()?;
        let [t, n, 4] = h0.shape[..] else {
            return Err(Error::InvalidArgument(format!("colony: h0 must be [T, N, 4], got {:?}", h0.shape)));
        };
        if w0.shape != [t, n, n] || stim.shape != [t, n] || coeffs.shape != [N_COEFFS] {
            return Err(Error::InvalidArgument(format!(
                "colony: expected w0 [{t}, {n}, {n}], stim [{t}, {n}], coeffs [{N_COEFFS}]; got {:?}, {:?}, {:?}",
                w0.shape, stim.shape, coeffs.shape
            )));
        }
        let dev = &h0.dev;
        let sc = dev.alloc(N_COEFFS + t * n)?;
        dev.ctx.copy_words(&coeffs.buf.buf, 0, &sc.buf, 0, N_COEFFS)?;
        dev.ctx.copy_words(&stim.buf.buf, 0, &sc.buf, N_COEFFS, t * n)?;
        Ok(Self { t, n, spec: *spec, sc })
    }

    /// Floats of one token's forward trajectory and scratch (see `kernels/colony.wgsl`).
    fn stride_fwd(&self) -> usize {
        let n = self.n;
        (self.spec.steps + 1) * (5 * n + n * n) + 10 * n
    }

    fn params(&self, stride: usize) -> Result<Vec<u32>> {
        let s = &self.spec;
        let mode = match s.mode {
            CellMode::AsCoded => 0,
            CellMode::AsDescribed => 1,
            CellMode::Sound => 2,
        };
        let (rate, threshold) = s.pruning.map_or((0.0f32, 0.0f32), |p| (p.rate, p.threshold));
        Ok(vec![
            u32_of(self.t, "tokens")?,
            u32_of(self.n, "blocks")?,
            u32_of(s.steps, "steps")?,
            mode,
            s.dt.to_bits(),
            s.row_eps.to_bits(),
            s.sharpness.to_bits(),
            s.pruning.is_some() as u32,
            rate.to_bits(),
            threshold.to_bits(),
            u32_of(stride, "stride")?,
        ])
    }
}

/// Where the rows of one attention operand live: `[base, batch stride, head stride, row
/// stride]` in elements (see `kernels/attn.wgsl`).
type Layout = [usize; 4];

/// The geometry of one attention call: `bh` heads (`b·H`), `Sq` queries, `Sk` keys, widths
/// `D` (q, k) and `Dv` (v, o), and where q, k, v and o (= dout) rows live.
struct AttnGeom {
    packed: bool,
    bh: usize,
    heads: usize,
    sq: usize,
    sk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    scale: f32,
    q: Layout,
    k: Layout,
    v: Layout,
    o: Layout,
}

impl AttnGeom {
    /// Contiguous `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`.
    fn plain(q: &WgpuTensor, k: &WgpuTensor, v: &WgpuTensor, causal: bool, scale: f32) -> Result<Self> {
        let r = q.shape.len();
        if r < 2 || k.shape.len() != r || v.shape.len() != r {
            return Err(Error::InvalidArgument("attention needs q, k, v of one rank >= 2".into()));
        }
        let (sq, d, sk, dv) = (q.shape[r - 2], q.shape[r - 1], k.shape[r - 2], v.shape[r - 1]);
        let bh = shape::numel(&q.shape[..r - 2]);
        if sk == 0 && sq > 0 {
            return Err(Error::InvalidArgument("attention needs at least one key".into()));
        }
        if causal && sk < sq {
            return Err(Error::InvalidArgument(format!("causal attention needs Sk >= Sq, got {sk} < {sq}")));
        }
        Ok(Self {
            packed: false,
            bh,
            heads: 1,
            sq,
            sk,
            d,
            dv,
            causal,
            scale,
            q: [0, sq * d, 0, d],
            k: [0, sk * d, 0, d],
            v: [0, sk * dv, 0, dv],
            o: [0, sq * dv, 0, dv],
        })
    }

    /// Packed `qkv: [B, S, 3, H, Dh]` with `o: [B, S, H, Dh]`, and the dropout mask of `spec`.
    fn packed(qkv: &WgpuTensor, spec: &AttnSpec) -> Result<(Self, Option<WgpuTensor>)> {
        let [b, s, three, h, dh] = qkv.shape[..] else {
            return Err(Error::InvalidArgument(format!(
                "self-attention needs qkv [B, S, 3, H, Dh], got {:?}",
                qkv.shape
            )));
        };
        if three != 3 {
            return Err(Error::InvalidArgument(format!(
                "self-attention needs qkv [B, S, 3, H, Dh], got {:?}",
                qkv.shape
            )));
        }
        let row = 3 * h * dh;
        let mask = match &spec.dropout {
            Some(dr) if dr.p > 0.0 => Some(attention_dropout_mask::<Wgpu>(dr, [b, h, s, s], &qkv.dev)?),
            _ => None,
        };
        let g = Self {
            packed: true,
            bh: b * h,
            heads: h,
            sq: s,
            sk: s,
            d: dh,
            dv: dh,
            causal: spec.causal,
            scale: spec.scale,
            q: [0, s * row, dh, row],
            k: [h * dh, s * row, dh, row],
            v: [2 * h * dh, s * row, dh, row],
            o: [0, s * h * dh, dh, h * dh],
        };
        Ok((g, mask))
    }

    fn params(&self, rows: usize, mask: bool) -> Result<Vec<u32>> {
        let mut p = vec![
            u32_of(rows, "rows")?,
            u32_of(self.sq, "queries")?,
            u32_of(self.sk, "keys")?,
            u32_of(self.d, "width")?,
            u32_of(self.heads, "heads")?,
            self.causal as u32,
            self.scale.to_bits(),
            mask as u32,
        ];
        for l in [&self.q, &self.k, &self.v, &self.o] {
            for &x in l {
                p.push(u32_of(x, "offset")?);
            }
        }
        p.push(u32_of(self.dv, "width")?);
        Ok(p)
    }

    /// `out = A·x` (or `Aᵀ·x`) per head, `A` the `[Sq, Sk]` matrices at `a_off` in `a`.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        dev: &WgpuDevice,
        a: &PoolBuf,
        a_off: usize,
        trans: bool,
        x: (&PoolBuf, &Layout),
        out: (&PoolBuf, &Layout),
        width: usize,
    ) -> Result<()> {
        let rows = if trans { self.sk } else { self.sq };
        let total = self.bh * rows * width;
        let mut p = vec![
            u32_of(total, "elements")?,
            u32_of(rows, "rows")?,
            u32_of(width, "width")?,
            u32_of(self.heads, "heads")?,
            trans as u32,
            u32_of(self.sq, "queries")?,
            u32_of(self.sk, "keys")?,
            u32_of(a_off, "offset")?,
        ];
        for &v in x.1.iter().chain(out.1.iter()) {
            p.push(u32_of(v, "offset")?);
        }
        let p = dev.params(&p)?;
        dev.ctx.launch("attention_apply", ATTENTION_APPLY, &[&a.buf, &x.0.buf, &out.0.buf, &p.buf], groups(total)?)
    }

    /// `(o, lse)`: probabilities and lse per query row, then `o = (P⊙m)·v`.
    fn forward(
        &self,
        q: &WgpuTensor,
        k: &WgpuTensor,
        v: &WgpuTensor,
        mask: Option<&WgpuTensor>,
    ) -> Result<(WgpuTensor, WgpuTensor)> {
        let dev = &q.dev;
        let rows = self.bh * self.sq;
        let (o, lse) = (dev.alloc(rows * self.dv)?, dev.alloc(rows)?);
        if rows > 0 && self.dv > 0 {
            let pr = dev.alloc(rows * self.sk)?;
            let p = dev.params(&self.params(rows, mask.is_some())?)?;
            let m = mask.map_or(&q.buf.buf, |m| &m.buf.buf); // not read without dropout
            let bufs = [&q.buf.buf, &k.buf.buf, m, &pr.buf, &lse.buf, &p.buf];
            dev.ctx.launch("attention", ATTENTION, &bufs, u32_of(rows, "rows")?)?;
            self.apply(dev, &pr, 0, false, (&v.buf, &self.v), (&o, &self.o), self.dv)?;
        }
        let (o_shape, lse_shape) = if !self.packed {
            let mut s = q.shape[..q.shape.len() - 1].to_vec();
            s.push(self.dv);
            let mut l = q.shape[..q.shape.len() - 1].to_vec();
            l.push(1);
            (s, l)
        } else {
            let b = self.bh / self.heads;
            (vec![b, self.sq, self.heads, self.dv], vec![b, self.heads, self.sq, 1])
        };
        Ok((dev.tensor(o, o_shape), dev.tensor(lse, lse_shape)))
    }

    /// Writes `dq, dk, dv` into `out` (in the q, k, v layouts; one buffer thrice for packed).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        q: &WgpuTensor,
        k: &WgpuTensor,
        v: &WgpuTensor,
        lse: &WgpuTensor,
        dout: &WgpuTensor,
        mask: Option<&WgpuTensor>,
        out: [&PoolBuf; 3],
    ) -> Result<()> {
        let dev = &q.dev;
        let rows = self.bh * self.sq;
        if rows == 0 || self.sk == 0 {
            return Ok(());
        }
        let n = rows * self.sk;
        let pd = dev.alloc(2 * n)?;
        let p = dev.params(&self.params(rows, mask.is_some())?)?;
        let m = mask.map_or(&q.buf.buf, |m| &m.buf.buf); // not read without dropout
        let bufs = [&q.buf.buf, &k.buf.buf, &v.buf.buf, &dout.buf.buf, &lse.buf.buf, m, &pd.buf, &p.buf];
        dev.ctx.launch("attention_bwd", ATTENTION_BWD, &bufs, u32_of(rows, "rows")?)?;
        if self.dv > 0 {
            self.apply(dev, &pd, 0, true, (&dout.buf, &self.o), (out[2], &self.v), self.dv)?;
        }
        if self.d > 0 {
            self.apply(dev, &pd, n, false, (&k.buf, &self.k), (out[0], &self.q), self.d)?;
            self.apply(dev, &pd, n, true, (&q.buf, &self.q), (out[1], &self.k), self.d)?;
        }
        Ok(())
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
    let p = dev.params(&[u32_of(rows, "rows")?, u32_of(d, "width")?, eps.to_bits(), rms as u32])?;
    let beta_buf = beta.as_ref().map_or(&gamma.buf.buf, |b| &b.buf.buf); // not read for RMSNorm
    let bufs = [&x.buf.buf, &gamma.buf.buf, beta_buf, &y.buf, &mean.buf, &rstd.buf, &p.buf];
    dev.ctx.launch("layer_norm", LAYER_NORM, &bufs, u32_of(rows, "rows")?)?;
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
    let p = dev.params(&[u32_of(rows, "rows")?, u32_of(d, "width")?, mean.is_none() as u32])?;
    let mean_buf = mean.as_ref().map_or(&rstd.buf.buf, |m| &m.buf.buf); // not read for RMSNorm
    let bufs = [&x.buf.buf, &gamma.buf.buf, mean_buf, &rstd.buf.buf, &dy.buf.buf, &dx.buf, &p.buf];
    dev.ctx.launch("layer_norm_bwd", LAYER_NORM_BWD, &bufs, u32_of(rows, "rows")?)?;
    let bufs = [&x.buf.buf, mean_buf, &rstd.buf.buf, &dy.buf.buf, &dgamma.buf, &dbeta.buf, &p.buf];
    dev.ctx.launch("layer_norm_params", LAYER_NORM_PARAMS, &bufs, groups(d)?)?;
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
        let e = dev.ctx.launch("broken", "@compute @workgroup_size(1) fn main( {", &[], 1).unwrap_err();
        assert!(e.to_string().contains("kernel broken"), "{e}");
        let e = Wgpu::full(0.0, &[1 << 31], &dev).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let ok = Wgpu::to_f32(Wgpu::full(2.5, &[3], &dev).unwrap()).unwrap();
        assert_eq!(ok, vec![2.5; 3]);
    }
}
