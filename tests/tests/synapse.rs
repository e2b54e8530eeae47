//! Presynaptic release: the seed's golden fixture, the backward scan against finite
//! differences, the fused CPU kernel against the host default, closed-form dynamics
//! (steady state under periodic drive, recovery time constants), bounds, stochastic release
//! and causality.
use proptest::prelude::*;
use protocell_core::backend::Backend;
use protocell_core::synapse::scalar::{self, idx, initial_state, state_width, Draw, Kinetics};
use protocell_core::synapse::scan::{self, Row, Stochastic};
use protocell_core::synapse::{
    canonical_step, ema_normalise, host_bwd, host_fwd, PresynMode, PresynSpec, SynapseOps, SynapticConfig,
};
use protocell_core::{RngKey, Tensor};
use protocell_cpu::{Cpu, CpuDevice};
use protocell_tests::{close, det_values, runner, shared_dir, Tol};
use serde_json::Value;

fn arr(v: &Value, key: &str) -> (Vec<usize>, Vec<f64>) {
    let a = &v[key];
    let shape = a["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let data = a["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    (shape, data)
}

/// `synapse.md` §10: 4 seed steps of `(drive, idx)` with B=2, H=3, T=6, K=4 from the fixture's
/// initial state match its edge outputs, final state, delay line and ema (atol 1e-6, rtol
/// 1e-5); the grid of release probabilities `p(C, PR, CL, d)` matches too.
#[test]
fn seed_mode_matches_the_golden_fixture() {
    let Some(dir) = shared_dir() else {
        println!("skipped: ../shared is not present (it holds spec/fixtures/presyn_canonical_v1.json)");
        return;
    };
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("spec/fixtures/presyn_canonical_v1.json")).unwrap())
            .unwrap();
    let cfg_json = fx["config_json"]["data"].as_str().unwrap();
    let seed_cfg: Value = serde_json::from_str(cfg_json).unwrap();
    // the live fields of the seed's configuration
    let mut live = serde_json::to_value(SynapticConfig::default()).unwrap();
    for (k, v) in live.as_object_mut().unwrap() {
        if let Some(x) = seed_cfg.get(k) {
            *v = x.clone();
        }
    }
    let cfg: SynapticConfig = serde_json::from_value(live).unwrap();
    let kin = Kinetics::<f64>::new(&cfg);
    let w = state_width(cfg.endo_delay);
    let (shape, _) = arr(&fx, "init_C");
    let (b, h, t) = (shape[0], shape[1], shape[2]);
    let r = b * h;
    let names = ["C", "BUF", "RRP", "RES", "PR", "CL", "E"];
    let load = |prefix: &str| {
        let mut s = vec![0f64; r * t * w];
        for (i, n) in names.iter().enumerate() {
            let (_, v) = arr(&fx, &format!("{prefix}_{n}"));
            for (x, val) in v.iter().enumerate() {
                s[x * w + i] = *val;
            }
        }
        let (_, d) = arr(&fx, &format!("{prefix}_DELAY"));
        for slot in 0..cfg.endo_delay {
            for x in 0..r * t {
                s[x * w + idx::DELAY + slot] = d[slot * r * t + x];
            }
        }
        s
    };
    let tol = |got: f64, want: f64| (got - want).abs() <= 1e-6 + 1e-5 * want.abs();
    let mut state = load("init");
    let mut ema = 1.0f64;
    for step in 0..4 {
        let (dshape, drive) = arr(&fx, &format!("drive_{step}"));
        let (_, idxs) = arr(&fx, &format!("idx_{step}"));
        let k = dshape[3];
        let idxs: Vec<usize> = idxs.iter().map(|&x| x as usize).collect();
        let mut e = canonical_step(&mut state, &drive, &idxs, (r, t, t, k), &kin, Some(cfg.barrier_strength));
        ema_normalise(&mut e, &mut ema);
        let (_, want) = arr(&fx, &format!("e_{step}"));
        for (i, (g, w)) in e.iter().zip(&want).enumerate() {
            assert!(tol(*g, *w), "step {step}: e[{i}] = {g}, fixture {w}");
        }
    }
    let want = load("final");
    for (i, (g, x)) in state.iter().zip(&want).enumerate() {
        assert!(tol(*g, *x), "final state [key {}, field {}] = {g}, fixture {x}", i / w, i % w);
    }
    let (_, want_ema) = arr(&fx, "ema_e");
    assert!(tol(ema, want_ema[0]), "ema {ema} vs {}", want_ema[0]);
    // p(C, PR, CL, d) on the fixture's grid: C ∈ 0..4 (9), PR, CL ∈ 0..1 (5), d ∈ −3..3 (7)
    let (_, grid) = arr(&fx, "rp_grid");
    let mut n = 0;
    for ci in 0..9 {
        for pi in 0..5 {
            for li in 0..5 {
                for di in 0..7 {
                    let (c, pr, cl, d) = (0.5 * ci as f64, 0.25 * pi as f64, 0.25 * li as f64, di as f64 - 3.0);
                    let (sy, _) = scalar::syt(c, &kin);
                    let p = (scalar::sigmoid(3.0 * sy + 2.0 * pr - 2.0 * (cl + kin.cpx_bias)) * scalar::sigmoid(d))
                        .clamp(0.0, 1.0);
                    assert!(tol(p, grid[n]), "p(C={c}, PR={pr}, CL={cl}, d={d}) = {p}, fixture {}", grid[n]);
                    n += 1;
                }
            }
        }
    }
}

fn spec_cfg(topk: usize) -> SynapticConfig {
    SynapticConfig { attn_topk: topk, ..SynapticConfig::default() }
}

/// Well-separated scores (no near-ties, so the top-k does not flip under a finite difference).
fn scores(n: usize, seed: u64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.37 - 3.0).collect();
    let mut r = protocell_core::rng::Philox::new(RngKey::new(seed));
    for i in (1..n).rev() {
        let j = r.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v.iter().map(|x| x + 0.01 * r.next_f64()).collect()
}

fn run_f64(g: &Row, kin: &Kinetics<f64>, st: Option<&Stochastic>, sc: &[f64], start: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut s = start.to_vec();
    let (mut e, mut m) = (vec![0.0; g.tq * g.tk], vec![0.0; g.tq * g.tk]);
    let mut snaps = vec![0.0; g.tq.div_ceil(g.chunk) * g.tk * g.width];
    scan::forward(g, kin, st, 0, sc, &mut s, &mut e, &mut m, Some(&mut snaps));
    (e, snaps)
}

/// The backward scan (chunked recomputation, state carried across queries, cached keys,
/// stochastic rows) equals central differences of the forward in f64.
#[test]
fn backward_scan_matches_finite_differences() {
    let cfg = spec_cfg(3);
    let kin = Kinetics::<f64>::new(&cfg);
    let w = state_width(cfg.endo_delay);
    for (tq, tk, chunk, causal, noisy) in [
        (6, 6, 2, true, false),
        (5, 8, 3, true, false),
        (7, 7, 7, true, true),
        (4, 6, 1, false, false),
        (5, 5, 2, false, true),
    ] {
        let g = Row { tq, tk, topk: 3, width: w, causal, chunk };
        let st = Stochastic { key: RngKey::new(11), frac: 0.5, cap: 8.0 };
        let st = noisy.then_some(&st);
        let sc = scores(tq * tk, tq as u64);
        // cached keys with a used state, new keys at their initial state
        let mut start = vec![0.0; tk * w];
        for (j, key) in start.chunks_mut(w).enumerate() {
            initial_state(&cfg, key);
            if j < tk - tq {
                key[idx::C] = 0.3 * j as f64;
                key[idx::RRP] = 4.0 - 0.5 * j as f64;
                key[idx::PR] = 0.5;
            }
        }
        let wts: Vec<f64> = (0..tq * tk).map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.4).collect();
        let loss = |sc: &[f64]| run_f64(&g, &kin, st, sc, &start).0.iter().zip(&wts).map(|(a, b)| a * b).sum::<f64>();
        let (_, snaps) = run_f64(&g, &kin, st, &sc, &start);
        let mut grad = vec![0.0; tq * tk];
        scan::backward(&g, &kin, st, 0, &sc, &start, &snaps, &wts, &mut grad);
        let h = 1e-6;
        for i in 0..tq * tk {
            let (mut a, mut b) = (sc.clone(), sc.clone());
            a[i] += h;
            b[i] -= h;
            let want = (loss(&a) - loss(&b)) / (2.0 * h);
            assert!(
                (grad[i] - want).abs() < 1e-5 * (1.0 + want.abs()),
                "tq {tq} tk {tk} chunk {chunk} causal {causal} noisy {noisy}: ∂/∂score[{i}] = {} vs {want}",
                grad[i]
            );
        }
    }
}

/// `e` of the CPU forward (no saving).
fn e1_again(sc: &[f32], s0: &[f32], spec: &PresynSpec, r: usize, tq: usize, tk: usize) -> <Cpu as Backend>::Tensor {
    let t = |v: &[f32], s: &[usize]| Cpu::from_f32(v, s, &CpuDevice).unwrap();
    Cpu::presyn_fwd(t(sc, &[r, tq, tk]), t(s0, &[r, tk - tq, spec.width()]), spec).unwrap().0
}

/// The CPU kernel (rows in parallel) equals the family's host default, and gradients through
/// `Autodiff<Cpu>` equal the default's backward.
#[test]
fn cpu_kernel_matches_the_default() {
    let mut run = runner(24);
    let strategy = (1usize..4, 1usize..7, 0usize..4, 1usize..5, any::<bool>(), any::<bool>(), any::<u64>());
    run.run(&strategy, |(r, tq, extra, topk, causal, noisy, seed)| {
        let tk = tq + extra;
        let cfg = spec_cfg(topk);
        let mut spec = PresynSpec::new(&cfg, if causal { PresynMode::Causal } else { PresynMode::Seed }).unwrap();
        if noisy {
            spec = spec.with_noise(RngKey::new(seed));
        }
        let w = spec.width();
        let sc = det_values(r * tq * tk, seed, -3.0, 3.0);
        let s0: Vec<f32> = (0..r * extra).flat_map(|_| spec.start_state(&[], 1)).collect();
        let dev = CpuDevice;
        let t = |v: &[f32], s: &[usize]| Cpu::from_f32(v, s, &dev).unwrap();
        let (e1, m1, st1) = Cpu::presyn_fwd(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), &spec).unwrap();
        let (e2, m2, st2) = host_fwd::<Cpu>(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), &spec).unwrap();
        for (what, a, b) in [("e", e1, e2), ("mask", m1, m2), ("state", st1, st2)] {
            let (a, b) = (Cpu::to_f32(a).unwrap(), Cpu::to_f32(b).unwrap());
            close(what, &a, &b, Tol { abs: 0.0, rel: 0.0 }).map_err(TestCaseError::fail)?;
        }
        let de = det_values(r * tq * tk, seed ^ 7, -1.0, 1.0);
        let g1 = Cpu::presyn_bwd(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), &spec, t(&de, &[r, tq, tk])).unwrap();
        let g2 = host_bwd::<Cpu>(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), &spec, t(&de, &[r, tq, tk])).unwrap();
        let g2 = Cpu::to_f32(g2).unwrap();
        close("dscores", &Cpu::to_f32(g1).unwrap(), &g2, Tol { abs: 0.0, rel: 0.0 }).map_err(TestCaseError::fail)?;
        // the backward from the forward's saved chunk-start states: the same bits
        let ((e3, _, _), saved) = Cpu::presyn_fwd_saving(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), &spec).unwrap();
        prop_assert_eq!(saved.is_some(), causal);
        close(
            "e (saving)",
            &Cpu::to_f32(e3).unwrap(),
            &Cpu::to_f32(e1_again(&sc, &s0, &spec, r, tq, tk)).unwrap(),
            Tol { abs: 0.0, rel: 0.0 },
        )
        .map_err(TestCaseError::fail)?;
        let g3 =
            Cpu::presyn_bwd_saved(t(&sc, &[r, tq, tk]), t(&s0, &[r, extra, w]), saved, &spec, t(&de, &[r, tq, tk]))
                .unwrap();
        close("dscores (saved)", &Cpu::to_f32(g3).unwrap(), &g2, Tol { abs: 0.0, rel: 0.0 })
            .map_err(TestCaseError::fail)?;
        Ok(())
    })
    .unwrap();
}

/// One key driven every `period` steps with the same drive: its readily-releasable pool
/// settles where release equals refill, `RRP* = period·prime/p*` (release `p*·RRP*` per
/// access, `prime·min(RES, 1)` refill per step while the reserve holds at least one vesicle) —
/// the Tsodyks–Markram steady state of this model.
#[test]
fn steady_state_under_periodic_drive() {
    let cfg = SynapticConfig { init_reserve: 1e6, ..SynapticConfig::default() };
    let kin = Kinetics::<f64>::new(&cfg);
    for (period, d) in [(4usize, 1.0f64), (10, 0.0), (25, 2.0)] {
        let mut s = vec![0.0; state_width(cfg.endo_delay)];
        initial_state(&cfg, &mut s);
        let mut p_last = 0.0;
        let mut rrp_before = 0.0;
        for step in 0..400 * period {
            let accessed = step % period == 0;
            let (a, dsum) = if accessed {
                let v = scalar::edge(&s, d, true, Draw::Mean, &kin);
                p_last = v.p;
                rrp_before = s[idx::RRP];
                (v.rel, d)
            } else {
                (0.0, 0.0)
            };
            scalar::key_step(&mut s, a, dsum, accessed, &kin);
        }
        let want = period as f64 * cfg.prime_rate / p_last;
        assert!(
            (rrp_before - want).abs() < 1e-6 * want.max(1.0),
            "period {period}, drive {d}: RRP before a release {rrp_before}, closed form {want} (p* = {p_last})"
        );
    }
}

/// After depletion, with no drive: the pool refills linearly at `prime_rate` vesicles per step
/// (reserve ≥ 1), priming recovers as `1 − (1 − PR₀)(1 − ν)ᵗ`, the clamp as
/// `1 − (1 − CL₀)·0.995ᵗ`, energy as `E_max − (E_max − E₀)(1 − φ)ᵗ`, and calcium decays as
/// `ρ_c`-powers while the buffer drains.
#[test]
fn recovery_after_depletion_follows_the_time_constants() {
    let cfg = SynapticConfig::default();
    let kin = Kinetics::<f64>::new(&cfg);
    let mut s = vec![0.0; state_width(cfg.endo_delay)];
    initial_state(&cfg, &mut s);
    (s[idx::RRP], s[idx::PR], s[idx::CL], s[idx::E], s[idx::RES]) = (0.0, 0.2, 0.1, 0.3, 10.0);
    let (pr0, cl0, e0) = (s[idx::PR], s[idx::CL], s[idx::E]);
    for t in 1..=60u32 {
        scalar::key_step(&mut s, 0.0, 0.0, false, &kin);
        let tf = t as f64;
        assert!((s[idx::RRP] - cfg.prime_rate * tf).abs() < 1e-9, "RRP at {t}: {}", s[idx::RRP]);
        let pr = 1.0 - (1.0 - pr0) * (1.0 - cfg.nsf_recover).powi(t as i32);
        assert!((s[idx::PR] - pr).abs() < 1e-9, "PR at {t}: {} vs {pr}", s[idx::PR]);
        let cl = 1.0 - (1.0 - cl0) * 0.995f64.powi(t as i32);
        assert!((s[idx::CL] - cl).abs() < 1e-9, "CL at {t}");
        let e = cfg.energy_max - (cfg.energy_max - e0) * (1.0 - cfg.energy_fill).powi(t as i32);
        assert!((s[idx::E] - e).abs() < 1e-9, "E at {t}");
    }
    // calcium without buffer: C(t) = ρ_c^t C₀
    let mut s = vec![0.0; state_width(cfg.endo_delay)];
    initial_state(&cfg, &mut s);
    let free = SynapticConfig { alpha_buf_on: 0.0, alpha_buf_off: 0.0, ..cfg.clone() };
    let kf = Kinetics::<f64>::new(&free);
    s[idx::C] = 2.0;
    for t in 1..=30 {
        scalar::key_step(&mut s, 0.0, 0.0, false, &kf);
        let want = 2.0 * (-(t as f64) / cfg.tau_c).exp();
        assert!((s[idx::C] - want).abs() < 1e-9, "C at {t}: {} vs {want}", s[idx::C]);
    }
}

/// Whatever the drives (huge, tiny, negative), every pool stays in its bounds.
#[test]
fn pools_stay_in_bounds() {
    let mut run = runner(64);
    run.run(&(proptest::collection::vec(-50.0f64..50.0, 64), 1usize..6, any::<bool>()), |(drives, topk, causal)| {
        let cfg = spec_cfg(topk);
        let kin = Kinetics::<f64>::new(&cfg);
        let w = state_width(cfg.endo_delay);
        let (tq, tk) = (8, 8);
        let g = Row { tq, tk, topk, width: w, causal, chunk: 3 };
        let mut s = vec![0.0; tk * w];
        for key in s.chunks_mut(w) {
            initial_state(&cfg, key);
        }
        let (mut e, mut m) = (vec![0.0; tq * tk], vec![0.0; tq * tk]);
        for _ in 0..5 {
            e.iter_mut().for_each(|x| *x = 0.0);
            m.iter_mut().for_each(|x| *x = 0.0);
            scan::forward(&g, &kin, None, 0, &drives, &mut s, &mut e, &mut m, None);
        }
        for key in s.chunks(w) {
            let ok = key[idx::C] >= 0.0
                && (0.0..=1.0).contains(&key[idx::BUF])
                && (0.0..=30.0).contains(&key[idx::RRP])
                && key[idx::RES] >= 0.0
                && (0.0..=1.0).contains(&key[idx::PR])
                && (0.0..=1.0).contains(&key[idx::CL])
                && (0.0..=cfg.energy_max).contains(&key[idx::E])
                && key.iter().all(|x| x.is_finite());
            prop_assert!(ok, "state out of bounds: {key:?}");
        }
        prop_assert!(e.iter().all(|x| x.is_finite() && *x >= 0.0));
        Ok(())
    })
    .unwrap();
}

/// Stochastic release averages to what it approximates. Its draw is a normal approximation of
/// Binomial(n, p̂) clamped to `[0, n]`, so its exact mean is the clamped normal's
/// `μ[Φ(b) − Φ(a)] + σ[φ(a) − φ(b)] + n[1 − Φ(b)]` (`a = −μ/σ`, `b = (n − μ)/σ`); the sample mean
/// of many draws matches it within 4 standard errors, and where both clamps are more than 3σ
/// away it equals the deterministic release `p·RRP` within 1 %.
#[test]
fn stochastic_release_averages_to_the_mean() {
    let cfg = SynapticConfig::default();
    let kin = Kinetics::<f64>::new(&cfg);
    let phi = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let cdf = |x: f64| 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
    let mut unclamped = 0;
    for (rrp, cap) in [(6.0, 8.0f32), (30.0, 30.0)] {
        let mut s = vec![0.0; state_width(cfg.endo_delay)];
        initial_state(&cfg, &mut s);
        s[idx::RRP] = rrp;
        let st = Stochastic { key: RngKey::new(5), frac: 1.0, cap };
        for d in [-1.0, -0.3, 0.5, 2.0, 4.0] {
            let v = scalar::edge(&s, d, true, Draw::Mean, &kin);
            let n = s[idx::RRP].min(cap as f64).round();
            let mu = n * v.p;
            let sd = (n * v.p * (1.0 - v.p) + 1e-6).sqrt();
            let (a, b) = (-mu / sd, (n - mu) / sd);
            let exact = mu * (cdf(b) - cdf(a)) + sd * (phi(a) - phi(b)) + n * (1.0 - cdf(b));
            let draws = 200_000u64;
            let total: f64 =
                (0..draws).map(|r| scalar::edge(&s, d, true, scan::draw(Some(&st), r, 0, 1), &kin).rel).sum();
            let avg = total / draws as f64;
            let se = sd / (draws as f64).sqrt();
            assert!(
                (avg - exact).abs() < 4.0 * se,
                "RRP {rrp}, drive {d}: sample mean {avg}, clamped-normal mean {exact} (se {se})"
            );
            if a < -3.0 && b > 3.0 {
                unclamped += 1;
                assert!(
                    (avg - v.rel).abs() < 0.01 * v.rel,
                    "drive {d}: stochastic mean {avg}, deterministic {}",
                    v.rel
                );
            }
        }
    }
    assert!(unclamped >= 2, "the comparison with the deterministic release was not exercised");
}

/// Causality: changing the scores of a later query never changes the edge outputs of an
/// earlier one (causal mode carries the state forward only).
#[test]
fn later_queries_never_change_earlier_outputs() {
    let cfg = spec_cfg(3);
    let spec = PresynSpec::new(&cfg, PresynMode::Causal).unwrap();
    let (tq, tk) = (8, 8);
    let sc = det_values(tq * tk, 3, -2.0, 2.0);
    let run = |sc: &[f32]| {
        let t = Tensor::<Cpu>::from_f32(sc, &[1, tq, tk], &CpuDevice).unwrap();
        let s0 = Tensor::<Cpu>::zeros(&[1, 0, spec.width()], &CpuDevice).unwrap();
        protocell_core::synapse::presyn(&t, &s0, &spec).unwrap().0.to_vec().unwrap()
    };
    let base = run(&sc);
    for later in 1..tq {
        let mut changed = sc.clone();
        for j in 0..tk {
            changed[later * tk + j] += 1.5 - (j as f32) * 0.7;
        }
        let out = run(&changed);
        assert_eq!(&out[..later * tk], &base[..later * tk], "query {later} changed an earlier output");
        assert_ne!(&out[later * tk..], &base[later * tk..], "the change at query {later} had no effect at all");
    }
}
