//! `Tensor<B>`: the shape-checked front door to a backend.
//!
//! Every public operation validates shapes and arguments and returns an
//! [`Error`](crate::Error) describing the problem; backends behind it may assume valid
//! input. Tensors are immutable values, cheap to clone (the primitive is reference
//! counted), and operations take `&self`.
use crate::backend::{Backend, Binary, Dist, Reduce, Unary};
use crate::error::{Error, Result};
use crate::rng::RngKey;
use crate::shape::{self, broadcast_shapes, check_axis, check_permutation, checked_numel};
use crate::shape_err;
use alloc::vec::Vec;
use core::fmt;

/// A float tensor on backend `B`.
pub struct Tensor<B: Backend> {
    prim: B::Tensor,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Self { prim: self.prim.clone() }
    }
}

impl<B: Backend> fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", B::name(), self.shape())
    }
}

/// A u32 index tensor (token ids) on backend `B`.
pub struct Ids<B: Backend> {
    prim: B::Ids,
}

impl<B: Backend> Clone for Ids<B> {
    fn clone(&self) -> Self {
        Self { prim: self.prim.clone() }
    }
}

impl<B: Backend> fmt::Debug for Ids<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ids<{}>{:?}", B::name(), self.shape())
    }
}

impl<B: Backend> Ids<B> {
    /// Ids from host data; `data.len()` must equal the product of `shape`.
    pub fn from_u32(data: &[u32], shape: &[usize], dev: &B::Device) -> Result<Self> {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(shape_err!("ids_from_u32", "{} values for shape {shape:?} ({n} elements)", data.len()));
        }
        Ok(Self { prim: B::ids_from_u32(data, shape, dev)? })
    }
    /// Wraps a backend primitive.
    pub fn from_prim(prim: B::Ids) -> Self {
        Self { prim }
    }
    /// The backend primitive.
    pub fn prim(&self) -> &B::Ids {
        &self.prim
    }
    /// Unwraps the backend primitive.
    pub fn into_prim(self) -> B::Ids {
        self.prim
    }
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        B::ids_shape(&self.prim)
    }
    /// Element count.
    pub fn numel(&self) -> usize {
        shape::numel(self.shape())
    }
    /// Copies the ids to the host.
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        B::ids_to_u32(self.prim.clone())
    }
    /// Same ids, new shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if checked_numel(shape)? != self.numel() {
            return Err(shape_err!("ids_reshape", "cannot reshape {:?} to {shape:?}", self.shape()));
        }
        Ok(Self { prim: B::ids_reshape(self.prim.clone(), shape)? })
    }
}

fn check_finite(op: &'static str, v: f32) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(alloc::format!("{op}: argument {v} is not finite")))
    }
}

impl<B: Backend> Tensor<B> {
    // ---- construction ------------------------------------------------------------------

    /// Wraps a backend primitive.
    pub fn from_prim(prim: B::Tensor) -> Self {
        Self { prim }
    }
    /// The backend primitive.
    pub fn prim(&self) -> &B::Tensor {
        &self.prim
    }
    /// Unwraps the backend primitive.
    pub fn into_prim(self) -> B::Tensor {
        self.prim
    }

    /// Tensor from row-major host data; `data.len()` must equal the product of `shape`.
    pub fn from_f32(data: &[f32], shape: &[usize], dev: &B::Device) -> Result<Self> {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(shape_err!("from_f32", "{} values for shape {shape:?} ({n} elements)", data.len()));
        }
        Ok(Self::from_prim(B::from_f32(data, shape, dev)?))
    }
    /// Tensor of `shape` filled with `value`.
    pub fn full(value: f32, shape: &[usize], dev: &B::Device) -> Result<Self> {
        checked_numel(shape)?;
        Ok(Self::from_prim(B::full(value, shape, dev)?))
    }
    /// Zeros.
    pub fn zeros(shape: &[usize], dev: &B::Device) -> Result<Self> {
        Self::full(0.0, shape, dev)
    }
    /// Ones.
    pub fn ones(shape: &[usize], dev: &B::Device) -> Result<Self> {
        Self::full(1.0, shape, dev)
    }
    /// Rank-0 tensor holding `v`.
    pub fn scalar(v: f32, dev: &B::Device) -> Result<Self> {
        Self::full(v, &[], dev)
    }
    /// Random tensor (the stream is defined in [`crate::rng`] and identical on every backend).
    pub fn random(dist: Dist, key: RngKey, shape: &[usize], dev: &B::Device) -> Result<Self> {
        checked_numel(shape)?;
        match dist {
            Dist::Uniform { lo, hi } => {
                check_finite("random", lo)?;
                check_finite("random", hi)?;
                if lo > hi {
                    return Err(Error::InvalidArgument(alloc::format!("uniform bounds {lo} > {hi}")));
                }
            }
            Dist::Normal { mean, std } => {
                check_finite("random", mean)?;
                check_finite("random", std)?;
                if std < 0.0 {
                    return Err(Error::InvalidArgument(alloc::format!("normal std {std} < 0")));
                }
            }
            Dist::Bernoulli { p } => {
                if !(0.0..=1.0).contains(&p) {
                    return Err(Error::InvalidArgument(alloc::format!("bernoulli p {p} outside [0, 1]")));
                }
            }
        }
        Ok(Self::from_prim(B::random(dist, key, shape, dev)?))
    }
    /// Gaussian tensor with mean 0 and standard deviation `std`.
    pub fn randn(std: f32, key: RngKey, shape: &[usize], dev: &B::Device) -> Result<Self> {
        Self::random(Dist::Normal { mean: 0.0, std }, key, shape, dev)
    }

    // ---- metadata ------------------------------------------------------------------------

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        B::shape(&self.prim)
    }
    /// Rank (number of axes).
    pub fn rank(&self) -> usize {
        self.shape().len()
    }
    /// Element count.
    pub fn numel(&self) -> usize {
        shape::numel(self.shape())
    }
    /// Size of axis `i`.
    pub fn dim(&self, i: usize) -> Result<usize> {
        self.shape()
            .get(i)
            .copied()
            .ok_or_else(|| shape_err!("dim", "axis {i} out of range for shape {:?}", self.shape()))
    }
    /// Device.
    pub fn device(&self) -> B::Device {
        B::device(&self.prim)
    }
    /// Copies to the host (row-major).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        B::to_f32(self.prim.clone())
    }
    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(shape_err!("to_scalar", "tensor of shape {:?} is not a scalar", self.shape()));
        }
        Ok(self.to_vec()?[0])
    }

    // ---- layout --------------------------------------------------------------------------

    /// Same data, new shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if checked_numel(shape)? != self.numel() {
            return Err(shape_err!("reshape", "cannot reshape {:?} to {shape:?}", self.shape()));
        }
        Ok(Self::from_prim(B::reshape(self.prim.clone(), shape)?))
    }
    /// Axis permutation: output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Result<Self> {
        check_permutation("permute", axes, self.rank())?;
        if axes.iter().enumerate().all(|(i, &a)| i == a) {
            return Ok(self.clone());
        }
        Ok(Self::from_prim(B::permute(self.prim.clone(), axes)?))
    }
    /// Swaps axes `a` and `b`.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Self> {
        check_axis("transpose", a, self.rank())?;
        check_axis("transpose", b, self.rank())?;
        let mut axes: Vec<usize> = (0..self.rank()).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }
    /// Elements `start..start+len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        check_axis("narrow", axis, self.rank())?;
        let d = self.shape()[axis];
        if start.checked_add(len).is_none_or(|e| e > d) {
            return Err(shape_err!("narrow", "range {start}..{start}+{len} exceeds axis {axis} of size {d}"));
        }
        if start == 0 && len == d {
            return Ok(self.clone());
        }
        Ok(Self::from_prim(B::narrow(self.prim.clone(), axis, start, len)?))
    }
    /// Concatenation of `xs` along `axis`.
    pub fn cat(xs: &[Self], axis: usize) -> Result<Self> {
        let first = xs.first().ok_or_else(|| shape_err!("cat", "no tensors to concatenate"))?;
        check_axis("cat", axis, first.rank())?;
        for x in &xs[1..] {
            let ok = x.rank() == first.rank()
                && x.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                return Err(shape_err!("cat", "{:?} does not fit {:?} along axis {axis}", x.shape(), first.shape()));
            }
        }
        if xs.len() == 1 {
            return Ok(first.clone());
        }
        Ok(Self::from_prim(B::concat(xs.iter().map(|x| x.prim.clone()).collect(), axis)?))
    }
    /// Broadcast (numpy rules) to `shape`, materialised.
    pub fn expand(&self, shape: &[usize]) -> Result<Self> {
        if !shape::broadcastable_to(self.shape(), shape) {
            return Err(shape_err!("expand", "cannot broadcast {:?} to {shape:?}", self.shape()));
        }
        checked_numel(shape)?;
        if self.shape() == shape {
            return Ok(self.clone());
        }
        Ok(Self::from_prim(B::expand(self.prim.clone(), shape)?))
    }
    /// Zero padding along `axis`.
    pub fn pad(&self, axis: usize, before: usize, after: usize) -> Result<Self> {
        check_axis("pad", axis, self.rank())?;
        if before == 0 && after == 0 {
            return Ok(self.clone());
        }
        Ok(Self::from_prim(B::pad(self.prim.clone(), axis, before, after)?))
    }

    // ---- elementwise ---------------------------------------------------------------------

    /// `f(x)` elementwise.
    pub fn unary(&self, op: Unary) -> Result<Self> {
        match op {
            Unary::Affine { mul, add } => {
                check_finite("affine", mul)?;
                check_finite("affine", add)?;
            }
            Unary::Powf(p) => check_finite("powf", p)?,
            Unary::Clamp { min, max } if min.is_nan() || max.is_nan() || min > max => {
                return Err(Error::InvalidArgument(alloc::format!("clamp bounds [{min}, {max}]")));
            }
            _ => {}
        }
        Ok(Self::from_prim(B::unary(op, self.prim.clone())?))
    }
    /// `op(self, other)` with numpy broadcasting.
    pub fn binary(&self, op: Binary, other: &Self) -> Result<Self> {
        broadcast_shapes("binary", self.shape(), other.shape())?;
        Ok(Self::from_prim(B::binary(op, self.prim.clone(), other.prim.clone())?))
    }
    /// `self + other`.
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Add, other)
    }
    /// `self − other`.
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Sub, other)
    }
    /// `self ⊙ other`.
    pub fn mul(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Mul, other)
    }
    /// `self / other`.
    pub fn div(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Div, other)
    }
    /// Elementwise maximum.
    pub fn maximum(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Max, other)
    }
    /// Elementwise minimum.
    pub fn minimum(&self, other: &Self) -> Result<Self> {
        self.binary(Binary::Min, other)
    }
    /// `mul·x + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Self> {
        self.unary(Unary::Affine { mul, add })
    }
    /// `x + s`.
    pub fn add_scalar(&self, s: f32) -> Result<Self> {
        self.affine(1.0, s)
    }
    /// `x · s`.
    pub fn mul_scalar(&self, s: f32) -> Result<Self> {
        self.affine(s, 0.0)
    }
    /// `−x`.
    pub fn neg(&self) -> Result<Self> {
        self.unary(Unary::Neg)
    }
    /// `e^x`.
    pub fn exp(&self) -> Result<Self> {
        self.unary(Unary::Exp)
    }
    /// `ln x`.
    pub fn log(&self) -> Result<Self> {
        self.unary(Unary::Log)
    }
    /// `√x`.
    pub fn sqrt(&self) -> Result<Self> {
        self.unary(Unary::Sqrt)
    }
    /// `x²`.
    pub fn square(&self) -> Result<Self> {
        self.unary(Unary::Square)
    }
    /// `tanh x`.
    pub fn tanh(&self) -> Result<Self> {
        self.unary(Unary::Tanh)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Result<Self> {
        self.unary(Unary::Sigmoid)
    }
    /// `max(x, 0)`.
    pub fn relu(&self) -> Result<Self> {
        self.unary(Unary::Relu)
    }
    /// Exact (erf) GELU.
    pub fn gelu(&self) -> Result<Self> {
        self.unary(Unary::Gelu)
    }
    /// `x·σ(x)`.
    pub fn silu(&self) -> Result<Self> {
        self.unary(Unary::Silu)
    }
    /// `min(max(x, lo), hi)`.
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Self> {
        self.unary(Unary::Clamp { min: lo, max: hi })
    }

    // ---- reductions ----------------------------------------------------------------------

    /// Reduction along `axis`, kept with size 1.
    pub fn reduce(&self, op: Reduce, axis: usize) -> Result<Self> {
        check_axis("reduce", axis, self.rank())?;
        if self.shape()[axis] == 0 {
            return Err(shape_err!("reduce", "axis {axis} of {:?} is empty", self.shape()));
        }
        Ok(Self::from_prim(B::reduce(op, self.prim.clone(), axis)?))
    }
    /// Sum along `axis` (kept with size 1).
    pub fn sum(&self, axis: usize) -> Result<Self> {
        self.reduce(Reduce::Sum, axis)
    }
    /// Mean along `axis` (kept with size 1).
    pub fn mean(&self, axis: usize) -> Result<Self> {
        self.reduce(Reduce::Mean, axis)
    }
    /// Maximum along `axis` (kept with size 1).
    pub fn max(&self, axis: usize) -> Result<Self> {
        self.reduce(Reduce::Max, axis)
    }
    /// Sum of all elements, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Self> {
        self.reshape(&[self.numel()])?.sum(0)?.reshape(&[])
    }
    /// Mean of all elements, as a rank-0 tensor.
    pub fn mean_all(&self) -> Result<Self> {
        self.reshape(&[self.numel()])?.mean(0)?.reshape(&[])
    }

    // ---- linear algebra ------------------------------------------------------------------

    /// `self · other` (batched; see [`Tensor::matmul_t`]).
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        self.matmul_t(other, false, false)
    }

    /// `op(self) · op(other)` where `op` transposes the last two axes when its flag is set.
    /// Batch dims must be equal, or one operand must be a plain matrix shared by all batches.
    pub fn matmul_t(&self, other: &Self, ta: bool, tb: bool) -> Result<Self> {
        let (a, b) = (self.shape(), other.shape());
        if a.len() < 2 || b.len() < 2 {
            return Err(shape_err!("matmul", "operands need rank >= 2, got {a:?} and {b:?}"));
        }
        let (ra, rb) = (a.len(), b.len());
        let (m, ka) = if ta { (a[ra - 1], a[ra - 2]) } else { (a[ra - 2], a[ra - 1]) };
        let (kb, n) = if tb { (b[rb - 1], b[rb - 2]) } else { (b[rb - 2], b[rb - 1]) };
        if ka != kb {
            return Err(shape_err!(
                "matmul",
                "inner dimensions differ: {a:?}{} · {b:?}{}",
                if ta { "ᵀ" } else { "" },
                if tb { "ᵀ" } else { "" }
            ));
        }
        let (ba, bb) = (&a[..ra - 2], &b[..rb - 2]);
        if !(ba == bb || ba.is_empty() || bb.is_empty()) {
            return Err(shape_err!("matmul", "batch dims {ba:?} and {bb:?} differ"));
        }
        // A batched left operand against a shared matrix is one big 2-D product.
        if !ba.is_empty() && bb.is_empty() && !ta {
            let rows = shape::numel(ba) * m;
            let flat = B::reshape(self.prim.clone(), &[rows, ka])?;
            let out = B::matmul(flat, other.prim.clone(), false, tb)?;
            let mut shape = ba.to_vec();
            shape.extend_from_slice(&[m, n]);
            return Ok(Self::from_prim(B::reshape(out, &shape)?));
        }
        Ok(Self::from_prim(B::matmul(self.prim.clone(), other.prim.clone(), ta, tb)?))
    }

    /// Linear layer `x·wᵀ + b`: `self: [..., in]`, `w: [out, in]`, `b: [out]`.
    pub fn linear(&self, w: &Self, b: Option<&Self>) -> Result<Self> {
        let (xs, ws) = (self.shape(), w.shape());
        if ws.len() != 2 || xs.last() != Some(&ws[1]) {
            return Err(shape_err!("linear", "input {xs:?} does not fit weight {ws:?} ([out, in])"));
        }
        if let Some(b) = b {
            if b.shape() != [ws[0]] {
                return Err(shape_err!("linear", "bias {:?} does not fit weight {ws:?}", b.shape()));
            }
        }
        Ok(Self::from_prim(B::linear(self.prim.clone(), w.prim.clone(), b.map(|b| b.prim.clone()))?))
    }

    // ---- indexing ------------------------------------------------------------------------

    /// Row gather: `self: [V, D]` (an embedding table), `ids: [*]`, output `[*, D]`.
    /// Ids `>= V` are an error.
    pub fn gather_rows(&self, ids: &Ids<B>) -> Result<Self> {
        if self.rank() != 2 {
            return Err(shape_err!("gather_rows", "table must be [rows, dim], got {:?}", self.shape()));
        }
        Ok(Self::from_prim(B::gather_rows(self.prim.clone(), ids.prim.clone())?))
    }
    /// Row scatter-add: `self: [*, D]`, `ids: [*]`, output `[rows, D]`.
    pub fn scatter_add_rows(&self, ids: &Ids<B>, rows: usize) -> Result<Self> {
        let d = *self.shape().last().ok_or_else(|| shape_err!("scatter_add_rows", "rank-0 source"))?;
        if self.numel() != ids.numel() * d {
            return Err(shape_err!(
                "scatter_add_rows",
                "source {:?} does not match ids {:?}",
                self.shape(),
                ids.shape()
            ));
        }
        Ok(Self::from_prim(B::scatter_add_rows(self.prim.clone(), ids.prim.clone(), rows)?))
    }

    // ---- softmax and fused NN ops -------------------------------------------------------

    /// Softmax over the last axis.
    pub fn softmax(&self) -> Result<Self> {
        if self.rank() == 0 {
            return Err(shape_err!("softmax", "needs rank >= 1"));
        }
        Ok(Self::from_prim(B::softmax(self.prim.clone())?))
    }

    fn check_norm(&self, op: &'static str, gamma: &Self, eps: f32) -> Result<usize> {
        let d = *self.shape().last().ok_or_else(|| shape_err!(op, "input must have rank >= 1"))?;
        if gamma.shape() != [d] {
            return Err(shape_err!(op, "gain {:?} does not match last axis of {:?}", gamma.shape(), self.shape()));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::InvalidArgument(alloc::format!("{op}: eps {eps} must be finite and > 0")));
        }
        Ok(d)
    }

    /// LayerNorm over the last axis with gain `gamma: [D]` and bias `beta: [D]`.
    pub fn layer_norm(&self, gamma: &Self, beta: &Self, eps: f32) -> Result<Self> {
        let d = self.check_norm("layer_norm", gamma, eps)?;
        if beta.shape() != [d] {
            return Err(shape_err!("layer_norm", "bias {:?} does not match last axis {d}", beta.shape()));
        }
        let (y, _, _) = B::layer_norm_fwd(self.prim.clone(), gamma.prim.clone(), beta.prim.clone(), eps)?;
        Ok(Self::from_prim(y))
    }
    /// RMSNorm over the last axis with gain `gamma: [D]`.
    pub fn rms_norm(&self, gamma: &Self, eps: f32) -> Result<Self> {
        self.check_norm("rms_norm", gamma, eps)?;
        let (y, _) = B::rms_norm_fwd(self.prim.clone(), gamma.prim.clone(), eps)?;
        Ok(Self::from_prim(y))
    }

    /// Scaled dot-product attention `softmax(scale·q kᵀ [+ causal mask]) v`.
    /// `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`, equal batch dims; with
    /// `causal`, query `i` sees keys `j ≤ i + Sk − Sq` (requires `Sk ≥ Sq`).
    pub fn attention(q: &Self, k: &Self, v: &Self, causal: bool, scale: f32) -> Result<Self> {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        let r = qs.len();
        if r < 2 || ks.len() != r || vs.len() != r {
            return Err(shape_err!("attention", "q {qs:?}, k {ks:?}, v {vs:?} must share rank >= 2"));
        }
        if qs[..r - 2] != ks[..r - 2] || ks[..r - 2] != vs[..r - 2] {
            return Err(shape_err!("attention", "batch dims differ: q {qs:?}, k {ks:?}, v {vs:?}"));
        }
        if qs[r - 1] != ks[r - 1] || ks[r - 2] != vs[r - 2] {
            return Err(shape_err!("attention", "q {qs:?}, k {ks:?}, v {vs:?} do not fit"));
        }
        if ks[r - 2] == 0 {
            return Err(shape_err!("attention", "no keys"));
        }
        if causal && ks[r - 2] < qs[r - 2] {
            return Err(shape_err!("attention", "causal attention needs Sk >= Sq, got {} < {}", ks[r - 2], qs[r - 2]));
        }
        check_finite("attention scale", scale)?;
        let (o, _) = B::attention_fwd(q.prim.clone(), k.prim.clone(), v.prim.clone(), causal, scale)?;
        Ok(Self::from_prim(o))
    }

    /// Self-attention on a packed projection `qkv: [B, S, 3, H, Dh]` (q, k, v of each head
    /// as produced by one `[3·H·Dh, d]` linear layer); returns `[B, S, H, Dh]`. Equivalent to
    /// [`Tensor::attention`] per head, without splitting or permuting copies.
    pub fn self_attention(qkv: &Self, spec: &crate::backend::AttnSpec) -> Result<Self> {
        let s = qkv.shape();
        if s.len() != 5 || s[2] != 3 || s[1] == 0 {
            return Err(shape_err!("self_attention", "qkv must be [batch, seq, 3, heads, head_dim], got {s:?}"));
        }
        check_finite("self_attention scale", spec.scale)?;
        if let Some(d) = spec.dropout {
            if !(0.0..1.0).contains(&d.p) {
                return Err(Error::InvalidArgument(alloc::format!("attention dropout {} outside [0, 1)", d.p)));
            }
        }
        let (o, _) = B::self_attention_fwd(qkv.prim.clone(), spec)?;
        Ok(Self::from_prim(o))
    }

    /// The same values with no gradient history (a stop-gradient).
    pub fn detach(&self) -> Self {
        Self::from_prim(B::detach(self.prim.clone()))
    }

    /// Mean cross-entropy of `self: [N, V]` logits against `targets: [N]`; a rank-0 tensor.
    pub fn cross_entropy(&self, targets: &Ids<B>) -> Result<Self> {
        if self.rank() != 2 || targets.shape() != [self.shape()[0]] || self.shape()[0] == 0 || self.shape()[1] == 0 {
            return Err(shape_err!(
                "cross_entropy",
                "logits {:?} must be [N, V] with N, V > 0 and targets {:?} must be [N]",
                self.shape(),
                targets.shape()
            ));
        }
        let (loss, _) = B::cross_entropy_fwd(self.prim.clone(), targets.prim.clone())?;
        Ok(Self::from_prim(loss))
    }
}
