//! The colony equations for one token, generic over the float type, with their
//! hand-written vector-Jacobian product. The CPU kernel calls these with `f32`; the tests
//! call them with `f64` against finite differences; GPU kernels mirror them line by line.
//!
//! Layout of one token: `h` is `[N·4]` block-major (`h[4i + c]`, channels E, P, G, L),
//! `W` is `[N·N]` row-major, the stimulus `s` is `[N]`, coefficients `c` are
//! `[α_E, α_P, α_G, α_L, β_P, β_G, β_L, ω_g, ω_d]`.
//!
//! One inner step, synchronous (every right-hand side uses the old values):
//!
//! * routing: `Ŵᵢⱼ = Wᵢⱼ / (Σₖ Wᵢₖ + ε)`, neighbour mean `h̃ᵢ = Σⱼ Ŵᵢⱼ hⱼ`;
//! * EPGL (each line then bounded to `[0, 1]`):
//!   * `E′ = E + dt(α_E s − 0.4P − 0.2G)`
//!   * `P′ = P + dt(α_P s + β_P(P̃ − P) − 0.2E)`
//!   * `G′ = G + dt(α_G E(1 − P) + β_G(G̃ − G) − 0.3P)`
//!   * `L′ = L + dt(α_L(½Ẽ + ½G̃) + β_L(L̃ − L) − 0.3P)`
//! * optional pruning gate on the new states (see [`super::Pruning`]);
//! * rewiring with the new states: `W′ᵢⱼ = bound(Wᵢⱼ + dt(ω_g·½(L′ᵢ + L′ⱼ)·dᵢⱼ − ω_d Wᵢⱼ))`,
//!   `W′ᵢᵢ = 0`, with `dᵢⱼ = √(‖h′ᵢ − h′ⱼ‖² + 10⁻¹²)` (a safe root: zero gradient at `i = j`),
//!   or `dᵢⱼ = 0` in the as-coded mode.
//!
//! `bound` is `clamp(·, 0, 1)` in the seed modes (gradient 1 on the closed interval, as
//! PyTorch's clamp) and `(softplus(kx) − softplus(k(x − 1)))/k` in the sound mode.
use super::{CellMode, ColonySpec, N_COEFFS};
use alloc::vec;
use alloc::vec::Vec;
use num_traits::Float;

/// Index of each coefficient in the coefficient vector.
pub mod coeff {
    /// α_E
    pub const A_E: usize = 0;
    /// α_P
    pub const A_P: usize = 1;
    /// α_G
    pub const A_G: usize = 2;
    /// α_L
    pub const A_L: usize = 3;
    /// β_P
    pub const B_P: usize = 4;
    /// β_G
    pub const B_G: usize = 5;
    /// β_L
    pub const B_L: usize = 6;
    /// ω_g (growth of mucus)
    pub const W_G: usize = 7;
    /// ω_d (decay of mucus)
    pub const W_D: usize = 8;
}
use coeff::*;

/// `δ` inside the distance root.
pub const DIST_DELTA: f64 = 1e-12;

fn f<F: Float>(x: f64) -> F {
    F::from(x).unwrap()
}

/// `ln(1 + eˣ)` without overflow.
pub fn softplus<F: Float>(x: F) -> F {
    x.max(F::zero()) + (-x.abs()).exp().ln_1p()
}

/// `1/(1 + e^{−x})`.
pub fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// The bound of the mode: hard clamp to `[0, 1]`, or the smooth clamp of sharpness `k`.
pub fn bound<F: Float>(mode: CellMode, k: F, x: F) -> F {
    match mode {
        CellMode::Sound => (softplus(k * x) - softplus(k * (x - F::one()))) / k,
        _ => {
            if x.is_nan() {
                x
            } else {
                x.max(F::zero()).min(F::one())
            }
        }
    }
}

/// Derivative of [`bound`].
pub fn bound_grad<F: Float>(mode: CellMode, k: F, x: F) -> F {
    match mode {
        CellMode::Sound => sigmoid(k * x) - sigmoid(k * (x - F::one())),
        _ => {
            if x >= F::zero() && x <= F::one() {
                F::one()
            } else {
                F::zero()
            }
        }
    }
}

/// Normalised entropy `H(p)/ln 4 ∈ [0, 1]` of a block's state, `p = (h + 10⁻⁶)/Σ(h + 10⁻⁶)`.
pub fn block_entropy<F: Float>(h: &[F]) -> F {
    let eps: F = f(1e-6);
    let z: F = h.iter().fold(F::zero(), |a, &x| a + x.max(F::zero()) + eps);
    let mut e = F::zero();
    for &x in h {
        let p = (x.max(F::zero()) + eps) / z;
        e = e - p * p.ln();
    }
    e / f::<F>(4.0).ln()
}

/// Per-step working buffers, allocated once per trajectory and reused for every token.
#[derive(Debug, Clone)]
struct Scratch<F> {
    den: Vec<F>,
    nb: Vec<F>,
    u: Vec<F>,
    g_h: Vec<F>,
    g_w: Vec<F>,
    gh1: Vec<F>,
    gw_prev: Vec<F>,
    gu: Vec<F>,
    gh_prev: Vec<F>,
    gnb: Vec<F>,
    gwhat: Vec<F>,
}

impl<F: Float> Scratch<F> {
    fn new(n: usize) -> Self {
        let z = |len: usize| vec![F::zero(); len];
        Self {
            den: z(n),
            nb: z(4 * n),
            u: z(4 * n),
            g_h: z(4 * n),
            g_w: z(n * n),
            gh1: z(4 * n),
            gw_prev: z(n * n),
            gu: z(4 * n),
            gh_prev: z(4 * n),
            gnb: z(4 * n),
            gwhat: z(n),
        }
    }
}

/// One token's trajectory: states before and after every step, and the alive masks (plus
/// reusable working memory, so running many tokens through one trajectory allocates nothing).
#[derive(Debug, Clone)]
pub struct Trajectory<F> {
    n: usize,
    steps: usize,
    /// `(K+1)·4N`: `h` before step 0, after step 0, ...
    pub h: Vec<F>,
    /// `(K+1)·N²`.
    pub w: Vec<F>,
    /// `(K+1)·N`: 1 alive, 0 dead.
    pub alive: Vec<F>,
    life: Vec<F>,
    scratch: Scratch<F>,
}

impl<F: Float> Trajectory<F> {
    /// Storage for `n` blocks and `steps` steps.
    pub fn new(n: usize, steps: usize) -> Self {
        Self {
            n,
            steps,
            h: vec![F::zero(); (steps + 1) * 4 * n],
            w: vec![F::zero(); (steps + 1) * n * n],
            alive: vec![F::one(); (steps + 1) * n],
            life: vec![F::one(); n],
            scratch: Scratch::new(n),
        }
    }
    /// State after `k` steps.
    pub fn h_at(&self, k: usize) -> &[F] {
        &self.h[k * 4 * self.n..(k + 1) * 4 * self.n]
    }
    /// Mucus after `k` steps.
    pub fn w_at(&self, k: usize) -> &[F] {
        &self.w[k * self.n * self.n..(k + 1) * self.n * self.n]
    }
    /// Alive mask after `k` steps.
    pub fn alive_at(&self, k: usize) -> &[F] {
        &self.alive[k * self.n..(k + 1) * self.n]
    }
    /// Final state.
    pub fn h_final(&self) -> &[F] {
        self.h_at(self.steps)
    }
    /// Final mucus.
    pub fn w_final(&self) -> &[F] {
        self.w_at(self.steps)
    }
    /// Final alive mask.
    pub fn alive_final(&self) -> &[F] {
        self.alive_at(self.steps)
    }
}

/// Routing and the EPGL update of one step: writes the row denominators `den`, neighbour
/// means `nb` and the pre-bound update `u`.
#[allow(clippy::too_many_arguments)]
fn routing_and_update<F: Float>(
    spec: &ColonySpec,
    c: &[F],
    s: &[F],
    h: &[F],
    w: &[F],
    n: usize,
    den: &mut [F],
    nb: &mut [F],
    u: &mut [F],
) {
    let dt: F = f(spec.dt as f64);
    let eps: F = f(spec.row_eps as f64);
    nb.iter_mut().for_each(|x| *x = F::zero());
    for i in 0..n {
        let row = &w[i * n..(i + 1) * n];
        den[i] = row.iter().fold(F::zero(), |a, &x| a + x) + eps;
        for j in 0..n {
            let wij = row[j] / den[i];
            for ch in 0..4 {
                nb[4 * i + ch] = nb[4 * i + ch] + wij * h[4 * j + ch];
            }
        }
    }
    let (c4, c3, c2, half) = (f::<F>(0.4), f::<F>(0.3), f::<F>(0.2), f::<F>(0.5));
    for i in 0..n {
        let (e, p, g, l) = (h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]);
        let (ne, np, ng, nl) = (nb[4 * i], nb[4 * i + 1], nb[4 * i + 2], nb[4 * i + 3]);
        let si = s[i];
        u[4 * i] = e + dt * (c[A_E] * si - c4 * p - c2 * g);
        u[4 * i + 1] = p + dt * (c[A_P] * si + c[B_P] * (np - p) - c2 * e);
        u[4 * i + 2] = g + dt * (c[A_G] * e * (F::one() - p) + c[B_G] * (ng - g) - c3 * p);
        u[4 * i + 3] = l + dt * (c[A_L] * (half * ne + half * ng) + c[B_L] * (nl - l) - c3 * p);
    }
}

fn distance<F: Float>(mode: CellMode, h: &[F], i: usize, j: usize) -> F {
    if mode == CellMode::AsCoded {
        return F::zero();
    }
    let mut d2 = F::zero();
    for ch in 0..4 {
        let d = h[4 * i + ch] - h[4 * j + ch];
        d2 = d2 + d * d;
    }
    (d2 + f(DIST_DELTA)).sqrt()
}

/// Runs the `K` steps of one token from `(h0, w0)`, filling `traj`.
pub fn forward<F: Float>(spec: &ColonySpec, c: &[F], s: &[F], h0: &[F], w0: &[F], traj: &mut Trajectory<F>) {
    let n = traj.n;
    debug_assert!(c.len() == N_COEFFS && s.len() == n && h0.len() == 4 * n && w0.len() == n * n);
    let k_sharp: F = f(spec.sharpness as f64);
    let dt: F = f(spec.dt as f64);
    traj.h[..4 * n].copy_from_slice(h0);
    traj.w[..n * n].copy_from_slice(w0);
    traj.alive[..n].iter_mut().for_each(|a| *a = F::one());
    traj.life.iter_mut().for_each(|l| *l = F::one());
    let sc = &mut traj.scratch;
    for k in 0..traj.steps {
        let (done, rest) = traj.h.split_at_mut((k + 1) * 4 * n);
        let h = &done[k * 4 * n..];
        let h_next = &mut rest[..4 * n];
        let w_k = &traj.w[k * n * n..(k + 1) * n * n];
        routing_and_update(spec, c, s, h, w_k, n, &mut sc.den, &mut sc.nb, &mut sc.u);
        for (o, &u) in h_next.iter_mut().zip(&sc.u) {
            *o = bound(spec.mode, k_sharp, u);
        }
        // pruning gate on the new states
        let (alive_prev, alive_rest) = traj.alive.split_at_mut((k + 1) * n);
        let alive_prev = &alive_prev[k * n..];
        let alive_next = &mut alive_rest[..n];
        for i in 0..n {
            let mut a = alive_prev[i];
            if let Some(p) = spec.pruning {
                if a > F::zero() {
                    let hn = block_entropy(&h_next[4 * i..4 * i + 4]);
                    traj.life[i] = traj.life[i] - f::<F>(p.rate as f64) * (F::one() - hn);
                    if traj.life[i] <= f(p.threshold as f64) {
                        a = F::zero();
                    }
                }
            }
            alive_next[i] = a;
            for ch in 0..4 {
                h_next[4 * i + ch] = h_next[4 * i + ch] * a;
            }
        }
        // rewiring with the new states
        let (w_done, w_rest) = traj.w.split_at_mut((k + 1) * n * n);
        let w = &w_done[k * n * n..];
        let w_next = &mut w_rest[..n * n];
        for i in 0..n {
            for j in 0..n {
                w_next[i * n + j] = if i == j {
                    F::zero()
                } else {
                    let d = distance(spec.mode, h_next, i, j);
                    let lm = f::<F>(0.5) * (h_next[4 * i + 3] + h_next[4 * j + 3]);
                    let v = w[i * n + j] + dt * (c[W_G] * lm * d - c[W_D] * w[i * n + j]);
                    bound(spec.mode, k_sharp, v) * alive_next[i] * alive_next[j]
                };
            }
        }
    }
}

/// Gradients of one token, accumulated by [`backward`].
pub struct TokenGrads<'a, F> {
    /// `dL/dh⁰`, `[4N]` (overwritten).
    pub h0: &'a mut [F],
    /// `dL/dW⁰`, `[N²]` (overwritten).
    pub w0: &'a mut [F],
    /// `dL/ds`, `[N]` (overwritten).
    pub stim: &'a mut [F],
    /// `dL/dc`, `[9]` (accumulated: the coefficients are shared by all tokens).
    pub coeffs: &'a mut [F],
}

/// Vector-Jacobian product through the `K` steps stored in `traj`, for output gradients
/// `gh` (`[4N]`, w.r.t. the final state) and `gw` (`[N²]`, w.r.t. the final mucus).
pub fn backward<F: Float>(
    spec: &ColonySpec,
    c: &[F],
    s: &[F],
    traj: &mut Trajectory<F>,
    gh: &[F],
    gw: &[F],
    out: TokenGrads<'_, F>,
) {
    let n = traj.n;
    let mode = spec.mode;
    let k_sharp: F = f(spec.sharpness as f64);
    let dt: F = f(spec.dt as f64);
    let half: F = f(0.5);
    let Trajectory { h: hs, w: ws, alive: als, scratch: sc, steps, .. } = traj;
    let Scratch { den, nb, u, g_h, g_w, gh1, gw_prev, gu, gh_prev, gnb, gwhat } = sc;
    g_h.copy_from_slice(gh); // gradient w.r.t. the state after the current step
    g_w.copy_from_slice(gw);
    out.stim.iter_mut().for_each(|x| *x = F::zero());
    for k in (0..*steps).rev() {
        let (h, w) = (&hs[k * 4 * n..(k + 1) * 4 * n], &ws[k * n * n..(k + 1) * n * n]);
        let (h1, a1) = (&hs[(k + 1) * 4 * n..(k + 2) * 4 * n], &als[(k + 1) * n..(k + 2) * n]);
        routing_and_update(spec, c, s, h, w, n, den, nb, u);
        gh1.copy_from_slice(g_h); // dL/dh′ (masked state), gathering the rewiring's share
        gw_prev.iter_mut().for_each(|x| *x = F::zero());
        // 1–2: rewiring
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let mask = a1[i] * a1[j];
                let d = distance(mode, h1, i, j);
                let lm = half * (h1[4 * i + 3] + h1[4 * j + 3]);
                let wij = w[i * n + j];
                let v = wij + dt * (c[W_G] * lm * d - c[W_D] * wij);
                let gv = g_w[i * n + j] * mask * bound_grad(mode, k_sharp, v);
                if gv == F::zero() {
                    continue;
                }
                gw_prev[i * n + j] = gw_prev[i * n + j] + gv * (F::one() - dt * c[W_D]);
                out.coeffs[W_G] = out.coeffs[W_G] + gv * dt * lm * d;
                out.coeffs[W_D] = out.coeffs[W_D] - gv * dt * wij;
                let gl = gv * dt * c[W_G] * half * d;
                gh1[4 * i + 3] = gh1[4 * i + 3] + gl;
                gh1[4 * j + 3] = gh1[4 * j + 3] + gl;
                if mode != CellMode::AsCoded {
                    let gd = gv * dt * c[W_G] * lm;
                    for ch in 0..4 {
                        let t = gd * (h1[4 * i + ch] - h1[4 * j + ch]) / d;
                        gh1[4 * i + ch] = gh1[4 * i + ch] + t;
                        gh1[4 * j + ch] = gh1[4 * j + ch] - t;
                    }
                }
            }
        }
        // 3–4: gate and bound
        for (x, g) in gu.iter_mut().enumerate() {
            *g = gh1[x] * a1[x / 4] * bound_grad(mode, k_sharp, u[x]);
        }
        // 5: EPGL update
        let (c4, c3, c2) = (f::<F>(0.4), f::<F>(0.3), f::<F>(0.2));
        for i in 0..n {
            let (e, p, g, l) = (h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]);
            let (ne, np, ng, nl) = (nb[4 * i], nb[4 * i + 1], nb[4 * i + 2], nb[4 * i + 3]);
            let (ge, gp, gg, gl) = (gu[4 * i], gu[4 * i + 1], gu[4 * i + 2], gu[4 * i + 3]);
            gh_prev[4 * i] = ge + dt * (-c2 * gp + c[A_G] * (F::one() - p) * gg);
            gh_prev[4 * i + 1] = gp * (F::one() - dt * c[B_P]) + dt * (-c4 * ge - c[A_G] * e * gg - c3 * gg - c3 * gl);
            gh_prev[4 * i + 2] = gg * (F::one() - dt * c[B_G]) - dt * c2 * ge;
            gh_prev[4 * i + 3] = gl * (F::one() - dt * c[B_L]);
            gnb[4 * i] = dt * half * c[A_L] * gl;
            gnb[4 * i + 1] = dt * c[B_P] * gp;
            gnb[4 * i + 2] = dt * (c[B_G] * gg + half * c[A_L] * gl);
            gnb[4 * i + 3] = dt * c[B_L] * gl;
            out.stim[i] = out.stim[i] + dt * (c[A_E] * ge + c[A_P] * gp);
            let si = s[i];
            out.coeffs[A_E] = out.coeffs[A_E] + dt * si * ge;
            out.coeffs[A_P] = out.coeffs[A_P] + dt * si * gp;
            out.coeffs[A_G] = out.coeffs[A_G] + dt * e * (F::one() - p) * gg;
            out.coeffs[A_L] = out.coeffs[A_L] + dt * (half * ne + half * ng) * gl;
            out.coeffs[B_P] = out.coeffs[B_P] + dt * (np - p) * gp;
            out.coeffs[B_G] = out.coeffs[B_G] + dt * (ng - g) * gg;
            out.coeffs[B_L] = out.coeffs[B_L] + dt * (nl - l) * gl;
        }
        // 6–7: routing h̃ᵢ = Σⱼ Wᵢⱼ/denᵢ · hⱼ
        for i in 0..n {
            let den = den[i];
            let mut dot = F::zero(); // Σₖ gŴᵢₖ Wᵢₖ
            for j in 0..n {
                let what = w[i * n + j] / den;
                let mut acc = F::zero();
                for ch in 0..4 {
                    acc = acc + gnb[4 * i + ch] * h[4 * j + ch];
                    gh_prev[4 * j + ch] = gh_prev[4 * j + ch] + what * gnb[4 * i + ch];
                }
                gwhat[j] = acc;
                dot = dot + acc * w[i * n + j];
            }
            for j in 0..n {
                gw_prev[i * n + j] = gw_prev[i * n + j] + gwhat[j] / den - dot / (den * den);
            }
        }
        g_h.copy_from_slice(gh_prev);
        g_w.copy_from_slice(gw_prev);
    }
    out.h0.copy_from_slice(g_h);
    out.w0.copy_from_slice(g_w);
}

/// `W⁰` of a mode for `n` blocks: zero (as coded) or 0.1 off the diagonal.
pub fn initial_mucus(mode: CellMode, n: usize) -> Vec<f32> {
    let mut w = vec![0.0f32; n * n];
    if mode != CellMode::AsCoded {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    w[i * n + j] = 0.1;
                }
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{Pruning, SEED_COEFFS};

    fn vectors() -> (Vec<f64>, Vec<f64>) {
        let h = vec![0.9, 0.1, 0.5, 0.7, 0.2, 0.6, 0.3, 0.4, 0.5, 0.5, 0.8, 0.1];
        (h, SEED_COEFFS.iter().map(|&x| x as f64).collect())
    }

    fn one_step(mode: CellMode, c: &[f64]) -> Trajectory<f64> {
        let (h, _) = vectors();
        let spec = ColonySpec::new(mode, 1);
        let w0: Vec<f64> = initial_mucus(mode, 3).iter().map(|&x| x as f64).collect();
        let mut t = Trajectory::new(3, 1);
        forward(&spec, c, &[0.3; 3], &h, &w0, &mut t);
        t
    }

    /// `shared/spec/fixtures/cell_test_vectors.txt` (N = 3, s = 0.3, one step).
    #[test]
    fn seed_test_vectors() {
        let (_, c) = vectors();
        let t = one_step(CellMode::AsCoded, &c);
        let want = [0.85, 0.04, 0.694, 0.46, 0.0, 0.53, 0.092, 0.1, 0.23, 0.4, 0.59, 0.0];
        for (a, b) in t.h_final().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "as coded h′ {:?}", t.h_final());
        }
        assert!(t.w_final().iter().all(|&x| x == 0.0));

        let t = one_step(CellMode::AsDescribed, &c);
        let want = [0.85, 0.205, 0.804, 0.715, 0.0, 0.62, 0.222, 0.49, 0.23, 0.505, 0.67, 0.275];
        for (a, b) in t.h_final().iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "as described h′ {:?}", t.h_final());
        }
        let w = t.w_final();
        for (i, j, v) in [(0, 1, 0.132136732339859), (0, 2, 0.11849856376647949), (1, 2, 0.10870067775249481)] {
            assert!((w[i * 3 + j] - v).abs() < 1e-6 && (w[j * 3 + i] - v).abs() < 1e-6, "W′ {w:?}");
        }
        assert!((0..3).all(|i| w[i * 3 + i] == 0.0));

        // bio_token_mucus rule: growth 0.1, decay 0.05
        let mut c2 = c.clone();
        c2[W_G] = 0.1;
        c2[W_D] = 0.05;
        let w = one_step(CellMode::AsDescribed, &c2).w_final().to_vec();
        for (i, j, v) in [(0, 1, 0.16327348351478577), (0, 2, 0.13599711656570435), (1, 2, 0.11640134453773499)] {
            assert!((w[i * 3 + j] - v).abs() < 1e-6, "bio_token_mucus W′ {w:?}");
        }
    }

    /// Hand-checked single block: from h = 0.5 everywhere, s = 0.028 (cellular.md §2.2).
    #[test]
    fn hand_computed_step() {
        let c: Vec<f64> = SEED_COEFFS.iter().map(|&x| x as f64).collect();
        let spec = ColonySpec::new(CellMode::AsCoded, 1);
        let mut t = Trajectory::new(1, 1);
        forward(&spec, &c, &[0.028], &[0.5, 0.5, 0.5, 0.5], &[0.0], &mut t);
        let want = [0.2084, 0.264, 0.35, 0.2];
        for (a, b) in t.h_final().iter().zip(want) {
            assert!((a - b).abs() < 1e-3, "{:?}", t.h_final());
        }
    }

    /// Invariants of the seed modes: states in [0, 1], W ≥ 0 with a zero diagonal; and a
    /// zero W row normalises to zero without blowing up.
    #[test]
    fn invariants() {
        let mut r = crate::rng::Philox::new(crate::RngKey::new(5));
        for mode in [CellMode::AsCoded, CellMode::AsDescribed, CellMode::Sound] {
            let n = 5;
            let spec = ColonySpec::new(mode, 7);
            let h0: Vec<f64> = (0..4 * n).map(|_| r.next_f64() * 1.4 - 0.2).collect();
            let mut w0: Vec<f64> = (0..n * n).map(|_| r.next_f64() * 0.3).collect();
            for i in 0..n {
                w0[i * n + i] = 0.0;
            }
            w0[n..2 * n].iter_mut().for_each(|x| *x = 0.0); // one all-zero row
            let c: Vec<f64> = SEED_COEFFS.iter().map(|&x| x as f64).collect();
            let s: Vec<f64> = (0..n).map(|_| r.next_f64()).collect();
            let mut t = Trajectory::new(n, 7);
            forward(&spec, &c, &s, &h0, &w0, &mut t);
            for k in 1..=7 {
                assert!(t.h_at(k).iter().all(|&x| (0.0..=1.0).contains(&x)), "{mode:?} h out of [0,1]");
                let w = t.w_at(k);
                assert!(w.iter().all(|&x| x >= 0.0 && x.is_finite()), "{mode:?} W negative");
                assert!((0..n).all(|i| w[i * n + i] == 0.0));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn loss(spec: &ColonySpec, c: &[f64], s: &[f64], h0: &[f64], w0: &[f64], gh: &[f64], gw: &[f64], n: usize) -> f64 {
        let mut t = Trajectory::new(n, spec.steps);
        forward(spec, c, s, h0, w0, &mut t);
        t.h_final().iter().zip(gh).map(|(a, b)| a * b).sum::<f64>()
            + t.w_final().iter().zip(gw).map(|(a, b)| a * b).sum::<f64>()
    }

    /// The hand-written VJP against f64 central differences, every mode, with pruning.
    #[test]
    fn backward_matches_finite_differences() {
        let mut r = crate::rng::Philox::new(crate::RngKey::new(11));
        for (mode, prune) in [
            (CellMode::AsCoded, false),
            (CellMode::AsDescribed, false),
            (CellMode::Sound, false),
            (CellMode::Sound, true),
        ] {
            let n = 4;
            let mut spec = ColonySpec::new(mode, 3);
            if mode == CellMode::Sound {
                spec.dt = 0.7;
            }
            if prune {
                spec.pruning = Some(Pruning { rate: 0.3, threshold: 0.5 });
            }
            // interior states so that clamps are not at a kink
            let h0: Vec<f64> = (0..4 * n).map(|_| 0.2 + 0.5 * r.next_f64()).collect();
            let mut w0: Vec<f64> = (0..n * n).map(|_| 0.05 + 0.2 * r.next_f64()).collect();
            for i in 0..n {
                w0[i * n + i] = 0.0;
            }
            let c: Vec<f64> = SEED_COEFFS.iter().map(|&x| 0.8 * x as f64).collect();
            let s: Vec<f64> = (0..n).map(|_| 0.05 * r.next_f64()).collect();
            let gh: Vec<f64> = (0..4 * n).map(|_| r.next_f64() - 0.5).collect();
            let gw: Vec<f64> = (0..n * n).map(|_| r.next_f64() - 0.5).collect();
            let mut t = Trajectory::new(n, spec.steps);
            forward(&spec, &c, &s, &h0, &w0, &mut t);
            let (mut dh, mut dw, mut ds, mut dc) = (vec![0.0; 4 * n], vec![0.0; n * n], vec![0.0; n], vec![0.0; 9]);
            backward(
                &spec,
                &c,
                &s,
                &mut t,
                &gh,
                &gw,
                TokenGrads { h0: &mut dh, w0: &mut dw, stim: &mut ds, coeffs: &mut dc },
            );
            let eps = 1e-6;
            let check = |name: &str, ana: &[f64], perturb: &dyn Fn(usize, f64) -> f64| {
                for (i, &a) in ana.iter().enumerate() {
                    let num = (perturb(i, eps) - perturb(i, -eps)) / (2.0 * eps);
                    assert!(
                        (num - a).abs() < 1e-6 + 1e-5 * a.abs(),
                        "{mode:?} prune={prune} d{name}[{i}]: {a} vs {num}"
                    );
                }
            };
            check("h0", &dh, &|i, e| {
                let mut x = h0.clone();
                x[i] += e;
                loss(&spec, &c, &s, &x, &w0, &gh, &gw, n)
            });
            check("w0", &dw, &|i, e| {
                let mut x = w0.clone();
                x[i] += e;
                loss(&spec, &c, &s, &h0, &x, &gh, &gw, n)
            });
            check("s", &ds, &|i, e| {
                let mut x = s.clone();
                x[i] += e;
                loss(&spec, &c, &x, &h0, &w0, &gh, &gw, n)
            });
            check("c", &dc, &|i, e| {
                let mut x = c.clone();
                x[i] += e;
                loss(&spec, &x, &s, &h0, &w0, &gh, &gw, n)
            });
        }
    }
}
