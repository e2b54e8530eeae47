//! The presynaptic release of one attention row `(batch, head)` over its queries, forward and
//! backward, generic over the float type: the CPU kernel runs these per row in parallel, the
//! default of [`super::SynapseOps`] runs them on the host, and the tests run them in f64.
//!
//! Inputs of a row: attention scores `[Tq, Tk]` (query `t` sits at position `P + t` with
//! `P = Tk − Tq` cached keys before it and sees keys `0..=P + t`), and the state `[Tk, W]` of
//! every key (`W` = [`super::scalar::state_width`]): the cached keys' state for `j < P`, the
//! initial state for the new keys. Each query's `k` strongest causal keys (ties to the lower
//! index; non-finite scores are not edges) are its edges.
//!
//! * **Seed mode** (`synapse.md` §1.3–1.4): every query reads the state as it was before the
//!   call, then every key takes one step with the releases of all queries summed. Only the
//!   direct path `d → e` is differentiated (the state update is detached, as in the seed).
//! * **Causal mode**: query `t` reads the state left by queries `< t`, then every existing key
//!   (`j ≤ P + t`) takes one step with that query's releases — the dynamics of token-by-token
//!   decoding, during training. Differentiated through the state (the drives of earlier
//!   queries change later outputs), by a backward scan that recomputes each chunk of
//!   `chunk` steps from the state saved at its start, so memory is
//!   `O((Tq/chunk + chunk)·Tk·W)` per row instead of `O(Tq·Tk·W)`.
//!
//! Outputs: the edge outputs `e` scattered into a dense `[Tq, Tk]` (zero off the edges), a
//! mask `[Tq, Tk]` (1 on the edges), and the state after the call.
use super::scalar::{edge, edge_vjp, key_step, key_step_vjp, Draw, Kinetics, STATE};
use crate::rng::{sample, Dist, RngKey};
use alloc::vec;
use alloc::vec::Vec;
use num_traits::Float;

/// Shape and schedule of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Queries.
    pub tq: usize,
    /// Keys (`tk ≥ tq`; the first `tk − tq` are cached).
    pub tk: usize,
    /// Edges per query.
    pub topk: usize,
    /// State floats per key.
    pub width: usize,
    /// Causal (true) or seed (false) schedule.
    pub causal: bool,
    /// Steps per recomputed chunk of the causal backward scan.
    pub chunk: usize,
}

/// Stochastic release: on a row chosen with probability `frac`, each edge's release is an
/// approximate binomial draw of at most `cap` vesicles. Draws are counter-based: the row
/// choice of global query row `r` is uniform element `r` of `key.fold(1)`, the noise of its
/// edge `k` is normal element `r·topk + k` of `key.fold(2)`, so every backend and the
/// recomputing backward pass see the same draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stochastic {
    /// Stream of the draws.
    pub key: RngKey,
    /// Fraction of query rows drawn stochastically.
    pub frac: f32,
    /// Largest vesicle count of a draw.
    pub cap: f32,
}

/// The draw of edge `k` of global query row `r`.
pub fn draw<F: Float>(st: Option<&Stochastic>, r: u64, k: usize, topk: usize) -> Draw<F> {
    match st {
        Some(s) if sample(Dist::Uniform { lo: 0.0, hi: 1.0 }, &s.key.fold(1), r) < s.frac => Draw::Binomial {
            cap: F::from(s.cap).unwrap(),
            xi: F::from(sample(Dist::Normal { mean: 0.0, std: 1.0 }, &s.key.fold(2), r * topk as u64 + k as u64))
                .unwrap(),
        },
        _ => Draw::Mean,
    }
}

/// The edges of a query: the `topk` largest finite scores among its `limit` causal keys, as
/// `(key, drive)` (ties to the lower key index), written into `out` (cleared first).
pub fn top_edges<F: Float>(scores: &[F], topk: usize, out: &mut Vec<(usize, F)>) {
    out.clear();
    out.extend(scores.iter().copied().enumerate().filter(|(_, v)| v.is_finite()));
    let by = |a: &(usize, F), b: &(usize, F)| {
        b.1.partial_cmp(&a.1).unwrap_or(core::cmp::Ordering::Equal).then(a.0.cmp(&b.0))
    };
    if out.len() > topk {
        out.select_nth_unstable_by(topk - 1, by);
        out.truncate(topk);
    }
    out.sort_unstable_by(by);
}

/// Forward of one row. `state` (`[tk·width]`) holds the starting state of every key and is
/// left holding the final state; `e` and `mask` (`[tq·tk]`) must be zero on entry.
/// `row0` is the global index of this row's first query (for the stochastic draws).
/// `snapshots`, when given (`[ceil(tq/chunk)·tk·width]`), receives the state at the start of
/// every chunk (causal mode), for the backward pass.
#[allow(clippy::too_many_arguments)]
pub fn forward<F: Float>(
    g: &Row,
    kin: &Kinetics<F>,
    st: Option<&Stochastic>,
    row0: u64,
    scores: &[F],
    state: &mut [F],
    e: &mut [F],
    mask: &mut [F],
    mut snapshots: Option<&mut [F]>,
) {
    let (tq, tk, w) = (g.tq, g.tk, g.width);
    let prefix = tk - tq;
    let mut edges = Vec::with_capacity(g.topk + 1);
    if !g.causal {
        let mut a = vec![F::zero(); tk];
        let mut dsum = vec![F::zero(); tk];
        let mut acc = vec![false; tk];
        for t in 0..tq {
            top_edges(&scores[t * tk..t * tk + prefix + t + 1], g.topk, &mut edges);
            for (k, &(j, d)) in edges.iter().enumerate() {
                let v = edge(&state[j * w..(j + 1) * w], d, true, draw(st, row0 + t as u64, k, g.topk), kin);
                e[t * tk + j] = v.e;
                mask[t * tk + j] = F::one();
                a[j] = a[j] + v.rel;
                dsum[j] = dsum[j] + d;
                acc[j] = true;
            }
        }
        for j in 0..tk {
            key_step(&mut state[j * w..(j + 1) * w], a[j], dsum[j], acc[j], kin);
        }
        return;
    }
    let mut rel = vec![F::zero(); g.topk];
    for t in 0..tq {
        if t % g.chunk == 0 {
            if let Some(s) = snapshots.as_deref_mut() {
                let c = t / g.chunk;
                s[c * tk * w..(c + 1) * tk * w].copy_from_slice(state);
            }
        }
        causal_step(g, kin, st, row0, t, scores, state, &mut edges, &mut rel, Some((e, mask)));
    }
}

/// Step `t` of the causal schedule: edges of query `t` read `state`, then every key up to its
/// position steps. Writes the edge outputs when `out` is given; leaves the edges and their
/// releases in `edges` / `rel`.
#[allow(clippy::too_many_arguments)]
fn causal_step<F: Float>(
    g: &Row,
    kin: &Kinetics<F>,
    st: Option<&Stochastic>,
    row0: u64,
    t: usize,
    scores: &[F],
    state: &mut [F],
    edges: &mut Vec<(usize, F)>,
    rel: &mut [F],
    out: Option<(&mut [F], &mut [F])>,
) {
    let (tk, w) = (g.tk, g.width);
    let pos = tk - g.tq + t;
    top_edges(&scores[t * tk..t * tk + pos + 1], g.topk, edges);
    let mut out = out;
    for (k, &(j, d)) in edges.iter().enumerate() {
        let v = edge(&state[j * w..(j + 1) * w], d, true, draw(st, row0 + t as u64, k, g.topk), kin);
        rel[k] = v.rel;
        if let Some((e, mask)) = out.as_mut() {
            e[t * tk + j] = v.e;
            mask[t * tk + j] = F::one();
        }
    }
    // keys up to `pos` step; the edges' keys with their release and drive (distinct keys)
    let mut next = 0;
    let mut sorted: Vec<(usize, usize)> = edges.iter().enumerate().map(|(k, &(j, _))| (j, k)).collect();
    sorted.sort_unstable();
    for j in 0..=pos {
        let (a, dsum, acc) = if next < sorted.len() && sorted[next].0 == j {
            let k = sorted[next].1;
            next += 1;
            (rel[k], edges[k].1, true)
        } else {
            (F::zero(), F::zero(), false)
        };
        key_step(&mut state[j * w..(j + 1) * w], a, dsum, acc, kin);
    }
}

/// Backward of one row: adds `∂L/∂scores` to `dscores` (`[tq·tk]`) for the gradient `de` of
/// the edge outputs (dense `[tq·tk]`; the final state carries no gradient). `state0` is the
/// state the forward started from; `snapshots` are the ones the causal forward saved.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Float>(
    g: &Row,
    kin: &Kinetics<F>,
    st: Option<&Stochastic>,
    row0: u64,
    scores: &[F],
    state0: &[F],
    snapshots: &[F],
    de: &[F],
    dscores: &mut [F],
) {
    let (tq, tk, w) = (g.tq, g.tk, g.width);
    let prefix = tk - tq;
    let mut edges = Vec::with_capacity(g.topk + 1);
    if !g.causal {
        for t in 0..tq {
            top_edges(&scores[t * tk..t * tk + prefix + t + 1], g.topk, &mut edges);
            for (k, &(j, d)) in edges.iter().enumerate() {
                let dr = draw(st, row0 + t as u64, k, g.topk);
                let gr = edge_vjp(&state0[j * w..(j + 1) * w], d, true, dr, kin, F::zero(), de[t * tk + j]);
                dscores[t * tk + j] = dscores[t * tk + j] + gr.d;
            }
        }
        return;
    }
    let chunks = tq.div_ceil(g.chunk);
    let mut gstate = vec![F::zero(); tk * w];
    let mut saved = vec![F::zero(); g.chunk * tk * w];
    let mut state = vec![F::zero(); tk * w];
    let mut rel = vec![F::zero(); g.topk];
    let mut ga = vec![F::zero(); tk];
    let mut gd = vec![F::zero(); tk];
    let mut a = vec![F::zero(); tk];
    let mut dsum = vec![F::zero(); tk];
    let mut acc = vec![false; tk];
    for c in (0..chunks).rev() {
        let (t0, t1) = (c * g.chunk, ((c + 1) * g.chunk).min(tq));
        state.copy_from_slice(&snapshots[c * tk * w..(c + 1) * tk * w]);
        for t in t0..t1 {
            saved[(t - t0) * tk * w..(t - t0 + 1) * tk * w].copy_from_slice(&state);
            causal_step(g, kin, st, row0, t, scores, &mut state, &mut edges, &mut rel, None);
        }
        for t in (t0..t1).rev() {
            let pre = &saved[(t - t0) * tk * w..(t - t0 + 1) * tk * w];
            let pos = prefix + t;
            top_edges(&scores[t * tk..t * tk + pos + 1], g.topk, &mut edges);
            a[..=pos].iter_mut().for_each(|x| *x = F::zero());
            dsum[..=pos].iter_mut().for_each(|x| *x = F::zero());
            acc[..=pos].iter_mut().for_each(|x| *x = false);
            for (k, &(j, d)) in edges.iter().enumerate() {
                let v = edge(&pre[j * w..(j + 1) * w], d, true, draw(st, row0 + t as u64, k, g.topk), kin);
                a[j] = v.rel;
                dsum[j] = d;
                acc[j] = true;
            }
            // the key updates of step t
            for j in 0..=pos {
                let (x, y) =
                    key_step_vjp(&pre[j * w..(j + 1) * w], a[j], dsum[j], acc[j], kin, &mut gstate[j * w..(j + 1) * w]);
                ga[j] = x;
                gd[j] = y;
            }
            // the key at position `pos` appeared with its initial state: no gradient before it
            if pos >= prefix {
                gstate[pos * w..(pos + 1) * w].iter_mut().for_each(|x| *x = F::zero());
            }
            // the edges of query t read the pre-step state
            for (k, &(j, d)) in edges.iter().enumerate() {
                let dr = draw(st, row0 + t as u64, k, g.topk);
                let gr = edge_vjp(&pre[j * w..(j + 1) * w], d, true, dr, kin, ga[j], de[t * tk + j]);
                dscores[t * tk + j] = dscores[t * tk + j] + gr.d + gd[j];
                // (the key at `pos` read its initial state, which has no gradient)
                if j < pos {
                    for (i, gs) in gr.s.iter().enumerate().take(STATE) {
                        gstate[j * w + i] = gstate[j * w + i] + *gs;
                    }
                }
            }
        }
    }
}
