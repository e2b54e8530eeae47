//! Naive host implementations (index arithmetic, f64 accumulation) that pin the CPU
//! reference backend. Deliberately simple: no blocking, no threads, no fast paths.
use protocell_core::backend::{Binary, Reduce, Unary};
use protocell_core::shape::{broadcast_shapes, numel, strides};

/// A host tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct H {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl H {
    /// New host tensor (panics on a length mismatch: test code).
    pub fn new(shape: &[usize], data: Vec<f32>) -> Self {
        assert_eq!(numel(shape), data.len());
        Self { shape: shape.to_vec(), data }
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        idx[a] = i % shape[a];
        i /= shape[a];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    let st = strides(shape);
    idx.iter().zip(&st).map(|(i, s)| i * s).sum()
}

/// Index into `x` for an output index under numpy broadcasting.
fn bcast_index(out_idx: &[usize], shape: &[usize]) -> usize {
    let off = out_idx.len() - shape.len();
    let idx: Vec<usize> = shape.iter().enumerate().map(|(a, &d)| if d == 1 { 0 } else { out_idx[a + off] }).collect();
    ravel(&idx, shape)
}

/// `f(x)` in f64 from std/libm, independent of `protocell_core::math`.
pub fn unary_f64(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => 1.0 / x.sqrt(),
        Unary::Recip => 1.0 / x,
        Unary::Abs => x.abs(),
        Unary::Square => x * x,
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Unary::Erf => libm::erf(x),
        Unary::Relu => x.max(0.0),
        Unary::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Unary::Silu => x / (1.0 + (-x).exp()),
        Unary::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Affine { mul, add } => mul as f64 * x + add as f64,
        Unary::Powf(p) => x.powf(p as f64),
        Unary::Clamp { min, max } => x.clamp(min as f64, max as f64),
    }
}

/// `f(x)` elementwise (computed in f64).
pub fn unary(op: Unary, x: &H) -> H {
    H::new(&x.shape, x.data.iter().map(|&v| unary_f64(op, v as f64) as f32).collect())
}

/// `op(a, b)` in f64.
pub fn binary_f64(op: Binary, a: f64, b: f64) -> f64 {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Max => a.max(b),
        Binary::Min => a.min(b),
        Binary::Pow => a.powf(b),
        Binary::Gt => (a > b) as u8 as f64,
        Binary::Ge => (a >= b) as u8 as f64,
        Binary::Eq => (a == b) as u8 as f64,
    }
}

/// `op(a, b)` with broadcasting.
pub fn binary(op: Binary, a: &H, b: &H) -> H {
    let out = broadcast_shapes("ref", &a.shape, &b.shape).unwrap();
    let data = (0..numel(&out))
        .map(|i| {
            let idx = unravel(i, &out);
            binary_f64(op, a.data[bcast_index(&idx, &a.shape)] as f64, b.data[bcast_index(&idx, &b.shape)] as f64)
                as f32
        })
        .collect();
    H::new(&out, data)
}

/// Reduction along `axis` (kept).
pub fn reduce(op: Reduce, x: &H, axis: usize) -> H {
    let mut out = x.shape.clone();
    out[axis] = 1;
    let data = (0..numel(&out))
        .map(|i| {
            let mut idx = unravel(i, &out);
            let vals: Vec<f64> = (0..x.shape[axis])
                .map(|k| {
                    idx[axis] = k;
                    x.data[ravel(&idx, &x.shape)] as f64
                })
                .collect();
            let r = match op {
                Reduce::Sum => vals.iter().sum::<f64>(),
                Reduce::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
                Reduce::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                Reduce::Min => vals.iter().cloned().fold(f64::INFINITY, f64::min),
            };
            r as f32
        })
        .collect();
    H::new(&out, data)
}

/// Batched `op(a)·op(b)` (batch dims equal, or one side 2-D).
pub fn matmul(a: &H, b: &H, ta: bool, tb: bool) -> H {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ta { (a.shape[ra - 1], a.shape[ra - 2]) } else { (a.shape[ra - 2], a.shape[ra - 1]) };
    let n = if tb { b.shape[rb - 2] } else { b.shape[rb - 1] };
    let batch: Vec<usize> = if ra > 2 { a.shape[..ra - 2].to_vec() } else { b.shape[..rb - 2].to_vec() };
    let nb = numel(&batch);
    let mut out = vec![0f32; nb * m * n];
    for bi in 0..nb {
        let ao = if ra > 2 { bi * m * k } else { 0 };
        let bo = if rb > 2 { bi * k * n } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let av = if ta { a.data[ao + p * m + i] } else { a.data[ao + i * k + p] };
                    let bv = if tb { b.data[bo + j * k + p] } else { b.data[bo + p * n + j] };
                    s += av as f64 * bv as f64;
                }
                out[bi * m * n + i * n + j] = s as f32;
            }
        }
    }
    let mut shape = batch;
    shape.extend_from_slice(&[m, n]);
    H::new(&shape, out)
}

/// Axis permutation.
pub fn permute(x: &H, axes: &[usize]) -> H {
    let out: Vec<usize> = axes.iter().map(|&a| x.shape[a]).collect();
    let data = (0..numel(&out))
        .map(|i| {
            let oi = unravel(i, &out);
            let mut xi = vec![0; axes.len()];
            for (o, &a) in axes.iter().enumerate() {
                xi[a] = oi[o];
            }
            x.data[ravel(&xi, &x.shape)]
        })
        .collect();
    H::new(&out, data)
}

/// Slice along an axis.
pub fn narrow(x: &H, axis: usize, start: usize, len: usize) -> H {
    let mut out = x.shape.clone();
    out[axis] = len;
    let data = (0..numel(&out))
        .map(|i| {
            let mut idx = unravel(i, &out);
            idx[axis] += start;
            x.data[ravel(&idx, &x.shape)]
        })
        .collect();
    H::new(&out, data)
}

/// Concatenation along an axis.
pub fn concat(xs: &[H], axis: usize) -> H {
    let mut out = xs[0].shape.clone();
    out[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let data = (0..numel(&out))
        .map(|i| {
            let mut idx = unravel(i, &out);
            let mut k = 0;
            while idx[axis] >= xs[k].shape[axis] {
                idx[axis] -= xs[k].shape[axis];
                k += 1;
            }
            xs[k].data[ravel(&idx, &xs[k].shape)]
        })
        .collect();
    H::new(&out, data)
}

/// Broadcast to a shape.
pub fn expand(x: &H, to: &[usize]) -> H {
    let data = (0..numel(to)).map(|i| x.data[bcast_index(&unravel(i, to), &x.shape)]).collect();
    H::new(to, data)
}

/// Zero padding along an axis.
pub fn pad(x: &H, axis: usize, before: usize, after: usize) -> H {
    let mut out = x.shape.clone();
    out[axis] += before + after;
    let data = (0..numel(&out))
        .map(|i| {
            let mut idx = unravel(i, &out);
            if idx[axis] < before || idx[axis] >= before + x.shape[axis] {
                0.0
            } else {
                idx[axis] -= before;
                x.data[ravel(&idx, &x.shape)]
            }
        })
        .collect();
    H::new(&out, data)
}

/// Row gather.
pub fn gather_rows(t: &H, ids: &[u32], ids_shape: &[usize]) -> H {
    let d = t.shape[1];
    let mut data = Vec::new();
    for &i in ids {
        data.extend_from_slice(&t.data[i as usize * d..(i as usize + 1) * d]);
    }
    let mut s = ids_shape.to_vec();
    s.push(d);
    H::new(&s, data)
}

/// Row scatter-add.
pub fn scatter_add_rows(src: &H, ids: &[u32], rows: usize) -> H {
    let d = *src.shape.last().unwrap();
    let mut acc = vec![0f64; rows * d];
    for (k, &i) in ids.iter().enumerate() {
        for j in 0..d {
            acc[i as usize * d + j] += src.data[k * d + j] as f64;
        }
    }
    H::new(&[rows, d], acc.into_iter().map(|v| v as f32).collect())
}

/// Softmax over the last axis.
pub fn softmax(x: &H) -> H {
    let d = *x.shape.last().unwrap();
    let mut out = Vec::with_capacity(x.data.len());
    for row in x.data.chunks(d) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / s) as f32));
    }
    H::new(&x.shape, out)
}

/// LayerNorm (`beta = Some`) or RMSNorm over the last axis.
pub fn norm(x: &H, g: &[f32], b: Option<&[f32]>, eps: f32) -> H {
    let d = *x.shape.last().unwrap();
    let mut out = Vec::with_capacity(x.data.len());
    for row in x.data.chunks(d) {
        let r: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (mean, var) = if b.is_some() {
            let m = r.iter().sum::<f64>() / d as f64;
            (m, r.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d as f64)
        } else {
            (0.0, r.iter().map(|v| v * v).sum::<f64>() / d as f64)
        };
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for j in 0..d {
            let y = (r[j] - mean) * rstd * g[j] as f64 + b.map_or(0.0, |b| b[j] as f64);
            out.push(y as f32);
        }
    }
    H::new(&x.shape, out)
}

/// Attention `softmax(scale·q kᵀ + mask) v` over flattened batch dims.
pub fn attention(q: &H, k: &H, v: &H, causal: bool, scale: f32) -> H {
    attention_dropout(q, k, v, causal, scale, &|_, _, _| 1.0)
}

/// Attention with a multiplier `m(batch·head, i, j)` on each probability (dropout).
pub fn attention_dropout(q: &H, k: &H, v: &H, causal: bool, scale: f32, m: &dyn Fn(usize, usize, usize) -> f64) -> H {
    let r = q.shape.len();
    let (sq, d, sk, dv) = (q.shape[r - 2], q.shape[r - 1], k.shape[r - 2], v.shape[r - 1]);
    let bh = numel(&q.shape[..r - 2]);
    let mut out = vec![0f32; bh * sq * dv];
    for b in 0..bh {
        for i in 0..sq {
            let vis = if causal { (i + sk - sq + 1).min(sk) } else { sk };
            let s: Vec<f64> = (0..vis)
                .map(|j| {
                    (0..d)
                        .map(|p| q.data[(b * sq + i) * d + p] as f64 * k.data[(b * sk + j) * d + p] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..dv {
                let acc: f64 = (0..vis).map(|j| e[j] / z * m(b, i, j) * v.data[(b * sk + j) * dv + c] as f64).sum();
                out[(b * sq + i) * dv + c] = acc as f32;
            }
        }
    }
    let mut shape = q.shape.clone();
    shape[r - 1] = dv;
    H::new(&shape, out)
}

/// Mean cross-entropy.
pub fn cross_entropy(logits: &H, targets: &[u32]) -> f32 {
    let v = logits.shape[1];
    let mut total = 0f64;
    for (i, row) in logits.data.chunks(v).enumerate() {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        total += lse - row[targets[i] as usize] as f64;
    }
    (total / targets.len() as f64) as f32
}

/// `x·wᵀ + b`.
pub fn linear(x: &H, w: &H, b: Option<&H>) -> H {
    let (out_f, in_f) = (w.shape[0], w.shape[1]);
    let rows = x.data.len() / in_f;
    let mut y = Vec::with_capacity(rows * out_f);
    for r in 0..rows {
        for o in 0..out_f {
            let mut s: f64 = b.map_or(0.0, |b| b.data[o] as f64);
            for i in 0..in_f {
                s += x.data[r * in_f + i] as f64 * w.data[o * in_f + i] as f64;
            }
            y.push(s as f32);
        }
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().unwrap() = out_f;
    H::new(&shape, y)
}

/// Packed self-attention `[B, S, 3, H, Dh] → [B, S, H, Dh]`, one head at a time, with the
/// dropout mask of element `((b·H + h)·S + i)·S + j` drawn from `rng::sample`.
pub fn self_attention(qkv: &H, spec: &protocell_core::backend::AttnSpec) -> H {
    use protocell_core::rng::{sample, Dist};
    let (b, s, h, dh) = (qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4]);
    let mut out = vec![0f32; b * s * h * dh];
    for bi in 0..b {
        for hi in 0..h {
            let part = |p: usize| {
                let mut d = Vec::with_capacity(s * dh);
                for t in 0..s {
                    let at = (((bi * s + t) * 3 + p) * h + hi) * dh;
                    d.extend_from_slice(&qkv.data[at..at + dh]);
                }
                H::new(&[s, dh], d)
            };
            let mask = |_: usize, i: usize, j: usize| match &spec.dropout {
                Some(d) if d.p > 0.0 => {
                    let idx = (((bi * h + hi) * s + i) * s + j) as u64;
                    sample(Dist::Bernoulli { p: 1.0 - d.p }, &d.key, idx) as f64 / (1.0 - d.p as f64)
                }
                _ => 1.0,
            };
            let o = attention_dropout(&part(0), &part(1), &part(2), spec.causal, spec.scale, &mask);
            for t in 0..s {
                let at = ((bi * s + t) * h + hi) * dh;
                out[at..at + dh].copy_from_slice(&o.data[t * dh..(t + 1) * dh]);
            }
        }
    }
    H::new(&[b, s, h, dh], out)
}
