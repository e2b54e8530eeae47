//! Presynaptic release for one key and one edge, generic over the float type, with the
//! hand-written vector-Jacobian products. The CPU kernel calls these with `f32`, the tests with
//! `f64` against finite differences, and the GPU kernels mirror them line by line.
//!
//! **State of one key** (`STATE + endo_delay` floats, [`idx`]): residual calcium `C` (≥ 0),
//! calcium-buffer occupancy `BUF` ∈ [0, 1], readily-releasable pool `RRP` ∈ [0, 30] and
//! reserve `RES` ≥ 0 (vesicles), SNARE priming `PR` ∈ [0, 1], complexin clamp `CL` ∈ [0, 1],
//! energy `E` ∈ [0, E_max], and the endocytosis delay line `DELAY[0..n]` (oldest first).
//!
//! **One edge** (a query whose attention logit `d` — the drive — reaches key `j`), reading the
//! key's state before this step's update (`synapse.md` §1.3):
//!
//! * edge calcium `c = [ρ_c C + α_ca sp(d) − α_on C(1 − BUF) + α_off BUF]₀^∞`;
//! * synaptotagmin sensor `Syt(c) = 0.7 c/(c + K_f) + 0.3 c/(c + K_s) + g_doc2 σ(4(c − 0.12))`;
//! * release probability `p = [σ(3 Syt(c) + 2 PR − 2(CL + b_cpx)) · σ(d)]₀¹`;
//! * released vesicles `rel = p · RRP` (or, on a stochastic row, an approximate binomial of
//!   `n = round([RRP]₀^cap)` trials: `[n p̂ + √(n p̂(1 − p̂) + 10⁻⁶) ξ]₀ⁿ`, `p̂ = [p]_{10⁻⁶}^{1−10⁻⁶}`);
//! * quantal amplitude `q = σ(q_β(E − ½)) q_max`, edge output `e = rel · q`.
//!
//! **One step of every key** (§1.4), with `A` the vesicles released from the key in this step,
//! `D` the sum of the valid drives that reached it and `acc` = 1 when one did:
//!
//! * `C′ = [ρ_c C + α_ca sp(D)·acc − α_on C(1 − BUF) + α_off BUF]₀^∞`
//! * `BUF′ = [ρ_b BUF + α_on C(1 − BUF) − α_off BUF]₀¹`
//! * `RRP₁ = [RRP − A]₀^∞`; `RES₁ = RES + DELAY[0]`, the delay line shifts and takes `rec·A`
//! * `take = min(RES₁, 1)`; `RES′ = [RES₁ − prime·take]₀^∞`; `RRP′ = [RRP₁ + prime·take]₀³⁰`
//! * `PR′ = [PR(1 − uA) + ν(1 − PR)]₀¹`; `CL′ = [0.995 CL + 0.005 − uA]₀¹`
//! * `E′ = [E + φ(E_max − E) − υA]₀^{E_max}`
//!
//! Decay constants `ρ = e^{−1/τ}` are computed once on the host in f64. Clamps pass the
//! gradient on their closed interval (as PyTorch's `clamp`), and `min(RES₁, 1)` passes it
//! where `RES₁ ≤ 1`.
use super::config::{SynapticConfig, RRP_MAX};
use num_traits::Float;

/// Indices of the state of one key.
pub mod idx {
    /// Residual calcium.
    pub const C: usize = 0;
    /// Calcium-buffer occupancy.
    pub const BUF: usize = 1;
    /// Readily-releasable pool.
    pub const RRP: usize = 2;
    /// Reserve pool.
    pub const RES: usize = 3;
    /// SNARE priming.
    pub const PR: usize = 4;
    /// Complexin clamp.
    pub const CL: usize = 5;
    /// Energy.
    pub const E: usize = 6;
    /// First slot of the delay line.
    pub const DELAY: usize = 7;
}
use idx::*;

/// Floats of a key's state before the delay line.
pub const STATE: usize = 7;

/// Floats of a key's state for a delay line of `endo_delay` slots.
pub fn state_width(endo_delay: usize) -> usize {
    STATE + endo_delay
}

fn f<F: Float>(x: f64) -> F {
    F::from(x).unwrap()
}

/// `ln(1 + eˣ)` without overflow.
pub fn softplus<F: Float>(x: F) -> F {
    x.max(F::zero()) + (-x.abs()).exp().ln_1p()
}

/// `1/(1 + e⁻ˣ)`.
pub fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

fn clamp<F: Float>(x: F, lo: F, hi: F) -> F {
    x.max(lo).min(hi)
}

/// 1 where `x ∈ [lo, hi]`, else 0 (the gradient of a clamp).
fn inside<F: Float>(x: F, lo: F, hi: F) -> F {
    if x >= lo && x <= hi {
        F::one()
    } else {
        F::zero()
    }
}

/// The constants of the presynaptic equations, in the kernels' float type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kinetics<F> {
    /// `e^{−1/τ_c}`.
    pub rho_c: F,
    /// `e^{−1/τ_buf}`.
    pub rho_b: F,
    /// Calcium influx per softplus(drive).
    pub alpha_ca: F,
    /// Buffer binding.
    pub alpha_on: F,
    /// Buffer unbinding.
    pub alpha_off: F,
    /// Fast sensor K_d.
    pub kf: F,
    /// Slow sensor K_d.
    pub ks: F,
    /// Doc2 gain.
    pub doc2: F,
    /// Complexin bias.
    pub cpx_bias: F,
    /// Peak quantal amplitude.
    pub qmax: F,
    /// Energy-gate slope.
    pub qbeta: F,
    /// Priming rate.
    pub prime: F,
    /// Unpriming per released vesicle.
    pub unprime: F,
    /// NSF re-priming rate.
    pub nsf: F,
    /// Recycled fraction.
    pub rec: F,
    /// Energy refill rate.
    pub fill: F,
    /// Energy per released vesicle.
    pub use_: F,
    /// Energy ceiling.
    pub emax: F,
    /// Slots of the delay line.
    pub delay: usize,
}

impl<F: Float> Kinetics<F> {
    /// The constants of `cfg` (decay factors computed in f64).
    pub fn new(cfg: &SynapticConfig) -> Self {
        Self {
            rho_c: f(libm::exp(-1.0 / cfg.tau_c)),
            rho_b: f(libm::exp(-1.0 / cfg.tau_buf)),
            alpha_ca: f(cfg.alpha_ca),
            alpha_on: f(cfg.alpha_buf_on),
            alpha_off: f(cfg.alpha_buf_off),
            kf: f(cfg.syt_fast_kd),
            ks: f(cfg.syt_slow_kd),
            doc2: f(cfg.doc2_gain),
            cpx_bias: f(cfg.complexin_bias),
            qmax: f(cfg.qmax),
            qbeta: f(cfg.q_beta),
            prime: f(cfg.prime_rate),
            unprime: f(cfg.unprime_per_release),
            nsf: f(cfg.nsf_recover),
            rec: f(cfg.rec_rate),
            fill: f(cfg.energy_fill),
            use_: f(cfg.energy_use),
            emax: f(cfg.energy_max),
            delay: cfg.endo_delay,
        }
    }
}

/// The state of a key that has just appeared (`init_*` of the configuration, empty delay line).
pub fn initial_state<F: Float>(cfg: &SynapticConfig, out: &mut [F]) {
    out.iter_mut().for_each(|x| *x = F::zero());
    out[RRP] = f(cfg.init_rrp);
    out[RES] = f(cfg.init_reserve);
    out[PR] = f(cfg.init_snare);
    out[CL] = f(cfg.init_clamp);
    out[E] = f(cfg.init_energy);
}

/// `Syt(c)` and its derivative.
pub fn syt<F: Float>(c: F, k: &Kinetics<F>) -> (F, F) {
    let (a, b) = (c + k.kf, c + k.ks);
    let s = sigmoid(f::<F>(4.0) * (c - f(0.12)));
    let y = f::<F>(0.7) * c / a + f::<F>(0.3) * c / b + k.doc2 * s;
    let dy = f::<F>(0.7) * k.kf / (a * a) + f::<F>(0.3) * k.ks / (b * b) + k.doc2 * f(4.0) * s * (F::one() - s);
    (y, dy)
}

/// How one edge releases: deterministically, or as a binomial draw with normal noise `ξ`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw<F> {
    /// `rel = p · RRP`.
    Mean,
    /// `rel = [n p̂ + √(n p̂(1 − p̂) + 10⁻⁶) ξ]₀ⁿ` with `n = round([RRP]₀^cap)`.
    Binomial {
        /// Trial cap.
        cap: F,
        /// Standard normal draw of this edge.
        xi: F,
    },
}

/// Values of one edge: `(c, p, rel, e)` with the intermediates the VJP needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge<F> {
    /// Edge calcium before its clamp.
    pub xc: F,
    /// Release probability.
    pub p: F,
    /// Released vesicles (0 on an invalid edge).
    pub rel: F,
    /// Quantal amplitude.
    pub q: F,
    /// Edge output `rel · q`.
    pub e: F,
    /// `Syt′(c)`.
    pub dsy: F,
    /// `σ(3 Syt(c) + 2 PR − 2(CL + b_cpx))`.
    pub sz: F,
    /// `σ(d)`.
    pub sd: F,
    /// `σ(q_β(E − ½))`.
    pub sq: F,
    /// `sp(d)`.
    pub sp: F,
}

impl<F: Float> Edge<F> {
    /// The calcium influx of this edge's key when it is the only drive reaching it, and its
    /// derivative: exactly [`influx`]`(d, true)`, from the values already computed.
    pub fn influx(&self, k: &Kinetics<F>) -> (F, F) {
        (k.alpha_ca * self.sp, k.alpha_ca * self.sd)
    }
}

/// One edge from the key state `s` (pre-update) and the drive `d`; `valid` false gives zeros.
pub fn edge<F: Float>(s: &[F], d: F, valid: bool, draw: Draw<F>, k: &Kinetics<F>) -> Edge<F> {
    let (c0, b0) = (s[C], s[BUF]);
    let sp = softplus(d);
    let xc = k.rho_c * c0 + k.alpha_ca * sp - k.alpha_on * c0 * (F::one() - b0) + k.alpha_off * b0;
    let c = xc.max(F::zero());
    let (sy, dsy) = syt(c, k);
    let zp = f::<F>(3.0) * sy + f::<F>(2.0) * s[PR] - f::<F>(2.0) * (s[CL] + k.cpx_bias);
    let (sz, sd) = (sigmoid(zp), sigmoid(d));
    let p = clamp(sz * sd, F::zero(), F::one());
    let sq = sigmoid(k.qbeta * (s[E] - f(0.5)));
    let q = sq * k.qmax;
    let edge = Edge { xc, p, rel: F::zero(), q, e: F::zero(), dsy, sz, sd, sq, sp };
    if !valid {
        return edge;
    }
    let rel = match draw {
        Draw::Mean => p * s[RRP],
        Draw::Binomial { cap, xi } => {
            let n = clamp(s[RRP], F::zero(), cap).round();
            let ph = clamp(p, f(1e-6), f(1.0 - 1e-6));
            let sd = (n * ph * (F::one() - ph) + f(1e-6)).sqrt();
            clamp(n * ph + sd * xi, F::zero(), n)
        }
    };
    Edge { rel, e: rel * q, ..edge }
}

/// Gradients of one edge with respect to its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EdgeGrad<F> {
    /// `∂/∂d`.
    pub d: F,
    /// `∂/∂C, ∂/∂BUF, ∂/∂RRP, ∂/∂PR, ∂/∂CL, ∂/∂E` (state indices C..E; RES unused).
    pub s: [F; STATE],
}

/// VJP of [`edge`] for upstream gradients `g_rel` (on `rel`) and `g_e` (on `e`).
pub fn edge_vjp<F: Float>(s: &[F], d: F, valid: bool, draw: Draw<F>, k: &Kinetics<F>, g_rel: F, g_e: F) -> EdgeGrad<F> {
    if !valid {
        return EdgeGrad { d: F::zero(), s: [F::zero(); STATE] };
    }
    edge_vjp_at(s, draw, k, &edge(s, d, valid, draw, k), g_rel, g_e)
}

/// [`edge_vjp`] of a valid edge whose values `v` ([`edge`] of `s`, `d`, `draw`) are known.
pub fn edge_vjp_at<F: Float>(s: &[F], draw: Draw<F>, k: &Kinetics<F>, v: &Edge<F>, g_rel: F, g_e: F) -> EdgeGrad<F> {
    let mut g = EdgeGrad { d: F::zero(), s: [F::zero(); STATE] };
    let one = F::one();
    // e = rel·q
    let g_rel_tot = g_rel + g_e * v.q;
    let sq = v.sq;
    g.s[E] = g_e * v.rel * k.qbeta * sq * (one - sq) * k.qmax;
    // rel
    let g_p = match draw {
        Draw::Mean => {
            g.s[RRP] = g_rel_tot * v.p;
            g_rel_tot * s[RRP]
        }
        Draw::Binomial { cap, xi } => {
            let n = clamp(s[RRP], F::zero(), cap).round();
            let ph = clamp(v.p, f(1e-6), f(1.0 - 1e-6));
            let sd = (n * ph * (one - ph) + f(1e-6)).sqrt();
            let raw = n * ph + sd * xi;
            let d_ph = n + xi * n * (one - f::<F>(2.0) * ph) / (f::<F>(2.0) * sd);
            g_rel_tot * inside(raw, F::zero(), n) * d_ph * inside(v.p, f(1e-6), f(1.0 - 1e-6))
        }
    };
    // p = σ(zp)·σ(d)
    let (sz, sd, dsy) = (v.sz, v.sd, v.dsy);
    let g_praw = g_p * inside(sz * sd, F::zero(), one);
    let g_zp = g_praw * sd * sz * (one - sz);
    g.d = g_praw * sz * sd * (one - sd);
    g.s[PR] = f::<F>(2.0) * g_zp;
    g.s[CL] = -f::<F>(2.0) * g_zp;
    let g_xc = f::<F>(3.0) * g_zp * dsy * inside(v.xc, F::zero(), F::infinity());
    g.s[C] = g_xc * (k.rho_c - k.alpha_on * (one - s[BUF]));
    g.s[BUF] = g_xc * (k.alpha_on * s[C] + k.alpha_off);
    g.d = g.d + g_xc * k.alpha_ca * sd;
    g
}

/// One step of a key's state (in place): `a` vesicles released from it, `dsum` the sum of the
/// valid drives that reached it, `acc` whether one did. (One lane of [`keys_step`].)
pub fn key_step<F: Float>(s: &mut [F], a: F, dsum: F, acc: bool, k: &Kinetics<F>) {
    let w = state_width(k.delay);
    let (influx, _) = influx(dsum, acc, k);
    keys_step(&mut s[..w], 1, 1, &[a], &[influx], k);
}

/// VJP of [`key_step`]: `s` is the state before the step, `g` holds the gradient with respect
/// to the state after it and is overwritten with the gradient with respect to the state
/// before it; returns `(∂/∂a, ∂/∂dsum)`. (One lane of [`keys_step_vjp`].)
pub fn key_step_vjp<F: Float>(s: &[F], a: F, dsum: F, acc: bool, k: &Kinetics<F>, g: &mut [F]) -> (F, F) {
    let w = state_width(k.delay);
    let (inf, dinf) = influx(dsum, acc, k);
    let (mut ga, mut gd) = ([F::zero()], [F::zero()]);
    keys_step_vjp(&s[..w], 1, 1, &[a], &[inf], &[dinf], &mut g[..w], &mut ga, &mut gd, k);
    (ga[0], gd[0])
}

/// The calcium influx of a key whose valid drives sum to `dsum` (`α_ca·sp(dsum)` when one
/// reached it, else 0) and its derivative with respect to `dsum`.
pub fn influx<F: Float>(dsum: F, acc: bool, k: &Kinetics<F>) -> (F, F) {
    if acc {
        (k.alpha_ca * softplus(dsum), k.alpha_ca * sigmoid(dsum))
    } else {
        (F::zero(), F::zero())
    }
}

/// The field slices of keys stored structure-of-arrays: field `f` of key `j` at `f·stride + j`.
fn fields<F>(soa: &[F], stride: usize, n: usize) -> impl Iterator<Item = &[F]> {
    soa.chunks(stride).map(move |c| &c[..n])
}

/// One step of `n` keys at once (see the module docs for the equations), their state stored
/// structure-of-arrays with `stride` keys per field (`soa[f·stride + j]`), `a[j]` vesicles
/// released from key `j` and `influx[j]` its calcium influx ([`influx`]). Each lane computes
/// exactly what [`key_step`] computes; the loops vectorise.
pub fn keys_step<F: Float>(soa: &mut [F], stride: usize, n: usize, a: &[F], influx: &[F], k: &Kinetics<F>) {
    let (one, zero) = (F::one(), F::zero());
    let (a, influx) = (&a[..n], &influx[..n]);
    let (c, rest) = soa.split_at_mut(stride);
    let (b, rest) = rest.split_at_mut(stride);
    let (rrp, rest) = rest.split_at_mut(stride);
    let (res, rest) = rest.split_at_mut(stride);
    let (pr, rest) = rest.split_at_mut(stride);
    let (cl, rest) = rest.split_at_mut(stride);
    let (e, delay) = rest.split_at_mut(stride.min(rest.len()));
    let (c, b) = (&mut c[..n], &mut b[..n]);
    for j in 0..n {
        let (cj, bj) = (c[j], b[j]);
        c[j] = (k.rho_c * cj + influx[j] - k.alpha_on * cj * (one - bj) + k.alpha_off * bj).max(zero);
        b[j] = clamp(k.rho_b * bj + k.alpha_on * cj * (one - bj) - k.alpha_off * bj, zero, one);
    }
    let (rrp, res) = (&mut rrp[..n], &mut res[..n]);
    let d0: &[F] = if k.delay > 0 { &delay[..n] } else { &[] };
    for j in 0..n {
        let rrp1 = (rrp[j] - a[j]).max(zero);
        let res1 = if k.delay > 0 { res[j] + d0[j] } else { res[j] };
        let take = res1.min(one);
        res[j] = (res1 - k.prime * take).max(zero);
        rrp[j] = clamp(rrp1 + k.prime * take, zero, f(RRP_MAX));
    }
    if k.delay > 0 {
        for i in 0..k.delay - 1 {
            let (lo, hi) = delay.split_at_mut((i + 1) * stride);
            lo[i * stride..i * stride + n].copy_from_slice(&hi[..n]);
        }
        let last = &mut delay[(k.delay - 1) * stride..(k.delay - 1) * stride + n];
        for j in 0..n {
            last[j] = k.rec * a[j];
        }
    }
    let (pr, cl, e) = (&mut pr[..n], &mut cl[..n], &mut e[..n]);
    for j in 0..n {
        let p = pr[j];
        pr[j] = clamp(p * (one - k.unprime * a[j]) + k.nsf * (one - p), zero, one);
        cl[j] = clamp(f::<F>(0.995) * cl[j] + f(0.005) - k.unprime * a[j], zero, one);
        let x = e[j];
        e[j] = clamp(x + k.fill * (k.emax - x) - k.use_ * a[j], zero, k.emax);
    }
}

/// VJP of [`keys_step`] for `n` keys: `pre` is their state before the step (structure of
/// arrays, `stride` keys per field), `g` (same layout) holds the gradient with respect to the
/// state after the step and is overwritten with the gradient with respect to `pre`;
/// `ga[j]`, `gd[j]` receive `∂/∂a[j]` and `∂/∂dsum[j]` (`dinflux[j]` = ∂influx/∂dsum).
#[allow(clippy::too_many_arguments)]
pub fn keys_step_vjp<F: Float>(
    pre: &[F],
    stride: usize,
    n: usize,
    a: &[F],
    influx: &[F],
    dinflux: &[F],
    g: &mut [F],
    ga: &mut [F],
    gd: &mut [F],
    k: &Kinetics<F>,
) {
    let (one, zero) = (F::one(), F::zero());
    let mut pf = fields(pre, stride, n);
    let (c, b, rrp, res, pr, cl, e) = (
        pf.next().unwrap(),
        pf.next().unwrap(),
        pf.next().unwrap(),
        pf.next().unwrap(),
        pf.next().unwrap(),
        pf.next().unwrap(),
        pf.next().unwrap(),
    );
    let d0 = pf.next();
    let (gc, rest) = g.split_at_mut(stride);
    let (gb, rest) = rest.split_at_mut(stride);
    let (grrp, rest) = rest.split_at_mut(stride);
    let (gres, rest) = rest.split_at_mut(stride);
    let (gpr, rest) = rest.split_at_mut(stride);
    let (gcl, rest) = rest.split_at_mut(stride);
    let (ge, gdelay) = rest.split_at_mut(stride.min(rest.len()));
    for j in 0..n {
        let (cj, bj) = (c[j], b[j]);
        // C′ and BUF′
        let xc = k.rho_c * cj + influx[j] - k.alpha_on * cj * (one - bj) + k.alpha_off * bj;
        let gxc = gc[j] * inside(xc, zero, F::infinity());
        let xb = k.rho_b * bj + k.alpha_on * cj * (one - bj) - k.alpha_off * bj;
        let gxb = gb[j] * inside(xb, zero, one);
        gd[j] = gxc * dinflux[j];
        gc[j] = gxc * (k.rho_c - k.alpha_on * (one - bj)) + gxb * k.alpha_on * (one - bj);
        gb[j] = gxc * (k.alpha_on * cj + k.alpha_off) + gxb * (k.rho_b - k.alpha_on * cj - k.alpha_off);
        // pools
        let aj = a[j];
        let w = rrp[j] - aj;
        let rrp1 = w.max(zero);
        let res1 = match d0 {
            Some(d) if k.delay > 0 => res[j] + d[j],
            _ => res[j],
        };
        let take = res1.min(one);
        let gy = grrp[j] * inside(rrp1 + k.prime * take, zero, f(RRP_MAX));
        let gz = gres[j] * inside(res1 - k.prime * take, zero, F::infinity());
        let g_take = gy * k.prime - gz * k.prime;
        let g_res1 = gz + g_take * inside(res1, -F::infinity(), one);
        let gw = gy * inside(w, zero, F::infinity());
        grrp[j] = gw;
        gres[j] = g_res1;
        let mut gaj = -gw;
        if k.delay > 0 {
            gaj = gaj + gdelay[(k.delay - 1) * stride + j] * k.rec;
        }
        // PR′, CL′, E′
        let p = pr[j];
        let gxp = gpr[j] * inside(p * (one - k.unprime * aj) + k.nsf * (one - p), zero, one);
        gpr[j] = gxp * (one - k.unprime * aj - k.nsf);
        gaj = gaj - gxp * p * k.unprime;
        let gxl = gcl[j] * inside(f::<F>(0.995) * cl[j] + f(0.005) - k.unprime * aj, zero, one);
        gcl[j] = gxl * f(0.995);
        gaj = gaj - gxl * k.unprime;
        let x = e[j];
        let gxe = ge[j] * inside(x + k.fill * (k.emax - x) - k.use_ * aj, zero, k.emax);
        ge[j] = gxe * (one - k.fill);
        gaj = gaj - gxe * k.use_;
        ga[j] = gaj;
        // the delay line: DELAY[0] fed RES₁, DELAY[i] became DELAY[i − 1]
        if k.delay > 0 {
            for i in (1..k.delay).rev() {
                gdelay[i * stride + j] = gdelay[(i - 1) * stride + j];
            }
            gdelay[j] = g_res1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn kin() -> Kinetics<f64> {
        Kinetics::new(&SynapticConfig::default())
    }

    fn state(seed: u64) -> Vec<f64> {
        let mut r = crate::rng::Philox::new(crate::RngKey::new(seed));
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * r.next_f64();
        vec![
            u(0.0, 2.0),
            u(0.05, 0.95),
            u(0.5, 20.0),
            u(0.2, 18.0),
            u(0.05, 0.95),
            u(0.05, 0.95),
            u(0.1, 0.9),
            u(0.0, 1.0),
            u(0.0, 1.0),
            u(0.0, 1.0),
        ]
    }

    /// Central difference of `fun` at `x` along coordinate `i`.
    fn fd(x: &[f64], i: usize, fun: &dyn Fn(&[f64]) -> f64) -> f64 {
        let h = 1e-6;
        let (mut a, mut b) = (x.to_vec(), x.to_vec());
        a[i] += h;
        b[i] -= h;
        (fun(&a) - fun(&b)) / (2.0 * h)
    }

    #[test]
    fn edge_vjp_matches_finite_differences() {
        let k = kin();
        for seed in 0..20u64 {
            let s = state(seed);
            for (d, draw) in [
                (0.3, Draw::Mean),
                (-1.7, Draw::Mean),
                (2.5, Draw::Mean),
                (0.4, Draw::Binomial { cap: 8.0, xi: 0.3 }),
                (1.1, Draw::Binomial { cap: 8.0, xi: -0.8 }),
            ] {
                let (w_rel, w_e) = (0.37, -1.3);
                // x = [state..., d]
                let mut x = s.clone();
                x.push(d);
                let fun = |x: &[f64]| {
                    let v = edge(&x[..10], x[10], true, draw, &k);
                    w_rel * v.rel + w_e * v.e
                };
                let g = edge_vjp(&s, d, true, draw, &k, w_rel, w_e);
                let want_d = fd(&x, 10, &fun);
                assert!((g.d - want_d).abs() < 1e-6 * (1.0 + want_d.abs()), "seed {seed}, d {d}: {} vs {want_d}", g.d);
                for i in [C, BUF, PR, CL, E] {
                    let w = fd(&x, i, &fun);
                    assert!((g.s[i] - w).abs() < 1e-6 * (1.0 + w.abs()), "seed {seed}: state {i}: {} vs {w}", g.s[i]);
                }
                if draw == Draw::Mean {
                    let w = fd(&x, RRP, &fun);
                    assert!((g.s[RRP] - w).abs() < 1e-6 * (1.0 + w.abs()));
                }
            }
        }
    }

    #[test]
    fn key_step_vjp_matches_finite_differences() {
        let k = kin();
        let w: Vec<f64> = (0..10).map(|i| 0.3 + 0.17 * i as f64 * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        for seed in 0..30u64 {
            let s = state(seed);
            for (a, dsum, acc) in [(0.4, 0.7, true), (2.5, -1.2, true), (0.0, 0.0, false), (0.05, 3.0, true)] {
                // x = [state..., a, dsum]
                let mut x = s.clone();
                x.extend([a, dsum]);
                let fun = |x: &[f64]| {
                    let mut s2 = x[..10].to_vec();
                    key_step(&mut s2, x[10], x[11], acc, &k);
                    s2.iter().zip(&w).map(|(p, q)| p * q).sum::<f64>()
                };
                let mut g = w.clone();
                let (ga, gd) = key_step_vjp(&s, a, dsum, acc, &k, &mut g);
                for (i, gi) in g.iter().enumerate() {
                    let want = fd(&x, i, &fun);
                    assert!((gi - want).abs() < 1e-6 * (1.0 + want.abs()), "seed {seed}, slot {i}: {gi} vs {want}");
                }
                let (wa, wd) = (fd(&x, 10, &fun), fd(&x, 11, &fun));
                assert!((ga - wa).abs() < 1e-6 * (1.0 + wa.abs()), "seed {seed}: ∂a {ga} vs {wa}");
                assert!((gd - wd).abs() < 1e-6 * (1.0 + wd.abs()), "seed {seed}: ∂D {gd} vs {wd}");
            }
        }
    }
}
