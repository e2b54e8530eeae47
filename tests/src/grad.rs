//! Finite-difference gradient checks of every differentiable op through `Autodiff<B>`.
//!
//! For an op `f` and fixed random weights `w`, the scalar `L = Σ wᵢ f(x)ᵢ` is
//! differentiated by the autodiff backend and by central differences
//! `(L(x + h) − L(x − h)) / 2h` with `h = 10⁻²`, the sum taken in f64 on the host.
//!
//! Tolerance argument (f32 ops): each output carries a rounding error of about
//! `6·10⁻⁸·|fᵢ|`, so `L` is off by at most `6·10⁻⁸·Σ|fᵢ|` (≤ 6·10⁻⁵ for the ≤ 200 outputs of
//! magnitude ≤ 5 generated here); divided by `2h` that is ≤ 3·10⁻³. The truncation error of
//! the central difference is `h²/6·|L'''| ≈ 2·10⁻⁵·|L'''|`. Hence `|num − ana| ≤ 5·10⁻³ +
//! 10⁻²·max(|num|, |ana|)`. Inputs are generated away from kinks (relu, abs, clamp, max/min,
//! ties of reductions) by more than `h`, so no difference straddles one.
use crate::reference::H;
use crate::suite::arb_h;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use protocell_core::backend::{Binary, Reduce, Unary};
use protocell_core::error::Result;
use protocell_core::{AllOps, Autodiff, Ids, Tensor};

/// A differentiable op under test.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum GradOp {
    Unary(Unary),
    Binary(Binary),
    Reduce(Reduce, usize),
    Matmul(bool, bool),
    Reshape(Vec<usize>),
    Permute(Vec<usize>),
    Narrow(usize, usize, usize),
    Concat(usize),
    Expand(Vec<usize>),
    Pad(usize, usize, usize),
    Gather(Vec<u32>, Vec<usize>),
    Scatter(Vec<u32>, usize),
    Softmax,
    LayerNorm,
    RmsNorm,
    Attention(bool, f32),
    CrossEntropy(Vec<u32>),
    Linear(bool),
    SelfAttention(protocell_core::backend::AttnSpec),
    /// The colony's final states and mucus, packed into one output (sound mode: smooth).
    Colony(protocell_core::cell::ColonySpec),
}

/// One gradient check: an op and its inputs.
#[derive(Debug, Clone)]
pub struct GradCase {
    /// The op.
    pub op: GradOp,
    /// Its inputs.
    pub inputs: Vec<H>,
}

/// Applies `op` with the shape-checked tensor API.
pub fn apply<B: AllOps>(op: &GradOp, x: &[Tensor<B>]) -> Result<Tensor<B>> {
    let dev = x[0].device();
    match op {
        GradOp::Unary(u) => x[0].unary(*u),
        GradOp::Binary(b) => x[0].binary(*b, &x[1]),
        GradOp::Reduce(r, axis) => x[0].reduce(*r, *axis),
        GradOp::Matmul(ta, tb) => x[0].matmul_t(&x[1], *ta, *tb),
        GradOp::Reshape(s) => x[0].reshape(s),
        GradOp::Permute(a) => x[0].permute(a),
        GradOp::Narrow(a, s, l) => x[0].narrow(*a, *s, *l),
        GradOp::Concat(a) => Tensor::cat(x, *a),
        GradOp::Expand(s) => x[0].expand(s),
        GradOp::Pad(a, b, c) => x[0].pad(*a, *b, *c),
        GradOp::Gather(ids, shape) => x[0].gather_rows(&Ids::from_u32(ids, shape, &dev)?),
        GradOp::Scatter(ids, rows) => x[0].scatter_add_rows(&Ids::from_u32(ids, &[ids.len()], &dev)?, *rows),
        GradOp::Softmax => x[0].softmax(),
        GradOp::LayerNorm => x[0].layer_norm(&x[1], &x[2], 1e-5),
        GradOp::RmsNorm => x[0].rms_norm(&x[1], 1e-5),
        GradOp::Attention(c, s) => Tensor::attention(&x[0], &x[1], &x[2], *c, *s),
        GradOp::CrossEntropy(t) => x[0].cross_entropy(&Ids::from_u32(t, &[t.len()], &dev)?),
        GradOp::Linear(bias) => x[0].linear(&x[1], if *bias { Some(&x[2]) } else { None }),
        GradOp::SelfAttention(spec) => Tensor::self_attention(&x[0], spec),
        GradOp::Colony(spec) => {
            let (h, w, _) = protocell_core::cell::colony(&x[0], &x[1], &x[2], &x[3], spec)?;
            let (t, n) = (h.shape()[0], h.shape()[1]);
            Tensor::cat(&[h.reshape(&[t, 4 * n])?, w.reshape(&[t, n * n])?], 1)
        }
    }
}

fn weighted_sum(out: &[f32], w: &[f32]) -> f64 {
    out.iter().zip(w).map(|(&o, &w)| o as f64 * w as f64).sum()
}

/// Autodiff gradients of `L = Σ w·op(x)` against central differences, on backend `B`.
pub fn check<B: AllOps>(case: &GradCase, dev: &B::Device) -> std::result::Result<(), String> {
    let h = 1e-2f32;
    let e = |e: protocell_core::Error| e.to_string();
    let params: Vec<Tensor<Autodiff<B>>> = case
        .inputs
        .iter()
        .map(|x| Tensor::<Autodiff<B>>::from_f32(&x.data, &x.shape, dev).map(|t| t.require_grad()))
        .collect::<Result<_>>()
        .map_err(e)?;
    let out = apply(&case.op, &params).map_err(e)?;
    let w = crate::det_values(out.numel(), 77, -1.0, 1.0);
    let wt = Tensor::<Autodiff<B>>::from_f32(&w, out.shape(), dev).map_err(e)?;
    let loss = out.mul(&wt).and_then(|t| t.sum_all()).map_err(e)?;
    let grads = loss.backward().map_err(e)?;
    let eval = |inputs: &[H]| -> std::result::Result<f64, String> {
        let xs: Vec<Tensor<B>> =
            inputs.iter().map(|x| Tensor::<B>::from_f32(&x.data, &x.shape, dev)).collect::<Result<_>>().map_err(e)?;
        Ok(weighted_sum(&apply(&case.op, &xs).and_then(|t| t.to_vec()).map_err(e)?, &w))
    };
    for (i, p) in params.iter().enumerate() {
        let ana = match grads.get(p) {
            Some(g) => g.to_vec().map_err(e)?,
            None => vec![0.0; p.numel()],
        };
        if ana.len() != case.inputs[i].data.len() {
            return Err(format!("input {i}: gradient has {} elements, input {}", ana.len(), case.inputs[i].data.len()));
        }
        // at most 24 probed elements per input, spread over the tensor
        let n = ana.len();
        let probes: Vec<usize> = if n <= 24 { (0..n).collect() } else { (0..24).map(|k| k * n / 24).collect() };
        for j in probes {
            let mut plus = case.inputs.clone();
            plus[i].data[j] += h;
            let mut minus = case.inputs.clone();
            minus[i].data[j] -= h;
            let num = (eval(&plus)? - eval(&minus)?) / (2.0 * h as f64);
            let a = ana[j] as f64;
            if (num - a).abs() > 5e-3 + 1e-2 * num.abs().max(a.abs()) {
                return Err(format!("input {i} element {j}: autodiff {a}, finite difference {num}"));
            }
        }
    }
    Ok(())
}

/// Values in `[lo, hi)` kept at least `gap` away from each point of `kinks`.
fn away(lo: f32, hi: f32, kinks: &'static [f32], gap: f32, shape: Vec<usize>) -> impl Strategy<Value = H> {
    arb_h(shape, lo, hi).prop_map(move |mut x| {
        for v in &mut x.data {
            for &k in kinks {
                if (*v - k).abs() < gap {
                    *v = k + if *v >= k { gap } else { -gap };
                }
            }
        }
        x
    })
}

/// Distinct values (pairwise gaps ≥ 0.1), shuffled: no near-ties for max/min reductions.
fn distinct(shape: Vec<usize>) -> impl Strategy<Value = H> {
    let n: usize = shape.iter().product();
    Just((0..n).map(|i| i as f32 * 0.1 - 0.05 * n as f32).collect::<Vec<_>>())
        .prop_shuffle()
        .prop_map(move |d| H::new(&shape, d))
}

fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..=4, 1..=3)
}

/// Generator of gradient cases covering every differentiable op.
pub fn arb_grad_case() -> impl Strategy<Value = GradCase> {
    use Unary::*;
    let smooth = proptest::sample::select(vec![Neg, Exp, Square, Tanh, Sigmoid, Erf, Gelu, Silu, Softplus, Sin, Cos]);
    let unary_smooth = (smooth, small_shape()).prop_flat_map(|(u, s)| {
        arb_h(s, -2.0, 2.0).prop_map(move |x| GradCase { op: GradOp::Unary(u), inputs: vec![x] })
    });
    let unary_pos = (proptest::sample::select(vec![Log, Sqrt, Rsqrt, Recip, Powf(1.7), Powf(-0.5)]), small_shape())
        .prop_flat_map(|(u, s)| {
            arb_h(s, 0.5, 2.5).prop_map(move |x| GradCase { op: GradOp::Unary(u), inputs: vec![x] })
        });
    let unary_kinked = (proptest::sample::select(vec![0usize, 1, 2]), small_shape()).prop_flat_map(|(k, s)| {
        let (op, kinks): (Unary, &'static [f32]) = match k {
            0 => (Relu, &[0.0]),
            1 => (Abs, &[0.0]),
            _ => (Clamp { min: -0.5, max: 0.7 }, &[-0.5, 0.7]),
        };
        away(-2.0, 2.0, kinks, 0.05, s).prop_map(move |x| GradCase { op: GradOp::Unary(op), inputs: vec![x] })
    });
    let affine = small_shape().prop_flat_map(|s| {
        arb_h(s, -2.0, 2.0)
            .prop_map(|x| GradCase { op: GradOp::Unary(Affine { mul: -1.3, add: 0.4 }), inputs: vec![x] })
    });
    let binary = (
        proptest::sample::select(vec![Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Pow]),
        crate::suite::arb_bcast_pair(),
    )
        .prop_flat_map(|(op, (sa, sb))| {
            let (alo, ahi) = if op == Binary::Pow { (0.5, 2.0) } else { (-2.0, 2.0) };
            let (blo, bhi) = if op == Binary::Div { (0.5, 2.0) } else { (-1.5, 1.5) };
            (arb_h(sa, alo, ahi), arb_h(sb, blo, bhi))
                .prop_map(move |(a, b)| GradCase { op: GradOp::Binary(op), inputs: vec![a, b] })
        });
    let maxmin = (proptest::sample::select(vec![Binary::Max, Binary::Min]), small_shape()).prop_flat_map(|(op, s)| {
        (
            arb_h(s.clone(), -2.0, 2.0),
            proptest::collection::vec(prop_oneof![-1.0f32..-0.1, 0.1f32..1.0], s.iter().product::<usize>()),
        )
            .prop_map(move |(a, d)| {
                let b = H::new(&a.shape, a.data.iter().zip(&d).map(|(x, y)| x + y).collect());
                GradCase { op: GradOp::Binary(op), inputs: vec![a, b] }
            })
    });
    let reduce = (proptest::sample::select(vec![Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min]), small_shape())
        .prop_flat_map(|(r, s)| {
            let rank = s.len();
            (distinct(s), 0..rank).prop_map(move |(x, a)| GradCase { op: GradOp::Reduce(r, a), inputs: vec![x] })
        });
    let matmul = (1usize..=4, 1usize..=4, 1usize..=4, 0usize..=2, 0usize..3, any::<bool>(), any::<bool>())
        .prop_flat_map(|(m, k, n, batch, mode, ta, tb)| {
            let a2 = if ta { vec![k, m] } else { vec![m, k] };
            let b2 = if tb { vec![n, k] } else { vec![k, n] };
            let wrap = |v: Vec<usize>, on: bool| {
                if on && batch > 0 {
                    [vec![batch], v].concat()
                } else {
                    v
                }
            };
            (arb_h(wrap(a2, mode != 2), -1.5, 1.5), arb_h(wrap(b2, mode != 1), -1.5, 1.5))
                .prop_map(move |(a, b)| GradCase { op: GradOp::Matmul(ta, tb), inputs: vec![a, b] })
        });
    let layout = small_shape().prop_flat_map(|s| {
        let r = s.len();
        let n: usize = s.iter().product();
        (arb_h(s.clone(), -1.0, 1.0), Just((0..r).collect::<Vec<_>>()).prop_shuffle(), 0..r, 0usize..3, any::<u8>())
            .prop_map(move |(x, axes, axis, pad, pick)| {
                let d = x.shape[axis];
                let op = match pick % 5 {
                    0 => GradOp::Permute(axes),
                    1 => GradOp::Reshape(vec![n]),
                    2 => GradOp::Narrow(axis, d / 2, d - d / 2),
                    3 => GradOp::Pad(axis, pad, 1),
                    _ => {
                        let mut to = vec![2];
                        to.extend(&x.shape);
                        GradOp::Expand(to)
                    }
                };
                GradCase { op, inputs: vec![x] }
            })
    });
    let concat = (small_shape(), 1usize..=2).prop_flat_map(|(s, extra)| {
        let r = s.len();
        (0..r).prop_flat_map(move |axis| {
            let mut s2 = s.clone();
            s2[axis] = extra;
            (arb_h(s.clone(), -1.0, 1.0), arb_h(s2, -1.0, 1.0))
                .prop_map(move |(a, b)| GradCase { op: GradOp::Concat(axis), inputs: vec![a, b] })
        })
    });
    let index = (1usize..=5, 1usize..=4, 1usize..=6, any::<bool>()).prop_flat_map(|(rows, d, n, gather)| {
        let src_shape = if gather { vec![rows, d] } else { vec![n, d] };
        (arb_h(src_shape, -1.0, 1.0), proptest::collection::vec(0..rows as u32, n)).prop_map(move |(x, ids)| GradCase {
            op: if gather { GradOp::Gather(ids, vec![n]) } else { GradOp::Scatter(ids, rows) },
            inputs: vec![x],
        })
    });
    let nn = (small_shape(), 0usize..3).prop_flat_map(|(s, which)| {
        let d = *s.last().unwrap();
        (arb_h(s, -0.5, 0.5), arb_h(vec![d], 0.5, 1.5), arb_h(vec![d], -0.5, 0.5)).prop_map(move |(mut x, g, b)| {
            if which == 0 {
                x.data.iter_mut().for_each(|v| *v *= 4.0);
                return GradCase { op: GradOp::Softmax, inputs: vec![x] };
            }
            // normalisation is smooth only on the scale of the row's spread: keep every row
            // spread well above the difference step (values in ±0.5 plus alternating ±0.7
            // offsets, so neighbours differ by at least 0.4)
            x.data.iter_mut().enumerate().for_each(|(i, v)| *v += if i % 2 == 0 { 0.7 } else { -0.7 });
            if which == 1 {
                GradCase { op: GradOp::LayerNorm, inputs: vec![x, g, b] }
            } else {
                GradCase { op: GradOp::RmsNorm, inputs: vec![x, g] }
            }
        })
    });
    // LayerNorm over a single element is constant (x − μ = 0): keep d ≥ 2 so it is a real test
    let nn = nn.prop_filter("norm width >= 2", |c| {
        !matches!(c.op, GradOp::LayerNorm | GradOp::RmsNorm) || *c.inputs[0].shape.last().unwrap() >= 2
    });
    let attn =
        (1usize..=2, 1usize..=5, 0usize..=2, 1usize..=4, any::<bool>()).prop_flat_map(|(h, sq, extra, d, causal)| {
            let sk = sq + extra;
            (arb_h(vec![h, sq, d], -1.0, 1.0), arb_h(vec![h, sk, d], -1.0, 1.0), arb_h(vec![h, sk, d], -1.0, 1.0))
                .prop_map(move |(q, k, v)| GradCase { op: GradOp::Attention(causal, 0.7), inputs: vec![q, k, v] })
        });
    let ce = (1usize..=5, 2usize..=7).prop_flat_map(|(n, v)| {
        (arb_h(vec![n, v], -2.0, 2.0), proptest::collection::vec(0..v as u32, n))
            .prop_map(|(x, t)| GradCase { op: GradOp::CrossEntropy(t), inputs: vec![x] })
    });
    let linear = (proptest::collection::vec(1usize..=3, 0..=2), 1usize..=4, 1usize..=4, any::<bool>()).prop_flat_map(
        |(lead, din, dout, bias)| {
            let mut xs = lead;
            xs.push(din);
            (arb_h(xs, -1.5, 1.5), arb_h(vec![dout, din], -1.0, 1.0), arb_h(vec![dout], -0.5, 0.5)).prop_map(
                move |(x, w, b)| {
                    let inputs = if bias { vec![x, w, b] } else { vec![x, w] };
                    GradCase { op: GradOp::Linear(bias), inputs }
                },
            )
        },
    );
    let self_attn = (1usize..=2, 1usize..=5, 1usize..=2, 1usize..=3, any::<bool>(), prop::option::of(any::<u64>()))
        .prop_flat_map(|(b, s, h, dh, causal, drop_seed)| {
            arb_h(vec![b, s, 3, h, dh], -1.0, 1.0).prop_map(move |qkv| {
                // a fixed dropout key gives a fixed mask, so the function stays differentiable
                let dropout = drop_seed.map(|seed| protocell_core::backend::AttnDropout {
                    p: 0.25,
                    key: protocell_core::RngKey { seed, offset: 0 },
                });
                let spec = protocell_core::backend::AttnSpec { causal, scale: 0.8, dropout };
                GradCase { op: GradOp::SelfAttention(spec), inputs: vec![qkv] }
            })
        });
    // n ≥ 2: a single block's mucus row is all zero, where W/(ΣW + ε) has slope 1/ε = 10³ —
    // correct (the f64 test in `cell::scalar` covers it), but far too curved for a step of 10⁻²
    let colony = (1usize..=3, 2usize..=4, 1usize..=3).prop_flat_map(|(t, n, steps)| {
        (
            arb_h(vec![t, n, 4], 0.2, 0.8),
            // row sums ≥ 0.2 keep the routing's curvature (∝ 1/row sum²) small at the step 10⁻²
            arb_h(vec![t, n, n], 0.2, 0.5),
            arb_h(vec![t, n], 0.0, 0.3),
            arb_h(vec![9], 0.5, 1.5),
        )
            .prop_map(move |(h0, mut w0, s, mut c)| {
                for (i, v) in w0.data.iter_mut().enumerate() {
                    if (i % (n * n)) / n == i % n {
                        *v = 0.0;
                    }
                }
                for (v, &k) in c.data.iter_mut().zip(protocell_core::cell::SEED_COEFFS.iter()) {
                    *v *= k;
                }
                let mut spec = protocell_core::cell::ColonySpec::new(protocell_core::cell::CellMode::Sound, steps);
                spec.dt = 0.8;
                GradCase { op: GradOp::Colony(spec), inputs: vec![h0, w0, s, c] }
            })
    });
    prop_oneof![
        2 => colony,
        2 => linear,
        2 => self_attn,
        3 => unary_smooth,
        2 => unary_pos,
        2 => unary_kinked,
        1 => affine,
        3 => binary,
        1 => maxmin,
        2 => reduce,
        3 => matmul,
        3 => layout,
        1 => concat,
        2 => index,
        3 => nn,
        3 => attn,
        2 => ce,
    ]
}

/// Runs [`check`] on `cases` generated cases.
pub fn run_property<B: AllOps>(dev: &B::Device, cases: u32) -> std::result::Result<(), String> {
    let mut runner = crate::runner(cases);
    runner
        .run(&arb_grad_case(), |c| check::<B>(&c, dev).map_err(|e| TestCaseError::fail(format!("{:?}: {e}", c.op))))
        .map_err(|e| e.to_string())
}
