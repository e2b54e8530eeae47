//! The host side of the GPU backends' kernels: the parameter words that the WGSL kernels of
//! `protocell-wgpu` and the CUDA kernels of `protocell-cuda` read in the same order, and the
//! geometry behind them. Backend-neutral; each backend only uploads and launches.
use super::{AttnSpec, Binary, Unary};
use crate::error::{Error, Result};
use crate::shape;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

/// `n` as a kernel word (indices are 32-bit in the kernels).
pub fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} {n} exceeds the GPU kernels' 2³² limit")))
}

/// Op code and parameters of a unary kernel: codes follow `Unary` in declaration order
/// (Neg 0 … Clamp 19); `a, b` are Affine mul/add, Powf's exponent, Clamp's bounds.
pub fn unary_code(op: Unary) -> (u32, f32, f32) {
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

/// Op code of a binary kernel (`Binary` in declaration order, Add 0 … Eq 9).
pub fn binary_code(op: Binary) -> u32 {
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
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let s = shape::strides(from);
    let pad = to.len() - from.len();
    (0..to.len()).map(|i| if i < pad || from[i - pad] == 1 { 0 } else { s[i - pad] }).collect()
}

/// Rejects an id `>= rows`.
pub fn check_ids(op: &str, ids: &[u32], rows: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
        return Err(Error::InvalidArgument(format!("{op}: id {bad} out of range for {rows} rows")));
    }
    Ok(())
}

/// The index of a deterministic scatter-add: `(starts, order)`, `starts` (`rows + 1`) the CSR
/// offsets of each id's positions and `order` the positions grouped by id, increasing within
/// each id (the CPU's summation order).
pub fn scatter_csr(ids: &[u32], rows: usize) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; rows + 1];
    for &i in ids {
        starts[i as usize + 1] += 1;
    }
    for r in 0..rows {
        starts[r + 1] += starts[r];
    }
    let mut fill = starts.clone();
    let mut order = vec![0u32; ids.len()];
    for (pos, &i) in ids.iter().enumerate() {
        order[fill[i as usize] as usize] = pos as u32;
        fill[i as usize] += 1;
    }
    (starts, order)
}

/// Where the rows of one attention operand live: `[base, batch stride, head stride, row
/// stride]` in elements; row `row` of head `bh = b·H + h` starts at `base + b·sb + h·sh + row·rs`.
pub type Layout = [usize; 4];

/// The geometry of one attention call: `bh` heads (`b·H`), `Sq` queries, `Sk` keys, widths
/// `D` (q, k) and `Dv` (v, o), and where the q, k, v and o (= dout) rows live.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnGeom {
    /// Packed `qkv` (true) or separate contiguous q, k, v.
    pub packed: bool,
    /// Batch × heads.
    pub bh: usize,
    /// Heads `H` (1 for contiguous tensors).
    pub heads: usize,
    /// Queries.
    pub sq: usize,
    /// Keys.
    pub sk: usize,
    /// Width of q and k.
    pub d: usize,
    /// Width of v and o.
    pub dv: usize,
    /// Causal mask.
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
    /// Rows of q (and dq).
    pub q: Layout,
    /// Rows of k (and dk).
    pub k: Layout,
    /// Rows of v (and dv).
    pub v: Layout,
    /// Rows of o (and dout).
    pub o: Layout,
}

impl AttnGeom {
    /// Contiguous `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`.
    pub fn plain(q: &[usize], k: &[usize], v: &[usize], causal: bool, scale: f32) -> Result<Self> {
        let r = q.len();
        if r < 2 || k.len() != r || v.len() != r {
            return Err(Error::InvalidArgument("attention needs q, k, v of one rank >= 2".into()));
        }
        let (sq, d, sk, dv) = (q[r - 2], q[r - 1], k[r - 2], v[r - 1]);
        if sk == 0 && sq > 0 {
            return Err(Error::InvalidArgument("attention needs at least one key".into()));
        }
        if causal && sk < sq {
            return Err(Error::InvalidArgument(format!("causal attention needs Sk >= Sq, got {sk} < {sq}")));
        }
        Ok(Self {
            packed: false,
            bh: shape::numel(&q[..r - 2]),
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

    /// Packed `qkv: [B, S, 3, H, Dh]` with `o: [B, S, H, Dh]`.
    pub fn packed(qkv: &[usize], spec: &AttnSpec) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("self-attention needs qkv [B, S, 3, H, Dh], got {qkv:?}"));
        let [b, s, three, h, dh] = qkv[..] else { return Err(bad()) };
        if three != 3 {
            return Err(bad());
        }
        let row = 3 * h * dh;
        Ok(Self {
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
        })
    }

    /// Shape of the dropout mask of a packed call, `[B, H, S, S]`.
    pub fn mask_shape(&self) -> [usize; 4] {
        [self.bh / self.heads, self.heads, self.sq, self.sk]
    }

    /// Query rows `bh·Sq`.
    pub fn rows(&self) -> usize {
        self.bh * self.sq
    }

    /// Parameter words of the row kernels (`attention`, `attention_bwd`):
    /// `[rows, Sq, Sk, D, H, causal, bits(scale), has_mask, q, k, v, o layouts, Dv]`.
    pub fn params(&self, mask: bool) -> Result<Vec<u32>> {
        let mut p = vec![
            u32_of(self.rows(), "rows")?,
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

    /// Parameter words of `attention_apply` (`out = A·x`, or `Aᵀ·x` when `trans`, per head,
    /// `A` the `[Sq, Sk]` matrices at `a_off`) and its thread count:
    /// `[total, out rows, width, H, trans, Sq, Sk, A offset, x layout, out layout]`.
    pub fn apply_params(
        &self,
        a_off: usize,
        trans: bool,
        x: &Layout,
        out: &Layout,
        width: usize,
    ) -> Result<(Vec<u32>, usize)> {
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
        for &v in x.iter().chain(out.iter()) {
            p.push(u32_of(v, "offset")?);
        }
        Ok((p, total))
    }

    /// Shapes of `(o, lse)` for the query shape `q` (the `qkv` shape when packed).
    pub fn out_shapes(&self, q: &[usize]) -> (Vec<usize>, Vec<usize>) {
        if self.packed {
            let b = self.bh / self.heads;
            (vec![b, self.sq, self.heads, self.dv], vec![b, self.heads, self.sq, 1])
        } else {
            let lead = &q[..q.len() - 1];
            let mut o = lead.to_vec();
            o.push(self.dv);
            let mut l = lead.to_vec();
            l.push(1);
            (o, l)
        }
    }

    /// Shapes of `(dk, dv)` of a plain call for the key and value shapes.
    pub fn grad_shapes(&self, k: &[usize], v: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let with = |t: &[usize], w: usize| {
            let mut s = t[..t.len() - 2].to_vec();
            s.extend([self.sk, w]);
            s
        };
        (with(k, self.d), with(v, self.dv))
    }
}
