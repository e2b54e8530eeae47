//! `Autodiff<B>` must run every fused op of every op family through `B`'s own kernel: a
//! forgotten override would silently fall back to the default composition of primitives
//! (correct, but slow). `Spy` (see `protocell_tests::spy`) is the CPU backend with every fused
//! op wrapped so that it notes its name; each op is then called through `Autodiff<Spy>` — forwards with a backward pass
//! through them — and the spy must have seen exactly the op's own kernel(s).
//!
//! Adding an op to a family means adding its name to the family's `OPS` list and a call
//! below; the test fails until both exist.
use protocell_core::backend::{AdamWStep, AttnDropout, AttnSpec, Backend, Dist, NnOps};
use protocell_core::cell::{CellMode, CellOps, ColonySpec};
use protocell_core::rng::RngKey;
use protocell_core::synapse::{PresynMode, PresynSpec, SynapseOps, SynapticConfig};
use protocell_core::{Autodiff, Tensor};
use protocell_cpu::CpuDevice;
use protocell_tests::spy::{take_seen, Spy};
use std::collections::BTreeSet;

type A = Autodiff<Spy>;
type P = <A as Backend>::Tensor;

fn param(shape: &[usize], seed: u64) -> Tensor<A> {
    Tensor::<A>::random(Dist::Uniform { lo: 0.1, hi: 0.9 }, RngKey::new(seed), shape, &CpuDevice)
        .unwrap()
        .require_grad()
}

fn p(t: &Tensor<A>) -> P {
    t.prim().clone()
}

/// Sums every output into a scalar and runs the backward pass.
fn backward(outs: &[P]) {
    let mut loss: Option<Tensor<A>> = None;
    for o in outs {
        let s = Tensor::<A>::from_prim(o.clone()).sum_all().unwrap();
        loss = Some(match loss {
            Some(l) => l.add(&s).unwrap(),
            None => s,
        });
    }
    loss.unwrap().backward().unwrap();
}

/// Runs `f` and checks that the spy saw exactly `want`.
fn expect(what: &str, want: &[&'static str], f: impl FnOnce()) {
    take_seen();
    f();
    let seen = take_seen();
    let want: BTreeSet<&'static str> = want.iter().copied().collect();
    assert_eq!(seen, want, "{what}: Autodiff<B> did not run (only) B's fused kernels {want:?}");
}

#[test]
fn autodiff_forwards_every_fused_op_to_the_backend() {
    let mut covered: BTreeSet<&'static str> = BTreeSet::new();
    let mut check = |what: &str, want: &[&'static str], f: &dyn Fn()| {
        expect(what, want, f);
        covered.extend(want.iter().copied());
    };
    let x = param(&[2, 3, 8], 1);
    let g = param(&[8], 2);
    let b = param(&[8], 3);
    check("layer norm", &["layer_norm_fwd", "layer_norm_bwd"], &|| {
        let (y, _, _) = A::layer_norm_fwd(p(&x), p(&g), p(&b), 1e-5).unwrap();
        backward(&[y]);
    });
    check("layer norm backward", &["layer_norm_bwd"], &|| {
        let (_, m, r) = A::layer_norm_fwd(p(&x), p(&g), p(&b), 1e-5).unwrap();
        take_seen();
        A::layer_norm_bwd(p(&x), p(&g), m, r, p(&x)).unwrap();
    });
    check("rms norm", &["rms_norm_fwd", "rms_norm_bwd"], &|| {
        let (y, _) = A::rms_norm_fwd(p(&x), p(&g), 1e-5).unwrap();
        backward(&[y]);
    });
    check("rms norm backward", &["rms_norm_bwd"], &|| {
        let (_, r) = A::rms_norm_fwd(p(&x), p(&g), 1e-5).unwrap();
        take_seen();
        A::rms_norm_bwd(p(&x), p(&g), r, p(&x)).unwrap();
    });
    let (q, k, v) = (param(&[2, 4, 8], 4), param(&[2, 5, 8], 5), param(&[2, 5, 6], 6));
    check("attention", &["attention_fwd", "attention_bwd"], &|| {
        let (o, _) = A::attention_fwd(p(&q), p(&k), p(&v), true, 0.3).unwrap();
        backward(&[o]);
    });
    check("attention backward", &["attention_bwd"], &|| {
        let (o, lse) = A::attention_fwd(p(&q), p(&k), p(&v), false, 0.3).unwrap();
        take_seen();
        let dout = A::full(1.0, &[2, 4, 6], &CpuDevice).unwrap();
        A::attention_bwd(p(&q), p(&k), p(&v), o, lse, dout, false, 0.3).unwrap();
    });
    let qkv = param(&[2, 5, 3, 2, 4], 7);
    let spec = AttnSpec { causal: true, scale: 0.5, dropout: Some(AttnDropout { p: 0.2, key: RngKey::new(9) }) };
    check("self-attention", &["self_attention_fwd", "self_attention_bwd"], &|| {
        let (o, _) = A::self_attention_fwd(p(&qkv), &spec).unwrap();
        backward(&[o]);
    });
    check("self-attention backward", &["self_attention_bwd"], &|| {
        let (o, lse) = A::self_attention_fwd(p(&qkv), &spec).unwrap();
        take_seen();
        let dout = A::full(1.0, &[2, 5, 2, 4], &CpuDevice).unwrap();
        A::self_attention_bwd(p(&qkv), o, lse, dout, &spec).unwrap();
    });
    let logits = param(&[6, 10], 8);
    let ids = || A::ids_from_u32(&[1, 2, 3, 9, 0, 4], &[6], &CpuDevice).unwrap();
    check("cross-entropy", &["cross_entropy_fwd", "cross_entropy_bwd"], &|| {
        let (l, _) = A::cross_entropy_fwd(p(&logits), ids()).unwrap();
        backward(&[l]);
    });
    check("cross-entropy backward", &["cross_entropy_bwd"], &|| {
        let (_, lse) = A::cross_entropy_fwd(p(&logits), ids()).unwrap();
        take_seen();
        A::cross_entropy_bwd(p(&logits), ids(), lse, A::full(1.0, &[], &CpuDevice).unwrap()).unwrap();
    });
    let (w, bias) = (param(&[5, 8], 10), param(&[5], 11));
    check("linear", &["linear"], &|| {
        let y = A::linear(p(&x), p(&w), Some(p(&bias))).unwrap();
        backward(&[y]);
    });
    check("sum of squares", &["sum_squares"], &|| {
        A::sum_squares(p(&x)).unwrap();
    });
    check("adamw", &["adamw_step"], &|| {
        let h = AdamWStep::new(1e-3, 0.9, 0.999, 1e-8, 0.1, 1);
        A::adamw_step(p(&g), p(&b), p(&g), p(&b), &h).unwrap();
    });
    let (t, n) = (3, 4);
    let h0 = param(&[t, n, 4], 12);
    let w0 = param(&[t, n, n], 13);
    let stim = param(&[t, n], 14);
    let coeffs = param(&[9], 15);
    let cs = ColonySpec::new(CellMode::Sound, 2);
    check("colony", &["colony_fwd", "colony_bwd"], &|| {
        let (h, w, _) = A::colony_fwd(p(&h0), p(&w0), p(&stim), p(&coeffs), &cs).unwrap();
        backward(&[h, w]);
    });
    check("colony with one output used", &["colony_fwd", "colony_bwd"], &|| {
        let (_, w, _) = A::colony_fwd(p(&h0), p(&w0), p(&stim), p(&coeffs), &cs).unwrap();
        backward(&[w]);
    });
    check("colony backward", &["colony_bwd"], &|| {
        let z = |s: &[usize]| A::full(0.5, s, &CpuDevice).unwrap();
        A::colony_bwd(p(&h0), p(&w0), p(&stim), p(&coeffs), &cs, z(&[t, n, 4]), z(&[t, n, n])).unwrap();
    });
    let scores = param(&[6, 5, 7], 16);
    let state0 = Tensor::<A>::zeros(&[6, 2, 10], &CpuDevice).unwrap();
    let cfg = SynapticConfig { attn_topk: 3, ..SynapticConfig::default() };
    for mode in [PresynMode::Causal, PresynMode::Seed] {
        let spec = PresynSpec::new(&cfg, mode).unwrap();
        check("presynaptic release", &["presyn_fwd", "presyn_bwd"], &|| {
            let (e, _, _) = A::presyn_fwd(p(&scores), p(&state0), &spec).unwrap();
            backward(&[e]);
        });
        check("presynaptic backward", &["presyn_bwd"], &|| {
            let de = A::full(1.0, &[6, 5, 7], &CpuDevice).unwrap();
            A::presyn_bwd(p(&scores), p(&state0), &spec, de).unwrap();
        });
    }
    let families: BTreeSet<&'static str> = <Spy as NnOps<Spy>>::OPS
        .iter()
        .chain(<Spy as CellOps<Spy>>::OPS)
        .chain(<Spy as SynapseOps<Spy>>::OPS)
        .copied()
        .collect();
    assert_eq!(covered, families, "every op of every family must be exercised above");
}

/// The spy itself notices a fallback: without the override, Autodiff's default composition
/// runs and the backend's kernel is never called.
#[test]
fn a_missing_override_is_noticed() {
    take_seen();
    let x = param(&[2, 8], 1);
    let g = param(&[8], 2);
    let b = param(&[8], 3);
    let (y, _, _) = protocell_core::backend::layer_norm_fwd::<A>(p(&x), p(&g), p(&b), 1e-5).unwrap();
    backward(&[y]);
    assert!(!take_seen().contains("layer_norm_fwd"), "the composition does not reach the fused kernel");
}
