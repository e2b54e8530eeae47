//! Reverse-mode automatic differentiation as a backend decorator.
//!
//! [`Autodiff<B>`] is itself a [`Backend`]: every float op runs the inner op of `B` for
//! the value and, when an input requires a gradient, records a node whose backward step
//! is written with inner ops (fused ops record their fused backward). Models are written
//! once, generic over the backend; training uses `Autodiff<B>`, inference uses `B`.
//!
//! The graph lives in the tensors themselves (each result holds its parents), so it is
//! freed when the last tensor of a step is dropped: there is no global tape that could
//! grow from step to step. [`AutodiffBackend::backward`] consumes the loss and releases
//! each node's saved tensors as soon as its backward step has run, and drops each
//! intermediate gradient as soon as it has been passed on.
use crate::backend::{Backend, Binary, Dist, MemoryStats, NnOps, Reduce, Unary};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::shape;
use crate::tensor::Tensor;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicUsize, Ordering};

mod ops;

/// The autodiff decorator over backend `B`.
pub struct Autodiff<B>(PhantomData<fn() -> B>);

impl<B> Clone for Autodiff<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Autodiff<B> {}
impl<B> Default for Autodiff<B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}
impl<B: Backend> fmt::Debug for Autodiff<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Autodiff<{}>", B::name())
    }
}

/// Inputs that need a gradient, positionally.
pub type Needs = [bool];
type BackwardFn<B> =
    Box<dyn FnOnce(Vec<Option<<B as Backend>::Tensor>>, &Needs) -> Result<Vec<Option<<B as Backend>::Tensor>>> + Send>;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// One operation in the graph. It may have several outputs (a fused op such as the colony
/// update returns its states and its mucus); each output tensor names `(node, index)`.
pub(crate) struct Node<B: Backend> {
    id: usize,
    leaf: bool,
    outputs: usize,
    parents: Vec<Option<Edge<B>>>,
    step: spin::Mutex<Option<BackwardFn<B>>>,
}

/// Output `.1` of node `.0`.
type Edge<B> = (Arc<Node<B>>, usize);

/// Tensor primitive of [`Autodiff<B>`]: the inner value plus, when it requires a gradient,
/// the graph node that produced it and which of its outputs it is.
pub struct AdTensor<B: Backend> {
    pub(crate) primal: B::Tensor,
    pub(crate) node: Option<Edge<B>>,
}

impl<B: Backend> Clone for AdTensor<B> {
    fn clone(&self) -> Self {
        Self { primal: self.primal.clone(), node: self.node.clone() }
    }
}

impl<B: Backend> fmt::Debug for AdTensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdTensor({:?}, requires_grad: {})", B::shape(&self.primal), self.node.is_some())
    }
}

impl<B: Backend> AdTensor<B> {
    /// A value with no gradient.
    pub fn constant(primal: B::Tensor) -> Self {
        Self { primal, node: None }
    }
    /// The inner value.
    pub fn primal(&self) -> &B::Tensor {
        &self.primal
    }
    /// True when this value is part of a gradient graph.
    pub fn tracked(&self) -> bool {
        self.node.is_some()
    }
}

/// Records `primal` as the output of an op with the given inputs. When no input requires a
/// gradient the output is a constant and `step` is dropped unrun. `step(dy, needs)` returns
/// one gradient per input (`None` where `needs` is false).
pub(crate) fn record<B: Backend>(
    primal: B::Tensor,
    inputs: &[&AdTensor<B>],
    step: impl FnOnce(B::Tensor, &Needs) -> Result<Vec<Option<B::Tensor>>> + Send + 'static,
) -> AdTensor<B> {
    let mut out = record_multi(vec![primal], inputs, move |mut gs: Vec<Option<B::Tensor>>, needs: &Needs| {
        // a single-output node is only run when its output has a gradient
        let g = gs.pop().flatten().ok_or_else(|| Error::Backend("backward: missing output gradient".into()))?;
        step(g, needs)
    });
    out.pop().expect("one output")
}

/// Records an op with several outputs `primals` (one graph node; the gradients of all its
/// outputs reach one call of `step`). `step(dys, needs)` receives one entry per output —
/// `None` for an output that no gradient reached (treat it as zeros) — and returns one
/// gradient per input (`None` where `needs` is false). When no input requires a gradient the
/// outputs are constants and `step` is dropped unrun.
///
/// This is how an op family declared outside the autodiff module (`cell::CellOps`, ...)
/// records its fused backward.
pub fn record_multi<B: Backend>(
    primals: Vec<B::Tensor>,
    inputs: &[&AdTensor<B>],
    step: impl FnOnce(Vec<Option<B::Tensor>>, &Needs) -> Result<Vec<Option<B::Tensor>>> + Send + 'static,
) -> Vec<AdTensor<B>> {
    if inputs.iter().all(|t| t.node.is_none()) {
        return primals.into_iter().map(AdTensor::constant).collect();
    }
    let node = Arc::new(Node {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        leaf: false,
        outputs: primals.len(),
        parents: inputs.iter().map(|t| t.node.clone()).collect(),
        step: spin::Mutex::new(Some(Box::new(step))),
    });
    primals.into_iter().enumerate().map(|(i, primal)| AdTensor { primal, node: Some((node.clone(), i)) }).collect()
}

/// Gradients of the leaves (parameters) reached by one backward pass, keyed by leaf.
pub struct Gradients<B: Backend> {
    map: BTreeMap<usize, B::Tensor>,
}

impl<B: Backend> Gradients<B> {
    /// Gradient of `param` (a leaf created with [`Tensor::require_grad`]), if it was reached.
    pub fn get<AB: AutodiffBackend<Inner = B>>(&self, param: &Tensor<AB>) -> Option<Tensor<B>> {
        let id = AB::leaf_id(param.prim())?;
        self.map.get(&id).cloned().map(Tensor::from_prim)
    }
    /// Removes and returns the gradient of `param`.
    pub fn remove<AB: AutodiffBackend<Inner = B>>(&mut self, param: &Tensor<AB>) -> Option<Tensor<B>> {
        let id = AB::leaf_id(param.prim())?;
        self.map.remove(&id).map(Tensor::from_prim)
    }
    /// Number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True when no leaf was reached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A backend that records gradients: the interface optimisers and trainers use.
pub trait AutodiffBackend: Backend {
    /// The backend that computes the values.
    type Inner: Backend<Device = Self::Device, Ids = Self::Ids>;
    /// The inner value of `t` (no graph).
    fn inner(t: &Self::Tensor) -> <Self::Inner as Backend>::Tensor;
    /// The inner value of `t`, consuming it (no extra reference is kept, so a backend can
    /// update the buffer in place).
    fn into_inner(t: Self::Tensor) -> <Self::Inner as Backend>::Tensor;
    /// A constant (no gradient) from an inner value.
    fn from_inner(t: <Self::Inner as Backend>::Tensor) -> Self::Tensor;
    /// A fresh leaf that requires a gradient (a parameter) from an inner value.
    fn leaf(t: <Self::Inner as Backend>::Tensor) -> Self::Tensor;
    /// Runs the backward pass from a one-element `loss`, consuming its graph.
    fn backward(loss: Self::Tensor) -> Result<Gradients<Self::Inner>>;
    /// Key of `t` in [`Gradients`] (its graph node), if it requires a gradient.
    fn leaf_id(t: &Self::Tensor) -> Option<usize>;
}

impl<B: Backend> AutodiffBackend for Autodiff<B> {
    type Inner = B;

    fn inner(t: &AdTensor<B>) -> B::Tensor {
        t.primal.clone()
    }
    fn into_inner(t: AdTensor<B>) -> B::Tensor {
        t.primal
    }
    fn from_inner(t: B::Tensor) -> AdTensor<B> {
        AdTensor::constant(t)
    }
    fn leaf(t: B::Tensor) -> AdTensor<B> {
        let node = Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            leaf: true,
            outputs: 1,
            parents: Vec::new(),
            step: spin::Mutex::new(None),
        };
        AdTensor { primal: t, node: Some((Arc::new(node), 0)) }
    }

    fn leaf_id(t: &AdTensor<B>) -> Option<usize> {
        t.node.as_ref().map(|(n, _)| n.id)
    }

    fn backward(loss: AdTensor<B>) -> Result<Gradients<B>> {
        let shape = B::shape(&loss.primal).to_vec();
        if shape::numel(&shape) != 1 {
            return Err(Error::InvalidArgument(format!("backward needs a one-element loss, got shape {shape:?}")));
        }
        let (root, root_out) = loss
            .node
            .ok_or_else(|| Error::InvalidArgument("backward: the loss does not depend on any parameter".into()))?;
        let seed = B::full(1.0, &shape, &B::device(&loss.primal))?;
        drop(loss.primal);
        let order = topo_order(&root);
        let mut pending: BTreeMap<(usize, usize), B::Tensor> = BTreeMap::new();
        pending.insert((root.id, root_out), seed);
        drop(root);
        let mut leaves = BTreeMap::new();
        for node in order.into_iter().rev() {
            let mut dys: Vec<Option<B::Tensor>> = (0..node.outputs).map(|k| pending.remove(&(node.id, k))).collect();
            if dys.iter().all(Option::is_none) {
                continue;
            }
            if node.leaf {
                if let Some(g) = dys.pop().flatten() {
                    leaves.insert(node.id, g);
                }
                continue;
            }
            let step = node
                .step
                .lock()
                .take()
                .ok_or_else(|| Error::InvalidArgument("backward: this graph was already consumed".into()))?;
            let needs: Vec<bool> = node.parents.iter().map(Option::is_some).collect();
            let grads = step(dys, &needs)?;
            if grads.len() != node.parents.len() {
                return Err(Error::Backend(format!(
                    "backward step returned {} gradients for {} inputs",
                    grads.len(),
                    node.parents.len()
                )));
            }
            for (parent, grad) in node.parents.iter().zip(grads) {
                if let (Some((p, k)), Some(g)) = (parent, grad) {
                    let acc = match pending.remove(&(p.id, *k)) {
                        Some(prev) => B::binary(Binary::Add, prev, g)?,
                        None => g,
                    };
                    pending.insert((p.id, *k), acc);
                }
            }
        }
        Ok(Gradients { map: leaves })
    }
}

/// Nodes reachable from `root` in post-order (every node after all of its parents).
fn topo_order<B: Backend>(root: &Arc<Node<B>>) -> Vec<Arc<Node<B>>> {
    let mut order = Vec::new();
    let mut visited = BTreeMap::new();
    // Iterative DFS: (node, next parent index to visit).
    let mut stack: Vec<(Arc<Node<B>>, usize)> = vec![(root.clone(), 0)];
    visited.insert(root.id, ());
    while let Some((node, i)) = stack.pop() {
        if i < node.parents.len() {
            let next = node.parents[i].as_ref().map(|(p, _)| p.clone());
            stack.push((node, i + 1));
            if let Some(p) = next {
                if visited.insert(p.id, ()).is_none() {
                    stack.push((p, 0));
                }
            }
        } else {
            order.push(node);
        }
    }
    order
}

impl<B: AutodiffBackend> Tensor<B> {
    /// This tensor as a fresh leaf that requires a gradient (a trainable parameter).
    pub fn require_grad(&self) -> Self {
        Tensor::from_prim(B::leaf(B::inner(self.prim())))
    }
    /// The value without its graph, on the inner backend.
    pub fn inner(&self) -> Tensor<B::Inner> {
        Tensor::from_prim(B::inner(self.prim()))
    }
    /// The value without its graph, consuming this tensor.
    pub fn into_inner(self) -> Tensor<B::Inner> {
        Tensor::from_prim(B::into_inner(self.into_prim()))
    }
    /// A constant (no gradient) on this backend from an inner value.
    pub fn from_inner(t: Tensor<B::Inner>) -> Self {
        Tensor::from_prim(B::from_inner(t.into_prim()))
    }
    /// Backward pass from this one-element loss; consumes the graph.
    pub fn backward(self) -> Result<Gradients<B::Inner>> {
        B::backward(self.into_prim())
    }
}

impl<B: Backend> Tensor<Autodiff<B>> {
    /// True when this tensor is part of a gradient graph.
    pub fn requires_grad(&self) -> bool {
        self.prim().node.is_some()
    }
}

/// Sums `g` down to `target` (the adjoint of numpy broadcasting).
pub(crate) fn reduce_to_shape<B: Backend>(g: B::Tensor, target: &[usize]) -> Result<B::Tensor> {
    let gs = B::shape(&g).to_vec();
    if gs == target {
        return Ok(g);
    }
    let extra = gs.len() - target.len();
    let mut g = g;
    if extra > 0 {
        let lead = shape::numel(&gs[..extra]);
        let rest = &gs[extra..];
        let mut flat = vec![lead];
        flat.extend_from_slice(rest);
        g = B::reduce(Reduce::Sum, B::reshape(g, &flat)?, 0)?;
        g = B::reshape(g, rest)?;
    }
    let cur = B::shape(&g).to_vec();
    for (ax, (&c, &t)) in cur.iter().zip(target).enumerate() {
        if t == 1 && c != 1 {
            g = B::reduce(Reduce::Sum, g, ax)?;
        }
    }
    B::reshape(g, target)
}

impl<B: Backend> Backend for Autodiff<B> {
    type Device = B::Device;
    type Tensor = AdTensor<B>;
    type Ids = B::Ids;

    fn name() -> String {
        format!("autodiff<{}>", B::name())
    }
    fn sync(dev: &B::Device) -> Result<()> {
        B::sync(dev)
    }
    fn memory_stats(dev: &B::Device) -> Option<MemoryStats> {
        B::memory_stats(dev)
    }
    fn shape(t: &AdTensor<B>) -> &[usize] {
        B::shape(&t.primal)
    }
    fn device(t: &AdTensor<B>) -> B::Device {
        B::device(&t.primal)
    }
    fn ids_shape(t: &B::Ids) -> &[usize] {
        B::ids_shape(t)
    }
    fn from_f32(data: &[f32], shape: &[usize], dev: &B::Device) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::from_f32(data, shape, dev)?))
    }
    fn full(value: f32, shape: &[usize], dev: &B::Device) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::full(value, shape, dev)?))
    }
    fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &B::Device) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::random(dist, key, shape, dev)?))
    }
    fn to_f32(t: AdTensor<B>) -> Result<Vec<f32>> {
        B::to_f32(t.primal)
    }
    fn ids_from_u32(data: &[u32], shape: &[usize], dev: &B::Device) -> Result<B::Ids> {
        B::ids_from_u32(data, shape, dev)
    }
    fn ids_to_u32(t: B::Ids) -> Result<Vec<u32>> {
        B::ids_to_u32(t)
    }
    fn ids_reshape(t: B::Ids, shape: &[usize]) -> Result<B::Ids> {
        B::ids_reshape(t, shape)
    }

    fn reshape(x: AdTensor<B>, shape: &[usize]) -> Result<AdTensor<B>> {
        ops::reshape(x, shape)
    }
    fn permute(x: AdTensor<B>, axes: &[usize]) -> Result<AdTensor<B>> {
        ops::permute(x, axes)
    }
    fn narrow(x: AdTensor<B>, axis: usize, start: usize, len: usize) -> Result<AdTensor<B>> {
        ops::narrow(x, axis, start, len)
    }
    fn concat(xs: Vec<AdTensor<B>>, axis: usize) -> Result<AdTensor<B>> {
        ops::concat(xs, axis)
    }
    fn expand(x: AdTensor<B>, shape: &[usize]) -> Result<AdTensor<B>> {
        ops::expand(x, shape)
    }
    fn pad(x: AdTensor<B>, axis: usize, before: usize, after: usize) -> Result<AdTensor<B>> {
        ops::pad(x, axis, before, after)
    }
    fn unary(op: Unary, x: AdTensor<B>) -> Result<AdTensor<B>> {
        ops::unary(op, x)
    }
    fn binary(op: Binary, a: AdTensor<B>, b: AdTensor<B>) -> Result<AdTensor<B>> {
        ops::binary(op, a, b)
    }
    fn reduce(op: Reduce, x: AdTensor<B>, axis: usize) -> Result<AdTensor<B>> {
        ops::reduce(op, x, axis)
    }
    fn matmul(a: AdTensor<B>, b: AdTensor<B>, ta: bool, tb: bool) -> Result<AdTensor<B>> {
        ops::matmul(a, b, ta, tb)
    }
    fn gather_rows(table: AdTensor<B>, ids: B::Ids) -> Result<AdTensor<B>> {
        ops::gather_rows(table, ids)
    }
    fn scatter_add_rows(src: AdTensor<B>, ids: B::Ids, rows: usize) -> Result<AdTensor<B>> {
        ops::scatter_add_rows(src, ids, rows)
    }
    fn softmax(x: AdTensor<B>) -> Result<AdTensor<B>> {
        ops::softmax(x)
    }
    fn detach(x: AdTensor<B>) -> AdTensor<B> {
        AdTensor::constant(x.primal)
    }
}

/// The nn op family on the autodiff backend: every forward forwards to `B`'s fused kernel and
/// records `B`'s fused backward; the backward ops forward to `B` and return constants (no
/// second-order gradients).
impl<B: Backend> NnOps<Autodiff<B>> for Autodiff<B> {
    fn layer_norm_fwd(
        x: AdTensor<B>,
        gamma: AdTensor<B>,
        beta: AdTensor<B>,
        eps: f32,
    ) -> Result<(AdTensor<B>, AdTensor<B>, AdTensor<B>)> {
        ops::layer_norm(x, gamma, beta, eps)
    }
    fn rms_norm_fwd(x: AdTensor<B>, gamma: AdTensor<B>, eps: f32) -> Result<(AdTensor<B>, AdTensor<B>)> {
        ops::rms_norm(x, gamma, eps)
    }
    fn attention_fwd(
        q: AdTensor<B>,
        k: AdTensor<B>,
        v: AdTensor<B>,
        causal: bool,
        scale: f32,
    ) -> Result<(AdTensor<B>, AdTensor<B>)> {
        ops::attention(q, k, v, causal, scale)
    }
    fn linear(x: AdTensor<B>, w: AdTensor<B>, b: Option<AdTensor<B>>) -> Result<AdTensor<B>> {
        ops::linear(x, w, b)
    }
    fn sum_squares(x: AdTensor<B>) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::sum_squares(x.primal)?))
    }
    fn self_attention_fwd(qkv: AdTensor<B>, spec: &crate::backend::AttnSpec) -> Result<(AdTensor<B>, AdTensor<B>)> {
        ops::self_attention(qkv, spec)
    }
    fn cross_entropy_fwd(logits: AdTensor<B>, targets: B::Ids) -> Result<(AdTensor<B>, AdTensor<B>)> {
        ops::cross_entropy(logits, targets)
    }
    fn layer_norm_bwd(
        x: AdTensor<B>,
        gamma: AdTensor<B>,
        mean: AdTensor<B>,
        rstd: AdTensor<B>,
        dy: AdTensor<B>,
    ) -> Result<(AdTensor<B>, AdTensor<B>, AdTensor<B>)> {
        let (a, b, c) = B::layer_norm_bwd(x.primal, gamma.primal, mean.primal, rstd.primal, dy.primal)?;
        Ok((AdTensor::constant(a), AdTensor::constant(b), AdTensor::constant(c)))
    }
    fn rms_norm_bwd(
        x: AdTensor<B>,
        gamma: AdTensor<B>,
        rstd: AdTensor<B>,
        dy: AdTensor<B>,
    ) -> Result<(AdTensor<B>, AdTensor<B>)> {
        let (a, b) = B::rms_norm_bwd(x.primal, gamma.primal, rstd.primal, dy.primal)?;
        Ok((AdTensor::constant(a), AdTensor::constant(b)))
    }
    fn attention_bwd(
        q: AdTensor<B>,
        k: AdTensor<B>,
        v: AdTensor<B>,
        o: AdTensor<B>,
        lse: AdTensor<B>,
        dout: AdTensor<B>,
        causal: bool,
        scale: f32,
    ) -> Result<(AdTensor<B>, AdTensor<B>, AdTensor<B>)> {
        let (a, b, c) =
            B::attention_bwd(q.primal, k.primal, v.primal, o.primal, lse.primal, dout.primal, causal, scale)?;
        Ok((AdTensor::constant(a), AdTensor::constant(b), AdTensor::constant(c)))
    }
    fn self_attention_bwd(
        qkv: AdTensor<B>,
        o: AdTensor<B>,
        lse: AdTensor<B>,
        dout: AdTensor<B>,
        spec: &crate::backend::AttnSpec,
    ) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::self_attention_bwd(qkv.primal, o.primal, lse.primal, dout.primal, spec)?))
    }
    fn cross_entropy_bwd(
        logits: AdTensor<B>,
        targets: B::Ids,
        lse: AdTensor<B>,
        dloss: AdTensor<B>,
    ) -> Result<AdTensor<B>> {
        Ok(AdTensor::constant(B::cross_entropy_bwd(logits.primal, targets, lse.primal, dloss.primal)?))
    }
    fn adamw_step(
        p: AdTensor<B>,
        g: AdTensor<B>,
        m: AdTensor<B>,
        v: AdTensor<B>,
        h: &crate::backend::AdamWStep,
    ) -> Result<(AdTensor<B>, AdTensor<B>, AdTensor<B>)> {
        let (p, m, v) = B::adamw_step(p.primal, g.primal, m.primal, v.primal, h)?;
        Ok((AdTensor::constant(p), AdTensor::constant(m), AdTensor::constant(v)))
    }
}
