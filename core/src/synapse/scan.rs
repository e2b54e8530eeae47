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
use super::scalar::{edge, edge_vjp, edge_vjp_at, influx, keys_step, keys_step_vjp, Draw, Edge, Kinetics, STATE};
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

/// The stochastic release of global query row `r`, when the row is drawn stochastically.
pub fn row_draw(st: Option<&Stochastic>, r: u64) -> Option<&Stochastic> {
    st.filter(|s| sample(Dist::Uniform { lo: 0.0, hi: 1.0 }, &s.key.fold(1), r) < s.frac)
}

/// The draw of edge `k` of global query row `r`, given the row's [`row_draw`].
pub fn edge_draw<F: Float>(row: Option<&Stochastic>, r: u64, k: usize, topk: usize) -> Draw<F> {
    match row {
        Some(s) => Draw::Binomial {
            cap: F::from(s.cap).unwrap(),
            xi: F::from(sample(Dist::Normal { mean: 0.0, std: 1.0 }, &s.key.fold(2), r * topk as u64 + k as u64))
                .unwrap(),
        },
        None => Draw::Mean,
    }
}

/// The draw of edge `k` of global query row `r`.
pub fn draw<F: Float>(st: Option<&Stochastic>, r: u64, k: usize, topk: usize) -> Draw<F> {
    edge_draw(row_draw(st, r), r, k, topk)
}

/// The edges of a query: the `topk` largest finite scores among its causal keys (`scores`),
/// as `(key, drive)` in descending order of drive, ties to the lower key index, written into
/// `out` (cleared first). One pass with a sorted buffer of `topk` entries: a score enters only
/// when it beats the weakest edge so far.
pub fn top_edges<F: Float>(scores: &[F], topk: usize, out: &mut Vec<(usize, F)>) {
    out.clear();
    if topk == 0 {
        return;
    }
    for (j, &v) in scores.iter().enumerate() {
        if !v.is_finite() || (out.len() == topk && v <= out[topk - 1].1) {
            continue;
        }
        // after every entry at least as large (earlier keys win ties)
        let at = out.iter().position(|e| e.1 < v).unwrap_or(out.len());
        if out.len() == topk {
            out.pop();
        }
        out.insert(at, (j, v));
    }
}

/// A row's key states structure-of-arrays (field `f` of key `j` at `f·tk + j`), so that a
/// step of every key is a vectorised loop ([`keys_step`]).
fn to_soa<F: Float>(aos: &[F], tk: usize, w: usize, soa: &mut [F]) {
    for j in 0..tk {
        for f in 0..w {
            soa[f * tk + j] = aos[j * w + f];
        }
    }
}

fn to_aos<F: Float>(soa: &[F], tk: usize, w: usize, aos: &mut [F]) {
    for j in 0..tk {
        for f in 0..w {
            aos[j * w + f] = soa[f * tk + j];
        }
    }
}

/// Key `j`'s state gathered from a structure-of-arrays buffer.
fn gather<F: Float>(soa: &[F], tk: usize, w: usize, j: usize, out: &mut [F]) {
    for f in 0..w {
        out[f] = soa[f * tk + j];
    }
}

/// The edges of one causal step and their values (with each edge's draw), recorded by the
/// recomputation of a chunk for the backward scan.
struct StepRecord<F> {
    edges: Vec<(usize, F)>,
    values: Vec<(Draw<F>, Edge<F>)>,
}

impl<F> StepRecord<F> {
    fn new(topk: usize) -> Self {
        Self { edges: Vec::with_capacity(topk), values: Vec::with_capacity(topk) }
    }
}

/// Per-step scratch of a row: release and influx per key (zero but on the step's edges).
struct Scratch<F> {
    a: Vec<F>,
    influx: Vec<F>,
    dinflux: Vec<F>,
    key: Vec<F>,
    edges: Vec<(usize, F)>,
    rel: Vec<F>,
}

impl<F: Float> Scratch<F> {
    fn new(g: &Row) -> Self {
        Self {
            a: vec![F::zero(); g.tk],
            influx: vec![F::zero(); g.tk],
            dinflux: vec![F::zero(); g.tk],
            key: vec![F::zero(); g.width],
            edges: Vec::with_capacity(g.topk + 1),
            rel: vec![F::zero(); g.topk],
        }
    }
    /// Clears the entries the last step set.
    fn clear(&mut self) {
        for &(j, _) in &self.edges {
            self.a[j] = F::zero();
            self.influx[j] = F::zero();
            self.dinflux[j] = F::zero();
        }
    }
}

/// Forward of one row. `state` (`[tk·width]`, key-major) holds the starting state of every
/// key and is left holding the final state; `e` and `mask` (`[tq·tk]`) must be zero on entry.
/// `row0` is the global index of this row's first query (for the stochastic draws).
/// `snapshots`, when given (`[ceil(tq/chunk)·tk·width]`), receives the state at the start of
/// every chunk (causal mode; field-major), for the backward pass.
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
    let mut soa = vec![F::zero(); tk * w];
    to_soa(state, tk, w, &mut soa);
    let mut sc = Scratch::new(g);
    if !g.causal {
        // every query reads the state before the call; then one step with all releases
        let mut dsum = vec![F::zero(); tk];
        let mut acc = vec![false; tk];
        for t in 0..tq {
            top_edges(&scores[t * tk..t * tk + prefix + t + 1], g.topk, &mut sc.edges);
            let r = row0 + t as u64;
            let rd = row_draw(st, r);
            for (k, &(j, d)) in sc.edges.iter().enumerate() {
                gather(&soa, tk, w, j, &mut sc.key);
                let v = edge(&sc.key, d, true, edge_draw(rd, r, k, g.topk), kin);
                e[t * tk + j] = v.e;
                mask[t * tk + j] = F::one();
                sc.a[j] = sc.a[j] + v.rel;
                dsum[j] = dsum[j] + d;
                acc[j] = true;
            }
        }
        for j in 0..tk {
            sc.influx[j] = influx(dsum[j], acc[j], kin).0;
        }
        keys_step(&mut soa, tk, tk, &sc.a, &sc.influx, kin);
        to_aos(&soa, tk, w, state);
        return;
    }
    for t in 0..tq {
        if t % g.chunk == 0 {
            if let Some(s) = snapshots.as_deref_mut() {
                let c = t / g.chunk;
                s[c * tk * w..(c + 1) * tk * w].copy_from_slice(&soa);
            }
        }
        causal_step(g, kin, st, row0, t, scores, &mut soa, &mut sc, Some((e, mask)), None);
    }
    to_aos(&soa, tk, w, state);
}

/// Step `t` of the causal schedule on the field-major `soa`: the edges of query `t` read it,
/// then every key up to the query's position steps. Writes the edge outputs when `out` is
/// given; leaves the edges, their releases and the per-key scratch in `sc`.
#[allow(clippy::too_many_arguments)]
fn causal_step<F: Float>(
    g: &Row,
    kin: &Kinetics<F>,
    st: Option<&Stochastic>,
    row0: u64,
    t: usize,
    scores: &[F],
    soa: &mut [F],
    sc: &mut Scratch<F>,
    out: Option<(&mut [F], &mut [F])>,
    mut record: Option<&mut StepRecord<F>>,
) {
    let (tk, w) = (g.tk, g.width);
    let pos = tk - g.tq + t;
    sc.clear();
    top_edges(&scores[t * tk..t * tk + pos + 1], g.topk, &mut sc.edges);
    let mut out = out;
    let r = row0 + t as u64;
    let rd = row_draw(st, r);
    if let Some(rec) = record.as_deref_mut() {
        rec.edges.clear();
        rec.edges.extend_from_slice(&sc.edges);
        rec.values.clear();
    }
    for (k, &(j, d)) in sc.edges.iter().enumerate() {
        gather(soa, tk, w, j, &mut sc.key);
        let dr = edge_draw(rd, r, k, g.topk);
        let v = edge(&sc.key, d, true, dr, kin);
        sc.rel[k] = v.rel;
        // the top-k keys are distinct: one edge per key
        sc.a[j] = v.rel;
        // = influx(d, true), from the edge's own sp(d) and σ(d)
        let (inf, dinf) = v.influx(kin);
        sc.influx[j] = inf;
        sc.dinflux[j] = dinf;
        if let Some(rec) = record.as_deref_mut() {
            rec.values.push((dr, v));
        }
        if let Some((e, mask)) = out.as_mut() {
            e[t * tk + j] = v.e;
            mask[t * tk + j] = F::one();
        }
    }
    keys_step(soa, tk, pos + 1, &sc.a, &sc.influx, kin);
}

/// Backward of one row: adds `∂L/∂scores` to `dscores` (`[tq·tk]`) for the gradient `de` of
/// the edge outputs (dense `[tq·tk]`; the final state carries no gradient). `state0` is the
/// state the forward started from (key-major); `snapshots` are the ones the causal forward
/// saved.
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
    let mut sc = Scratch::new(g);
    if !g.causal {
        for t in 0..tq {
            top_edges(&scores[t * tk..t * tk + prefix + t + 1], g.topk, &mut sc.edges);
            let r = row0 + t as u64;
            let rd = row_draw(st, r);
            for (k, &(j, d)) in sc.edges.iter().enumerate() {
                let dr = edge_draw(rd, r, k, g.topk);
                let gr = edge_vjp(&state0[j * w..(j + 1) * w], d, true, dr, kin, F::zero(), de[t * tk + j]);
                dscores[t * tk + j] = dscores[t * tk + j] + gr.d;
            }
        }
        return;
    }
    let chunks = tq.div_ceil(g.chunk);
    let mut gstate = vec![F::zero(); tk * w];
    let mut saved = vec![F::zero(); g.chunk * tk * w];
    let mut soa = vec![F::zero(); tk * w];
    let mut ga = vec![F::zero(); tk];
    let mut gd = vec![F::zero(); tk];
    let mut records: Vec<StepRecord<F>> = (0..g.chunk).map(|_| StepRecord::new(g.topk)).collect();
    for c in (0..chunks).rev() {
        let (t0, t1) = (c * g.chunk, ((c + 1) * g.chunk).min(tq));
        soa.copy_from_slice(&snapshots[c * tk * w..(c + 1) * tk * w]);
        for t in t0..t1 {
            // only the keys that exist at step t change; the rest of `saved` is not read
            let n = (prefix + t + 1).min(tk);
            let dst = &mut saved[(t - t0) * tk * w..(t - t0 + 1) * tk * w];
            for f in 0..w {
                dst[f * tk..f * tk + n].copy_from_slice(&soa[f * tk..f * tk + n]);
            }
            causal_step(g, kin, st, row0, t, scores, &mut soa, &mut sc, None, Some(&mut records[t - t0]));
        }
        for t in (t0..t1).rev() {
            let pre = &saved[(t - t0) * tk * w..(t - t0 + 1) * tk * w];
            let pos = prefix + t;
            // the edges of step t, their releases and influx (recorded by the recomputation)
            sc.clear();
            let rec = &records[t - t0];
            sc.edges.clear();
            sc.edges.extend_from_slice(&rec.edges);
            for (&(j, _), &(_, v)) in rec.edges.iter().zip(&rec.values) {
                sc.a[j] = v.rel;
                let (inf, dinf) = v.influx(kin);
                sc.influx[j] = inf;
                sc.dinflux[j] = dinf;
            }
            let values = &rec.values;
            // the key updates of step t
            keys_step_vjp(pre, tk, pos + 1, &sc.a, &sc.influx, &sc.dinflux, &mut gstate, &mut ga, &mut gd, kin);
            // the key at `pos` appeared with its initial state: no gradient before it
            if pos >= prefix {
                for f in 0..w {
                    gstate[f * tk + pos] = F::zero();
                }
            }
            // the edges of query t read the pre-step state
            for (&(j, _), &(dr, v)) in sc.edges.iter().zip(values) {
                gather(pre, tk, w, j, &mut sc.key);
                let gr = edge_vjp_at(&sc.key, dr, kin, &v, ga[j], de[t * tk + j]);
                dscores[t * tk + j] = dscores[t * tk + j] + gr.d + gd[j];
                // (the key at `pos` read its initial state, which has no gradient)
                if j < pos {
                    for (f, gs) in gr.s.iter().enumerate().take(STATE) {
                        gstate[f * tk + j] = gstate[f * tk + j] + *gs;
                    }
                }
            }
        }
    }
}
