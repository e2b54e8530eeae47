//! Conformance: operation cases, how to run them on a backend (primitive / fused /
//! composite) or on the naive reference, and proptest generators for them.
use crate::reference::{self as naive, H};
use crate::{close, Tol};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use protocell_core::backend::{self as be, AdamWStep, AttnDropout, AttnSpec, Backend, Binary, Dist, Reduce, Unary};
use protocell_core::cell::{self, CellMode, ColonySpec, Pruning};
use protocell_core::error::Result;
use protocell_core::rng::RngKey;
use protocell_core::AllOps;
use protocell_cpu::{Cpu, CpuDevice};

/// One operation with host inputs.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum OpCase {
    Unary { op: Unary, x: H },
    UnaryGrad { op: Unary, x: H, dy: H },
    Binary { op: Binary, a: H, b: H },
    Reduce { op: Reduce, x: H, axis: usize },
    Matmul { a: H, b: H, ta: bool, tb: bool },
    Permute { x: H, axes: Vec<usize> },
    Narrow { x: H, axis: usize, start: usize, len: usize },
    Concat { xs: Vec<H>, axis: usize },
    Expand { x: H, to: Vec<usize> },
    Pad { x: H, axis: usize, before: usize, after: usize },
    Gather { table: H, ids: Vec<u32>, ids_shape: Vec<usize> },
    Scatter { src: H, ids: Vec<u32>, rows: usize },
    Softmax { x: H },
    SoftmaxGrad { x: H, dy: H },
    Norm { x: H, g: H, b: Option<H>, eps: f32 },
    NormBwd { x: H, g: H, b: Option<H>, eps: f32, dy: H },
    Attention { q: H, k: H, v: H, causal: bool, scale: f32 },
    AttentionBwd { q: H, k: H, v: H, dout: H, causal: bool, scale: f32 },
    CrossEntropy { logits: H, targets: Vec<u32> },
    CrossEntropyBwd { logits: H, targets: Vec<u32>, g: f32 },
    AdamW { p: H, g: H, m: H, v: H, h: AdamWStepCase },
    Linear { x: H, w: H, b: Option<H> },
    SelfAttention { qkv: H, spec: AttnSpec },
    SelfAttentionBwd { qkv: H, dout: H, spec: AttnSpec },
    SumSquares { x: H },
    Random { dist: Dist, seed: u64, offset: u64, shape: Vec<usize> },
    Colony { h0: H, w0: H, stim: H, coeffs: H, spec: ColonySpec },
    ColonyBwd { h0: H, w0: H, stim: H, coeffs: H, spec: ColonySpec, dh: H, dw: H },
}

/// AdamW constants of a case (plain data so the case is `Debug`/`Clone`).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct AdamWStepCase {
    pub lr: f64,
    pub wd: f64,
    pub t: u64,
    pub grad_scale: f32,
}

impl AdamWStepCase {
    fn step(&self) -> AdamWStep {
        AdamWStep::new(self.lr, 0.9, 0.999, 1e-8, self.wd, self.t).with_grad_scale(self.grad_scale)
    }
}

impl OpCase {
    /// True for cases with a fused kernel slot (compared against the primitive composition).
    pub fn is_fused(&self) -> bool {
        matches!(
            self,
            OpCase::UnaryGrad { .. }
                | OpCase::Softmax { .. }
                | OpCase::SoftmaxGrad { .. }
                | OpCase::Norm { .. }
                | OpCase::NormBwd { .. }
                | OpCase::Attention { .. }
                | OpCase::AttentionBwd { .. }
                | OpCase::CrossEntropy { .. }
                | OpCase::CrossEntropyBwd { .. }
                | OpCase::AdamW { .. }
                | OpCase::Pad { .. }
                | OpCase::Linear { .. }
                | OpCase::SelfAttention { .. }
                | OpCase::SelfAttentionBwd { .. }
                | OpCase::SumSquares { .. }
                | OpCase::Colony { .. }
                | OpCase::ColonyBwd { .. }
        )
    }
}

fn up<B: Backend>(h: &H, dev: &B::Device) -> Result<B::Tensor> {
    B::from_f32(&h.data, &h.shape, dev)
}

fn down<B: Backend>(t: B::Tensor) -> Result<H> {
    let shape = B::shape(&t).to_vec();
    Ok(H { data: B::to_f32(t)?, shape })
}

/// Which implementation of fused ops to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The backend's own (possibly fused) kernels.
    Native,
    /// The primitive compositions of `protocell_core::backend::composite`.
    Composite,
}

/// Runs `case` on backend `B`; returns every output in a fixed order.
pub fn run<B: AllOps>(case: &OpCase, dev: &B::Device, path: Path) -> Result<Vec<H>> {
    let c = path == Path::Composite;
    let u = |h: &H| up::<B>(h, dev);
    let out: Vec<B::Tensor> = match case {
        OpCase::Unary { op, x } => vec![B::unary(*op, u(x)?)?],
        OpCase::UnaryGrad { op, x, dy } => {
            let y = B::unary(*op, u(x)?)?;
            if c {
                vec![be::unary_grad::<B>(*op, u(x)?, y, u(dy)?)?]
            } else {
                vec![B::unary_grad(*op, u(x)?, y, u(dy)?)?]
            }
        }
        OpCase::Binary { op, a, b } => vec![B::binary(*op, u(a)?, u(b)?)?],
        OpCase::Reduce { op, x, axis } => vec![B::reduce(*op, u(x)?, *axis)?],
        OpCase::Matmul { a, b, ta, tb } => vec![B::matmul(u(a)?, u(b)?, *ta, *tb)?],
        OpCase::Permute { x, axes } => vec![B::permute(u(x)?, axes)?],
        OpCase::Narrow { x, axis, start, len } => vec![B::narrow(u(x)?, *axis, *start, *len)?],
        OpCase::Concat { xs, axis } => {
            vec![B::concat(xs.iter().map(u).collect::<Result<_>>()?, *axis)?]
        }
        OpCase::Expand { x, to } => vec![B::expand(u(x)?, to)?],
        OpCase::Pad { x, axis, before, after } => {
            if c {
                vec![be::pad::<B>(u(x)?, *axis, *before, *after)?]
            } else {
                vec![B::pad(u(x)?, *axis, *before, *after)?]
            }
        }
        OpCase::Gather { table, ids, ids_shape } => {
            vec![B::gather_rows(u(table)?, B::ids_from_u32(ids, ids_shape, dev)?)?]
        }
        OpCase::Scatter { src, ids, rows } => {
            vec![B::scatter_add_rows(u(src)?, B::ids_from_u32(ids, &[ids.len()], dev)?, *rows)?]
        }
        OpCase::Softmax { x } => vec![if c { be::softmax::<B>(u(x)?)? } else { B::softmax(u(x)?)? }],
        OpCase::SoftmaxGrad { x, dy } => {
            let y = B::softmax(u(x)?)?;
            vec![if c { be::softmax_grad::<B>(y, u(dy)?)? } else { B::softmax_grad(y, u(dy)?)? }]
        }
        OpCase::Norm { x, g, b, eps } => match b {
            Some(b) => {
                let (y, m, r) = if c {
                    be::layer_norm_fwd::<B>(u(x)?, u(g)?, u(b)?, *eps)?
                } else {
                    B::layer_norm_fwd(u(x)?, u(g)?, u(b)?, *eps)?
                };
                vec![y, m, r]
            }
            None => {
                let (y, r) =
                    if c { be::rms_norm_fwd::<B>(u(x)?, u(g)?, *eps)? } else { B::rms_norm_fwd(u(x)?, u(g)?, *eps)? };
                vec![y, r]
            }
        },
        OpCase::NormBwd { x, g, b, eps, dy } => match b {
            Some(b) => {
                let (_, m, r) = B::layer_norm_fwd(u(x)?, u(g)?, u(b)?, *eps)?;
                let (dx, dg, db) = if c {
                    be::layer_norm_bwd::<B>(u(x)?, u(g)?, m, r, u(dy)?)?
                } else {
                    B::layer_norm_bwd(u(x)?, u(g)?, m, r, u(dy)?)?
                };
                vec![dx, dg, db]
            }
            None => {
                let (_, r) = B::rms_norm_fwd(u(x)?, u(g)?, *eps)?;
                let (dx, dg) = if c {
                    be::rms_norm_bwd::<B>(u(x)?, u(g)?, r, u(dy)?)?
                } else {
                    B::rms_norm_bwd(u(x)?, u(g)?, r, u(dy)?)?
                };
                vec![dx, dg]
            }
        },
        OpCase::Attention { q, k, v, causal, scale } => {
            let (o, l) = if c {
                be::attention_fwd::<B>(u(q)?, u(k)?, u(v)?, *causal, *scale)?
            } else {
                B::attention_fwd(u(q)?, u(k)?, u(v)?, *causal, *scale)?
            };
            vec![o, l]
        }
        OpCase::AttentionBwd { q, k, v, dout, causal, scale } => {
            let (o, l) = B::attention_fwd(u(q)?, u(k)?, u(v)?, *causal, *scale)?;
            let (dq, dk, dv) = if c {
                be::attention_bwd::<B>(u(q)?, u(k)?, u(v)?, o, l, u(dout)?, *causal, *scale)?
            } else {
                B::attention_bwd(u(q)?, u(k)?, u(v)?, o, l, u(dout)?, *causal, *scale)?
            };
            vec![dq, dk, dv]
        }
        OpCase::CrossEntropy { logits, targets } => {
            let ids = B::ids_from_u32(targets, &[targets.len()], dev)?;
            let (l, lse) =
                if c { be::cross_entropy_fwd::<B>(u(logits)?, ids)? } else { B::cross_entropy_fwd(u(logits)?, ids)? };
            vec![l, lse]
        }
        OpCase::CrossEntropyBwd { logits, targets, g } => {
            let ids = B::ids_from_u32(targets, &[targets.len()], dev)?;
            let (_, lse) = B::cross_entropy_fwd(u(logits)?, ids.clone())?;
            let gt = B::full(*g, &[], dev)?;
            vec![if c {
                be::cross_entropy_bwd::<B>(u(logits)?, ids, lse, gt)?
            } else {
                B::cross_entropy_bwd(u(logits)?, ids, lse, gt)?
            }]
        }
        OpCase::AdamW { p, g, m, v, h } => {
            let s = h.step();
            let (p, m, v) = if c {
                be::adamw_step::<B>(u(p)?, u(g)?, u(m)?, u(v)?, &s)?
            } else {
                B::adamw_step(u(p)?, u(g)?, u(m)?, u(v)?, &s)?
            };
            vec![p, m, v]
        }
        OpCase::Linear { x, w, b } => {
            let b = b.as_ref().map(u).transpose()?;
            vec![if c { be::linear::<B>(u(x)?, u(w)?, b)? } else { B::linear(u(x)?, u(w)?, b)? }]
        }
        OpCase::SelfAttention { qkv, spec } => {
            let (o, l) =
                if c { be::self_attention_fwd::<B>(u(qkv)?, spec)? } else { B::self_attention_fwd(u(qkv)?, spec)? };
            vec![o, l]
        }
        OpCase::SelfAttentionBwd { qkv, dout, spec } => {
            let (o, l) = B::self_attention_fwd(u(qkv)?, spec)?;
            vec![if c {
                be::self_attention_bwd::<B>(u(qkv)?, o, l, u(dout)?, spec)?
            } else {
                B::self_attention_bwd(u(qkv)?, o, l, u(dout)?, spec)?
            }]
        }
        OpCase::SumSquares { x } => vec![if c { be::sum_squares::<B>(u(x)?)? } else { B::sum_squares(u(x)?)? }],
        OpCase::Colony { h0, w0, stim, coeffs, spec } => {
            let (h, w, a) = if c {
                cell::composite::colony_fwd::<B>(u(h0)?, u(w0)?, u(stim)?, u(coeffs)?, spec)?
            } else {
                B::colony_fwd(u(h0)?, u(w0)?, u(stim)?, u(coeffs)?, spec)?
            };
            vec![h, w, a]
        }
        OpCase::ColonyBwd { h0, w0, stim, coeffs, spec, dh, dw } => {
            let (a, b, cc, d) = if c {
                cell::composite::colony_bwd::<B>(u(h0)?, u(w0)?, u(stim)?, u(coeffs)?, spec, u(dh)?, u(dw)?)?
            } else {
                B::colony_bwd(u(h0)?, u(w0)?, u(stim)?, u(coeffs)?, spec, u(dh)?, u(dw)?)?
            };
            vec![a, b, cc, d]
        }
        OpCase::Random { dist, seed, offset, shape } => {
            vec![B::random(*dist, RngKey { seed: *seed, offset: *offset }, shape, dev)?]
        }
    };
    out.into_iter().map(down::<B>).collect()
}

/// The naive host result of `case`, for the cases that have one (forward ops).
pub fn run_naive(case: &OpCase) -> Option<Vec<H>> {
    Some(match case {
        OpCase::Unary { op, x } => vec![naive::unary(*op, x)],
        OpCase::Binary { op, a, b } => vec![naive::binary(*op, a, b)],
        OpCase::Reduce { op, x, axis } => vec![naive::reduce(*op, x, *axis)],
        OpCase::Matmul { a, b, ta, tb } => vec![naive::matmul(a, b, *ta, *tb)],
        OpCase::Permute { x, axes } => vec![naive::permute(x, axes)],
        OpCase::Narrow { x, axis, start, len } => vec![naive::narrow(x, *axis, *start, *len)],
        OpCase::Concat { xs, axis } => vec![naive::concat(xs, *axis)],
        OpCase::Expand { x, to } => vec![naive::expand(x, to)],
        OpCase::Pad { x, axis, before, after } => vec![naive::pad(x, *axis, *before, *after)],
        OpCase::Gather { table, ids, ids_shape } => vec![naive::gather_rows(table, ids, ids_shape)],
        OpCase::Scatter { src, ids, rows } => vec![naive::scatter_add_rows(src, ids, *rows)],
        OpCase::Softmax { x } => vec![naive::softmax(x)],
        OpCase::Norm { x, g, b, eps } => vec![naive::norm(x, &g.data, b.as_ref().map(|b| b.data.as_slice()), *eps)],
        OpCase::Attention { q, k, v, causal, scale } => vec![naive::attention(q, k, v, *causal, *scale)],
        OpCase::CrossEntropy { logits, targets } => {
            vec![H::new(&[], vec![naive::cross_entropy(logits, targets)])]
        }
        _ => return None,
    })
}

fn compare(what: &str, got: &[H], want: &[H], tol: Tol) -> std::result::Result<(), String> {
    // the naive reference returns only the first output of multi-output ops
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape != w.shape {
            return Err(format!("{what} output {i}: shape {:?} vs {:?}", g.shape, w.shape));
        }
        close(&format!("{what} output {i}"), &g.data, &w.data, tol)?;
    }
    Ok(())
}

/// Backend `B` against the CPU reference backend on one case.
pub fn check_vs_cpu<B: AllOps>(case: &OpCase, dev: &B::Device, tol: Tol) -> std::result::Result<(), String> {
    let got = run::<B>(case, dev, Path::Native).map_err(|e| format!("{}: {e}", B::name()))?;
    let want = run::<Cpu>(case, &CpuDevice, Path::Native).map_err(|e| format!("cpu: {e}"))?;
    if got.len() != want.len() {
        return Err(format!("{} outputs vs {}", got.len(), want.len()));
    }
    compare(&format!("{} vs cpu", B::name()), &got, &want, tol)
}

/// A fused kernel of `B` against `B`'s own primitive composition on one case.
pub fn check_fused<B: AllOps>(case: &OpCase, dev: &B::Device, tol: Tol) -> std::result::Result<(), String> {
    let got = run::<B>(case, dev, Path::Native).map_err(|e| e.to_string())?;
    let want = run::<B>(case, dev, Path::Composite).map_err(|e| e.to_string())?;
    compare(&format!("{} fused vs composite", B::name()), &got, &want, tol)
}

/// The CPU backend against the naive host loops on one case (skips cases without one).
pub fn check_cpu_vs_naive(case: &OpCase, tol: Tol) -> std::result::Result<(), String> {
    let Some(want) = run_naive(case) else {
        return Ok(());
    };
    let got = run::<Cpu>(case, &CpuDevice, Path::Native).map_err(|e| e.to_string())?;
    compare("cpu vs naive", &got, &want, tol)
}

// ---- generators ---------------------------------------------------------------------------

fn values(n: usize, lo: f32, hi: f32) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(lo..hi, n)
}

/// A host tensor of `shape` with values in `[lo, hi)`.
pub fn arb_h(shape: Vec<usize>, lo: f32, hi: f32) -> impl Strategy<Value = H> {
    let n = shape.iter().product();
    values(n, lo, hi).prop_map(move |d| H::new(&shape, d))
}

/// Shapes of rank 1–4 with small, odd-friendly dims (size 1 included).
pub fn arb_shape() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..=6, 1..=4)
}

const UNARY_ANY: [Unary; 13] = [
    Unary::Neg,
    Unary::Exp,
    Unary::Abs,
    Unary::Square,
    Unary::Tanh,
    Unary::Sigmoid,
    Unary::Erf,
    Unary::Relu,
    Unary::Gelu,
    Unary::Silu,
    Unary::Softplus,
    Unary::Sin,
    Unary::Cos,
];
const UNARY_POS: [Unary; 5] = [Unary::Log, Unary::Sqrt, Unary::Rsqrt, Unary::Recip, Unary::Powf(1.7)];

/// Unary ops with their input domains (positive-only ops get inputs in `[0.2, 3)`).
pub fn arb_unary_op() -> impl Strategy<Value = (Unary, f32, f32)> {
    prop_oneof![
        proptest::sample::select(UNARY_ANY.to_vec()).prop_map(|o| (o, -3.0, 3.0)),
        proptest::sample::select(UNARY_POS.to_vec()).prop_map(|o| (o, 0.2, 3.0)),
        Just((Unary::Affine { mul: -1.5, add: 0.25 }, -3.0, 3.0)),
        Just((Unary::Clamp { min: -0.5, max: 0.7 }, -3.0, 3.0)),
    ]
}

fn arb_unary() -> impl Strategy<Value = OpCase> {
    (arb_unary_op(), arb_shape())
        .prop_flat_map(|((op, lo, hi), s)| arb_h(s, lo, hi).prop_map(move |x| OpCase::Unary { op, x }))
}

fn arb_unary_grad() -> impl Strategy<Value = OpCase> {
    (arb_unary_op(), arb_shape()).prop_flat_map(|((op, lo, hi), s)| {
        (arb_h(s.clone(), lo, hi), arb_h(s, -1.0, 1.0)).prop_map(move |(x, dy)| OpCase::UnaryGrad { op, x, dy })
    })
}

/// A shape and a second shape broadcast-compatible with it (dims dropped or set to 1).
pub fn arb_bcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    arb_shape()
        .prop_flat_map(|a| {
            let r = a.len();
            (Just(a), 0..=r, proptest::collection::vec(any::<bool>(), r), any::<bool>())
        })
        .prop_map(|(a, drop, ones, swap)| {
            let mut b: Vec<usize> = a[drop.min(a.len() - 1)..].to_vec();
            let off = a.len() - b.len();
            for (i, d) in b.iter_mut().enumerate() {
                if ones[i + off] {
                    *d = 1;
                }
            }
            if swap {
                (b, a)
            } else {
                (a, b)
            }
        })
}

const BINARY_OPS: [Binary; 9] =
    [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min, Binary::Gt, Binary::Ge, Binary::Eq];

fn arb_binary() -> impl Strategy<Value = OpCase> {
    (proptest::sample::select(BINARY_OPS.to_vec()), arb_bcast_pair()).prop_flat_map(|(op, (sa, sb))| {
        let (lo, hi) = if op == Binary::Div { (0.5, 2.0) } else { (-2.0, 2.0) };
        (arb_h(sa, -2.0, 2.0), arb_h(sb, lo, hi)).prop_map(move |(a, b)| OpCase::Binary { op, a, b })
    })
}

fn arb_pow() -> impl Strategy<Value = OpCase> {
    arb_bcast_pair().prop_flat_map(|(sa, sb)| {
        (arb_h(sa, 0.3, 2.0), arb_h(sb, -1.5, 1.5)).prop_map(|(a, b)| OpCase::Binary { op: Binary::Pow, a, b })
    })
}

fn arb_reduce() -> impl Strategy<Value = OpCase> {
    (proptest::sample::select(vec![Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min]), arb_shape()).prop_flat_map(
        |(op, s)| {
            let r = s.len();
            (arb_h(s, -2.0, 2.0), 0..r).prop_map(move |(x, axis)| OpCase::Reduce { op, x, axis })
        },
    )
}

fn arb_matmul() -> impl Strategy<Value = OpCase> {
    (1usize..=9, 1usize..=9, 1usize..=9, 0usize..=3, 0usize..3, any::<bool>(), any::<bool>()).prop_flat_map(
        |(m, k, n, batch, bmode, ta, tb)| {
            let sa2 = if ta { vec![k, m] } else { vec![m, k] };
            let sb2 = if tb { vec![n, k] } else { vec![k, n] };
            let with = |s: &Vec<usize>, on: bool| {
                if on && batch > 0 {
                    let mut v = vec![batch];
                    v.extend(s);
                    v
                } else {
                    s.clone()
                }
            };
            // bmode: 0 both batched, 1 only a, 2 only b
            let sa = with(&sa2, bmode != 2);
            let sb = with(&sb2, bmode != 1);
            (arb_h(sa, -1.5, 1.5), arb_h(sb, -1.5, 1.5)).prop_map(move |(a, b)| OpCase::Matmul { a, b, ta, tb })
        },
    )
}

fn arb_layout() -> impl Strategy<Value = OpCase> {
    let permute = arb_shape().prop_flat_map(|s| {
        let r = s.len();
        (arb_h(s, -1.0, 1.0), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
            .prop_map(|(x, axes)| OpCase::Permute { x, axes })
    });
    let narrow = arb_shape().prop_flat_map(|s| {
        let r = s.len();
        (Just(s.clone()), 0..r).prop_flat_map(|(s, axis)| {
            let d = s[axis];
            (arb_h(s, -1.0, 1.0), Just(axis), 0..d).prop_flat_map(move |(x, axis, start)| {
                (Just(x), Just(axis), Just(start), 1..=d - start).prop_map(|(x, axis, start, len)| OpCase::Narrow {
                    x,
                    axis,
                    start,
                    len,
                })
            })
        })
    });
    let concat = (arb_shape(), 1usize..=3).prop_flat_map(|(s, parts)| {
        let r = s.len();
        (Just(s), 0..r, proptest::collection::vec(1usize..=4, parts)).prop_flat_map(|(s, axis, sizes)| {
            let hs: Vec<_> = sizes
                .iter()
                .map(|&d| {
                    let mut sh = s.clone();
                    sh[axis] = d;
                    arb_h(sh, -1.0, 1.0)
                })
                .collect();
            (hs, Just(axis)).prop_map(|(xs, axis)| OpCase::Concat { xs, axis })
        })
    });
    let expand = arb_bcast_pair().prop_flat_map(|(a, b)| {
        let to = protocell_core::shape::broadcast_shapes("t", &a, &b).unwrap();
        arb_h(b, -1.0, 1.0).prop_map(move |x| OpCase::Expand { x, to: to.clone() })
    });
    let pad = arb_shape().prop_flat_map(|s| {
        let r = s.len();
        (arb_h(s, -1.0, 1.0), 0..r, 0usize..3, 0usize..3).prop_map(|(x, axis, before, after)| OpCase::Pad {
            x,
            axis,
            before,
            after,
        })
    });
    prop_oneof![permute, narrow, concat, expand, pad]
}

fn arb_index() -> impl Strategy<Value = OpCase> {
    let gather =
        (1usize..=7, 1usize..=6, proptest::collection::vec(1usize..=4, 1..=2)).prop_flat_map(|(rows, d, ids_shape)| {
            let n: usize = ids_shape.iter().product();
            (arb_h(vec![rows, d], -1.0, 1.0), proptest::collection::vec(0..rows as u32, n), Just(ids_shape))
                .prop_map(|(table, ids, ids_shape)| OpCase::Gather { table, ids, ids_shape })
        });
    let scatter = (1usize..=7, 1usize..=6, 1usize..=12).prop_flat_map(|(rows, d, n)| {
        (arb_h(vec![n, d], -1.0, 1.0), proptest::collection::vec(0..rows as u32, n), Just(rows))
            .prop_map(|(src, ids, rows)| OpCase::Scatter { src, ids, rows })
    });
    prop_oneof![gather, scatter]
}

fn arb_nn() -> impl Strategy<Value = OpCase> {
    let softmax = arb_shape().prop_flat_map(|s| arb_h(s, -4.0, 4.0).prop_map(|x| OpCase::Softmax { x }));
    let softmax_grad = arb_shape().prop_flat_map(|s| {
        (arb_h(s.clone(), -3.0, 3.0), arb_h(s, -1.0, 1.0)).prop_map(|(x, dy)| OpCase::SoftmaxGrad { x, dy })
    });
    let norm = (arb_shape(), any::<bool>()).prop_flat_map(|(s, ln)| {
        let d = *s.last().unwrap();
        (arb_h(s, -2.0, 2.0), arb_h(vec![d], 0.5, 1.5), arb_h(vec![d], -0.5, 0.5))
            .prop_map(move |(x, g, b)| OpCase::Norm { x, g, b: ln.then_some(b), eps: 1e-5 })
    });
    let norm_bwd = (arb_shape(), any::<bool>()).prop_flat_map(|(s, ln)| {
        let d = *s.last().unwrap();
        (arb_h(s.clone(), -2.0, 2.0), arb_h(vec![d], 0.5, 1.5), arb_h(vec![d], -0.5, 0.5), arb_h(s, -1.0, 1.0))
            .prop_map(move |(x, g, b, dy)| OpCase::NormBwd { x, g, b: ln.then_some(b), eps: 1e-5, dy })
    });
    let attn = (0usize..=2, 1usize..=2, 1usize..=9, 0usize..=3, 1usize..=6, 1usize..=5, any::<bool>(), any::<bool>())
        .prop_flat_map(|(b, h, sq, extra, d, dv, causal, bwd)| {
            let sk = sq + extra;
            let lead: Vec<usize> = if b == 0 { vec![h] } else { vec![b, h] };
            let sh = |a: usize, c: usize| {
                let mut v = lead.clone();
                v.extend([a, c]);
                v
            };
            (
                arb_h(sh(sq, d), -1.5, 1.5),
                arb_h(sh(sk, d), -1.5, 1.5),
                arb_h(sh(sk, dv), -1.5, 1.5),
                arb_h(sh(sq, dv), -1.0, 1.0),
            )
                .prop_map(move |(q, k, v, dout)| {
                    let scale = 1.0 / (d as f32).sqrt();
                    if bwd {
                        OpCase::AttentionBwd { q, k, v, dout, causal, scale }
                    } else {
                        OpCase::Attention { q, k, v, causal, scale }
                    }
                })
        });
    let ce = (1usize..=8, 1usize..=11, any::<bool>(), -2.0f32..2.0).prop_flat_map(|(n, v, bwd, g)| {
        (arb_h(vec![n, v], -3.0, 3.0), proptest::collection::vec(0..v as u32, n)).prop_map(move |(logits, targets)| {
            if bwd {
                OpCase::CrossEntropyBwd { logits, targets, g }
            } else {
                OpCase::CrossEntropy { logits, targets }
            }
        })
    });
    let adamw = (arb_shape(), 1u64..50, 0.0f64..0.2).prop_flat_map(|(s, t, wd)| {
        (arb_h(s.clone(), -1.0, 1.0), arb_h(s.clone(), -1.0, 1.0), arb_h(s.clone(), -0.1, 0.1), arb_h(s, 0.0, 0.01))
            .prop_map(move |(p, g, m, v)| OpCase::AdamW {
                p,
                g,
                m,
                v,
                h: AdamWStepCase { lr: 1e-3, wd, t, grad_scale: if t % 2 == 0 { 1.0 } else { 0.37 } },
            })
    });
    let linear = (proptest::collection::vec(1usize..=4, 0..=2), 1usize..=9, 1usize..=9, any::<bool>()).prop_flat_map(
        |(lead, din, dout, bias)| {
            let mut xs = lead;
            xs.push(din);
            (arb_h(xs, -1.5, 1.5), arb_h(vec![dout, din], -1.0, 1.0), arb_h(vec![dout], -0.5, 0.5))
                .prop_map(move |(x, w, b)| OpCase::Linear { x, w, b: bias.then_some(b) })
        },
    );
    let self_attn =
        (1usize..=3, 1usize..=9, 1usize..=3, 1usize..=5, any::<bool>(), any::<bool>(), prop::option::of(any::<u64>()))
            .prop_flat_map(|(b, s, h, dh, causal, bwd, drop_seed)| {
                (arb_h(vec![b, s, 3, h, dh], -1.5, 1.5), arb_h(vec![b, s, h, dh], -1.0, 1.0)).prop_map(
                    move |(qkv, dout)| {
                        let dropout = drop_seed.map(|seed| AttnDropout { p: 0.3, key: RngKey { seed, offset: 7 } });
                        let spec = AttnSpec { causal, scale: 1.0 / (dh as f32).sqrt(), dropout };
                        if bwd {
                            OpCase::SelfAttentionBwd { qkv, dout, spec }
                        } else {
                            OpCase::SelfAttention { qkv, spec }
                        }
                    },
                )
            });
    let ssq = arb_shape().prop_flat_map(|s| arb_h(s, -2.0, 2.0).prop_map(|x| OpCase::SumSquares { x }));
    prop_oneof![softmax, softmax_grad, norm, norm_bwd, attn, ce, adamw, linear, self_attn, ssq]
}

fn arb_random() -> impl Strategy<Value = OpCase> {
    let dist = prop_oneof![
        Just(Dist::Uniform { lo: -1.0, hi: 2.0 }),
        Just(Dist::Normal { mean: 0.5, std: 2.0 }),
        Just(Dist::Bernoulli { p: 0.3 }),
    ];
    (dist, any::<u64>(), any::<u64>(), arb_shape()).prop_map(|(dist, seed, offset, shape)| OpCase::Random {
        dist,
        seed,
        offset,
        shape,
    })
}

/// Colony inputs: interior states, non-negative zero-diagonal mucus, small stimuli and
/// coefficients around the seed's values; every mode, with and without pruning.
pub fn arb_colony() -> impl Strategy<Value = OpCase> {
    (1usize..=5, 1usize..=5, 1usize..=4, 0usize..3, any::<bool>(), any::<bool>()).prop_flat_map(
        |(t, n, steps, mode, prune, bwd)| {
            let mode = [CellMode::AsCoded, CellMode::AsDescribed, CellMode::Sound][mode];
            (
                arb_h(vec![t, n, 4], 0.1, 0.9),
                arb_h(vec![t, n, n], 0.02, 0.3),
                arb_h(vec![t, n], 0.0, 0.3),
                arb_h(vec![9], 0.5, 1.5),
                arb_h(vec![t, n, 4], -1.0, 1.0),
                arb_h(vec![t, n, n], -1.0, 1.0),
            )
                .prop_map(move |(h0, mut w0, stim, mut coeffs, dh, dw)| {
                    for (i, v) in w0.data.iter_mut().enumerate() {
                        if (i % (n * n)) / n == i % n {
                            *v = 0.0;
                        }
                    }
                    for (v, &s) in coeffs.data.iter_mut().zip(cell::SEED_COEFFS.iter()) {
                        *v *= s;
                    }
                    let mut spec = ColonySpec::new(mode, steps);
                    if mode == CellMode::Sound {
                        spec.dt = 0.8;
                    }
                    if prune {
                        spec.pruning = Some(Pruning { rate: 0.35, threshold: 0.4 });
                    }
                    if bwd {
                        OpCase::ColonyBwd { h0, w0, stim, coeffs, spec, dh, dw }
                    } else {
                        OpCase::Colony { h0, w0, stim, coeffs, spec }
                    }
                })
        },
    )
}

/// Every kind of case.
pub fn arb_case() -> impl Strategy<Value = OpCase> {
    prop_oneof![
        3 => arb_unary(),
        2 => arb_unary_grad(),
        3 => arb_binary(),
        1 => arb_pow(),
        2 => arb_reduce(),
        3 => arb_matmul(),
        3 => arb_layout(),
        2 => arb_index(),
        5 => arb_nn(),
        2 => arb_colony(),
        1 => arb_random(),
    ]
}

/// Cases past the parallel chunk size (32 768 elements) and the attention block size (64),
/// so that the threaded and blocked paths of a backend are exercised too.
pub fn large_cases() -> Vec<OpCase> {
    use crate::det_values as dv;
    let h = |shape: &[usize], seed: u64, lo: f32, hi: f32| H::new(shape, dv(shape.iter().product(), seed, lo, hi));
    let mut v = vec![
        OpCase::Unary { op: Unary::Gelu, x: h(&[70_001], 1, -4.0, 4.0) },
        OpCase::Unary { op: Unary::Exp, x: h(&[300, 257], 2, -4.0, 4.0) },
        OpCase::UnaryGrad { op: Unary::Gelu, x: h(&[66_000], 3, -4.0, 4.0), dy: h(&[66_000], 4, -1.0, 1.0) },
        OpCase::Binary { op: Binary::Add, a: h(&[300, 257], 5, -1.0, 1.0), b: h(&[257], 6, -1.0, 1.0) },
        OpCase::Binary { op: Binary::Mul, a: h(&[40, 30, 50], 7, -1.0, 1.0), b: h(&[40, 1, 50], 8, -1.0, 1.0) },
        OpCase::Binary { op: Binary::Sub, a: h(&[513, 130], 9, -1.0, 1.0), b: h(&[513, 1], 10, -1.0, 1.0) },
        OpCase::Reduce { op: Reduce::Sum, x: h(&[70_000], 11, -1.0, 1.0), axis: 0 },
        OpCase::Reduce { op: Reduce::Mean, x: h(&[700, 130], 12, -1.0, 1.0), axis: 0 },
        OpCase::Reduce { op: Reduce::Max, x: h(&[700, 130], 13, -1.0, 1.0), axis: 1 },
        OpCase::Matmul { a: h(&[300, 200], 14, -1.0, 1.0), b: h(&[200, 150], 15, -1.0, 1.0), ta: false, tb: false },
        OpCase::Matmul { a: h(&[3, 130, 70], 16, -1.0, 1.0), b: h(&[3, 90, 70], 17, -1.0, 1.0), ta: false, tb: true },
        OpCase::Permute { x: h(&[4, 130, 3, 4, 16], 18, -1.0, 1.0), axes: vec![2, 0, 3, 1, 4] },
        OpCase::Narrow { x: h(&[3, 200, 130], 19, -1.0, 1.0), axis: 1, start: 17, len: 150 },
        OpCase::Gather {
            table: h(&[300, 130], 20, -1.0, 1.0),
            ids: (0..600u32).map(|i| (i * 7) % 300).collect(),
            ids_shape: vec![600],
        },
        OpCase::Softmax { x: h(&[400, 257], 21, -5.0, 5.0) },
        OpCase::Norm {
            x: h(&[600, 130], 22, -2.0, 2.0),
            g: h(&[130], 23, 0.5, 1.5),
            b: Some(h(&[130], 24, -0.5, 0.5)),
            eps: 1e-5,
        },
        OpCase::NormBwd {
            x: h(&[600, 130], 25, -2.0, 2.0),
            g: h(&[130], 26, 0.5, 1.5),
            b: Some(h(&[130], 27, -0.5, 0.5)),
            eps: 1e-5,
            dy: h(&[600, 130], 28, -1.0, 1.0),
        },
        OpCase::CrossEntropy {
            logits: h(&[300, 257], 29, -3.0, 3.0),
            targets: (0..300u32).map(|i| (i * 13) % 257).collect(),
        },
        OpCase::CrossEntropyBwd {
            logits: h(&[300, 257], 30, -3.0, 3.0),
            targets: (0..300u32).map(|i| (i * 11) % 257).collect(),
            g: 1.0,
        },
        OpCase::AdamW {
            p: h(&[70_000], 31, -1.0, 1.0),
            g: h(&[70_000], 32, -1.0, 1.0),
            m: h(&[70_000], 33, -0.1, 0.1),
            v: h(&[70_000], 34, 0.0, 0.01),
            h: AdamWStepCase { lr: 3e-4, wd: 0.1, t: 7, grad_scale: 0.5 },
        },
        OpCase::Random { dist: Dist::Normal { mean: 0.0, std: 1.0 }, seed: 9, offset: 3, shape: vec![70_001] },
    ];
    v.push(OpCase::Linear {
        x: h(&[4, 300, 130], 50, -1.0, 1.0),
        w: h(&[200, 130], 51, -1.0, 1.0),
        b: Some(h(&[200], 52, -1.0, 1.0)),
    });
    v.push(OpCase::SumSquares { x: h(&[100_003], 53, -1.0, 1.0) });
    {
        // 300 tokens of 6 blocks, 5 steps: several parallel tasks of the fused kernel
        let (t, n) = (300, 6);
        let mut w0 = h(&[t, n, n], 60, 0.02, 0.3);
        for (i, v) in w0.data.iter_mut().enumerate() {
            if (i % (n * n)) / n == i % n {
                *v = 0.0;
            }
        }
        let coeffs = H::new(&[9], cell::SEED_COEFFS.to_vec());
        for mode in [CellMode::AsDescribed, CellMode::Sound] {
            let spec = ColonySpec::new(mode, 5);
            v.push(OpCase::ColonyBwd {
                h0: h(&[t, n, 4], 61, 0.1, 0.9),
                w0: w0.clone(),
                stim: h(&[t, n], 62, 0.0, 0.3),
                coeffs: coeffs.clone(),
                spec,
                dh: h(&[t, n, 4], 63, -1.0, 1.0),
                dw: h(&[t, n, n], 64, -1.0, 1.0),
            });
        }
    }
    for causal in [false, true] {
        let dropout = causal.then_some(AttnDropout { p: 0.1, key: RngKey { seed: 3, offset: 1 } });
        let spec = AttnSpec { causal, scale: 0.25, dropout };
        v.push(OpCase::SelfAttention { qkv: h(&[2, 150, 3, 3, 16], 54, -1.0, 1.0), spec });
        v.push(OpCase::SelfAttentionBwd {
            qkv: h(&[2, 150, 3, 3, 16], 55, -1.0, 1.0),
            dout: h(&[2, 150, 3, 16], 56, -1.0, 1.0),
            spec,
        });
        v.push(OpCase::Attention {
            q: h(&[2, 2, 150, 16], 40, -1.0, 1.0),
            k: h(&[2, 2, 150, 16], 41, -1.0, 1.0),
            v: h(&[2, 2, 150, 16], 42, -1.0, 1.0),
            causal,
            scale: 0.25,
        });
        v.push(OpCase::AttentionBwd {
            q: h(&[2, 2, 150, 16], 43, -1.0, 1.0),
            k: h(&[2, 2, 150, 16], 44, -1.0, 1.0),
            v: h(&[2, 2, 150, 16], 45, -1.0, 1.0),
            dout: h(&[2, 2, 150, 16], 46, -1.0, 1.0),
            causal,
            scale: 0.25,
        });
    }
    v
}

/// Runs `check` on `cases` proptest-generated cases plus [`large_cases`]; returns the first failure
/// (minimised by proptest).
pub fn run_property(
    cases: u32,
    check: impl Fn(&OpCase) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    for c in large_cases() {
        check(&c).map_err(|e| format!("large case {}: {e}", short(&c)))?;
    }
    let mut runner = crate::runner(cases);
    runner
        .run(&arb_case(), |c| check(&c).map_err(|e| TestCaseError::fail(format!("{}: {e}", short(&c)))))
        .map_err(|e| e.to_string())
}

fn short(c: &OpCase) -> String {
    let s = format!("{c:?}");
    s.chars().take(160).collect()
}
