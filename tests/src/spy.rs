//! `Spy`: the CPU backend with every fused op wrapped so that it notes its name on the calling
//! thread and, on request, fails — for the test that `Autodiff<B>` forwards every fused op to
//! `B`'s kernel, and for fault-injection tests of transactional operations.
use protocell_core::backend::{AdamWStep, AttnSpec, Backend, Binary, Dist, MemoryStats, NnOps, Reduce, Unary};
use protocell_core::cell::{CellOps, ColonyGrads, ColonyOut, ColonySpec};
use protocell_core::error::{Error, Result};
use protocell_core::rng::RngKey;
use protocell_core::synapse::{PresynOut, PresynSpec, SynapseOps};
use protocell_cpu::{Cpu, CpuDevice, CpuIds, CpuTensor};
use std::cell::RefCell;
use std::collections::BTreeSet;

thread_local! {
    static SEEN: RefCell<BTreeSet<&'static str>> = const { RefCell::new(BTreeSet::new()) };
    static FAULT: RefCell<Option<(&'static str, usize)>> = const { RefCell::new(None) };
}

/// Notes a call of fused op `name` on this thread and fails it when a fault is armed for it.
fn saw(name: &'static str) -> Result<()> {
    SEEN.with(|s| s.borrow_mut().insert(name));
    FAULT.with(|f| {
        let mut f = f.borrow_mut();
        match f.as_mut() {
            Some((op, n)) if *op == name => {
                if *n == 0 {
                    *f = None;
                    Err(Error::Backend(format!("injected failure in {name}")))
                } else {
                    *n -= 1;
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    })
}

/// The fused ops called on this thread since the last call.
pub fn take_seen() -> BTreeSet<&'static str> {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Makes the `(skip + 1)`-th next call of fused op `name` on this thread fail with a backend
/// error (once).
pub fn fail_at(name: &'static str, skip: usize) {
    FAULT.with(|f| *f.borrow_mut() = Some((name, skip)));
}

/// The CPU backend, noting every fused-op call (and failing one on request).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spy;

type T = CpuTensor;

impl Backend for Spy {
    type Device = CpuDevice;
    type Tensor = CpuTensor;
    type Ids = CpuIds;
    fn name() -> String {
        "spy".into()
    }
    fn sync(d: &CpuDevice) -> Result<()> {
        Cpu::sync(d)
    }
    fn memory_stats(d: &CpuDevice) -> Option<MemoryStats> {
        Cpu::memory_stats(d)
    }
    fn shape(t: &T) -> &[usize] {
        Cpu::shape(t)
    }
    fn device(t: &T) -> CpuDevice {
        Cpu::device(t)
    }
    fn ids_shape(t: &CpuIds) -> &[usize] {
        Cpu::ids_shape(t)
    }
    fn from_f32(data: &[f32], shape: &[usize], d: &CpuDevice) -> Result<T> {
        Cpu::from_f32(data, shape, d)
    }
    fn full(v: f32, shape: &[usize], d: &CpuDevice) -> Result<T> {
        Cpu::full(v, shape, d)
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], d: &CpuDevice) -> Result<T> {
        Cpu::random(dist, key, shape, d)
    }
    fn to_f32(t: T) -> Result<Vec<f32>> {
        Cpu::to_f32(t)
    }
    fn ids_from_u32(data: &[u32], shape: &[usize], d: &CpuDevice) -> Result<CpuIds> {
        Cpu::ids_from_u32(data, shape, d)
    }
    fn ids_to_u32(t: CpuIds) -> Result<Vec<u32>> {
        Cpu::ids_to_u32(t)
    }
    fn ids_reshape(t: CpuIds, shape: &[usize]) -> Result<CpuIds> {
        Cpu::ids_reshape(t, shape)
    }
    fn reshape(x: T, shape: &[usize]) -> Result<T> {
        Cpu::reshape(x, shape)
    }
    fn permute(x: T, axes: &[usize]) -> Result<T> {
        Cpu::permute(x, axes)
    }
    fn narrow(x: T, axis: usize, start: usize, len: usize) -> Result<T> {
        Cpu::narrow(x, axis, start, len)
    }
    fn concat(xs: Vec<T>, axis: usize) -> Result<T> {
        Cpu::concat(xs, axis)
    }
    fn expand(x: T, shape: &[usize]) -> Result<T> {
        Cpu::expand(x, shape)
    }
    fn pad(x: T, axis: usize, before: usize, after: usize) -> Result<T> {
        Cpu::pad(x, axis, before, after)
    }
    fn unary(op: Unary, x: T) -> Result<T> {
        Cpu::unary(op, x)
    }
    fn unary_grad(op: Unary, x: T, y: T, dy: T) -> Result<T> {
        Cpu::unary_grad(op, x, y, dy)
    }
    fn binary(op: Binary, a: T, b: T) -> Result<T> {
        Cpu::binary(op, a, b)
    }
    fn reduce(op: Reduce, x: T, axis: usize) -> Result<T> {
        Cpu::reduce(op, x, axis)
    }
    fn matmul(a: T, b: T, ta: bool, tb: bool) -> Result<T> {
        Cpu::matmul(a, b, ta, tb)
    }
    fn gather_rows(table: T, ids: CpuIds) -> Result<T> {
        Cpu::gather_rows(table, ids)
    }
    fn scatter_add_rows(src: T, ids: CpuIds, rows: usize) -> Result<T> {
        Cpu::scatter_add_rows(src, ids, rows)
    }
    fn softmax(x: T) -> Result<T> {
        Cpu::softmax(x)
    }
    fn softmax_grad(y: T, dy: T) -> Result<T> {
        Cpu::softmax_grad(y, dy)
    }
}

impl NnOps<Spy> for Spy {
    fn layer_norm_fwd(x: T, g: T, b: T, eps: f32) -> Result<(T, T, T)> {
        saw("layer_norm_fwd")?;
        Cpu::layer_norm_fwd(x, g, b, eps)
    }
    fn layer_norm_bwd(x: T, g: T, mean: T, rstd: T, dy: T) -> Result<(T, T, T)> {
        saw("layer_norm_bwd")?;
        Cpu::layer_norm_bwd(x, g, mean, rstd, dy)
    }
    fn rms_norm_fwd(x: T, g: T, eps: f32) -> Result<(T, T)> {
        saw("rms_norm_fwd")?;
        Cpu::rms_norm_fwd(x, g, eps)
    }
    fn rms_norm_bwd(x: T, g: T, rstd: T, dy: T) -> Result<(T, T)> {
        saw("rms_norm_bwd")?;
        Cpu::rms_norm_bwd(x, g, rstd, dy)
    }
    fn attention_fwd(q: T, k: T, v: T, causal: bool, scale: f32) -> Result<(T, T)> {
        saw("attention_fwd")?;
        Cpu::attention_fwd(q, k, v, causal, scale)
    }
    fn attention_bwd(q: T, k: T, v: T, o: T, lse: T, dout: T, causal: bool, scale: f32) -> Result<(T, T, T)> {
        saw("attention_bwd")?;
        Cpu::attention_bwd(q, k, v, o, lse, dout, causal, scale)
    }
    fn self_attention_fwd(qkv: T, spec: &AttnSpec) -> Result<(T, T)> {
        saw("self_attention_fwd")?;
        Cpu::self_attention_fwd(qkv, spec)
    }
    fn self_attention_bwd(qkv: T, o: T, lse: T, dout: T, spec: &AttnSpec) -> Result<T> {
        saw("self_attention_bwd")?;
        Cpu::self_attention_bwd(qkv, o, lse, dout, spec)
    }
    fn cross_entropy_fwd(logits: T, targets: CpuIds) -> Result<(T, T)> {
        saw("cross_entropy_fwd")?;
        Cpu::cross_entropy_fwd(logits, targets)
    }
    fn cross_entropy_bwd(logits: T, targets: CpuIds, lse: T, dloss: T) -> Result<T> {
        saw("cross_entropy_bwd")?;
        Cpu::cross_entropy_bwd(logits, targets, lse, dloss)
    }
    fn linear(x: T, w: T, b: Option<T>) -> Result<T> {
        saw("linear")?;
        Cpu::linear(x, w, b)
    }
    fn sum_squares(x: T) -> Result<T> {
        saw("sum_squares")?;
        Cpu::sum_squares(x)
    }
    fn adamw_step(p: T, g: T, m: T, v: T, h: &AdamWStep) -> Result<(T, T, T)> {
        saw("adamw_step")?;
        Cpu::adamw_step(p, g, m, v, h)
    }
}

impl CellOps<Spy> for Spy {
    fn colony_fwd(h0: T, w0: T, stim: T, coeffs: T, spec: &ColonySpec) -> Result<ColonyOut<Spy>> {
        saw("colony_fwd")?;
        Cpu::colony_fwd(h0, w0, stim, coeffs, spec)
    }
    fn colony_bwd(h0: T, w0: T, stim: T, coeffs: T, spec: &ColonySpec, dh: T, dw: T) -> Result<ColonyGrads<Spy>> {
        saw("colony_bwd")?;
        Cpu::colony_bwd(h0, w0, stim, coeffs, spec, dh, dw)
    }
}

impl SynapseOps<Spy> for Spy {
    fn presyn_fwd(scores: T, state0: T, spec: &PresynSpec) -> Result<PresynOut<Spy>> {
        saw("presyn_fwd")?;
        Cpu::presyn_fwd(scores, state0, spec)
    }
    fn presyn_bwd(scores: T, state0: T, spec: &PresynSpec, de: T) -> Result<T> {
        saw("presyn_bwd")?;
        Cpu::presyn_bwd(scores, state0, spec, de)
    }
}
