//! Incremental decoding (key/value cache) against full recomputation, for every model ×
//! preset of the registry: the same logits (to 1e-4: the cached path runs the same
//! operations on different shapes, so matrix products may round differently) and the same
//! greedy tokens, within the context and across window slides.
use protocell_core::models::{Architecture, LanguageModel, SynapticGpt, SynapticGptConfig};
use protocell_core::nn::{Decoder, ForwardCtx, KvCache};
use protocell_core::rng::RngKey;
use protocell_core::synapse::PresynMode;
use protocell_core::Ids;
use protocell_cpu::{Cpu, CpuDevice};
use protocell_runtime::{registry, with_arch};

type A = protocell_core::autodiff::Autodiff<Cpu>;

/// Logits after the last token of `window`, by a full forward.
fn full_last<M: LanguageModel<A>>(m: &M, window: &[u32]) -> Vec<f32> {
    let x = Ids::<A>::from_u32(window, &[1, window.len()], &CpuDevice).unwrap();
    let l = m.forward(&x, &mut ForwardCtx::eval()).unwrap();
    let v = m.vocab_size();
    l.narrow(1, window.len() - 1, 1).unwrap().reshape(&[v]).unwrap().to_vec().unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Greedy generation of `n_new` tokens after `prompt`, cached and recomputed side by side.
/// The reference window follows the documented rule: a token arriving at a full window
/// first drops the oldest ⌊C/2⌋ tokens.
fn check_greedy<M: LanguageModel<A>>(what: &str, m: &M, prompt: &[u32], n_new: usize) {
    let ctx = m.context_len();
    let shift = (ctx / 2).max(1);
    let mut dec = Decoder::new(m, &CpuDevice).unwrap();
    let mut window: Vec<u32> = Vec::new();
    let push = |w: &mut Vec<u32>, t: u32| {
        if w.len() == ctx {
            w.drain(..shift);
        }
        w.push(t);
    };
    for &t in prompt {
        push(&mut window, t);
    }
    let mut cached = dec.feed(prompt).unwrap();
    for step in 0..n_new {
        assert_eq!(dec.window(), &window[..], "{what}: window at step {step}");
        let full = full_last(m, &window);
        let d = max_diff(&cached, &full);
        assert!(d <= 1e-4, "{what}: step {step} (window {}): cached logits differ by {d}", window.len());
        let (a, b) = (argmax(&cached), argmax(&full));
        assert_eq!(a, b, "{what}: step {step}: greedy tokens differ");
        push(&mut window, a);
        cached = dec.feed(&[a]).unwrap();
    }
}

#[test]
fn cached_decoding_equals_recomputation_for_every_model_and_preset() {
    for m in registry::models() {
        for (preset, _) in &m.presets {
            let r: Result<(), protocell_core::error::Error> = with_arch!(m.name, A, |M| (|| {
                let p = <<M as LanguageModel<A>>::Config as Architecture>::presets()
                    .into_iter()
                    .find(|p| p.name == *preset)
                    .unwrap();
                let model = <M as LanguageModel<A>>::init(&p.model, RngKey::new(11), &CpuDevice)?;
                let ctx = model.context_len();
                let v = model.vocab_size() as u32;
                let prompt: Vec<u32> = (0..5u32).map(|k| (k * 13 + 2) % v).collect();
                // small contexts: slide the window twice; large ones: stay within it (cost)
                let n_new = if ctx <= 64 { 2 * ctx + 7 } else { 24 };
                let what = format!("{}/{preset}", m.name);
                if m.name == "synaptic-gpt" && model_is_seed_mode(&p.model) {
                    return Ok(()); // decoding carries the seed's state: its own test below
                }
                check_greedy(&what, &model, &prompt, n_new);
                Ok(())
            })());
            r.unwrap();
        }
    }
}

fn model_is_seed_mode<C: Architecture>(c: &C) -> bool {
    serde_json::to_value(c).unwrap()["synapses"] == "seed"
}

fn synaptic(mode: PresynMode) -> SynapticGpt<A> {
    let p = SynapticGptConfig::presets().into_iter().find(|p| p.name == "tiny").unwrap();
    let cfg = SynapticGptConfig { synapses: mode, ..p.model };
    SynapticGpt::init(&cfg, RngKey::new(5), &CpuDevice).unwrap()
}

#[test]
fn synaptic_off_and_causal_decode_like_the_full_forward_with_the_pools_carried() {
    for mode in [PresynMode::Off, PresynMode::Causal] {
        let m = synaptic(mode);
        check_greedy(&format!("synaptic-gpt {mode:?}"), &m, &[1, 2, 3], 80);
    }
    // the pools really are carried: their per-key state grows with the cache and moves
    let m = synaptic(PresynMode::Causal);
    let mut cache = KvCache::<A>::new(1, &CpuDevice).unwrap();
    let ids = |t: &[u32]| Ids::<A>::from_u32(t, &[1, t.len()], &CpuDevice).unwrap();
    m.forward_cached(&ids(&[4, 5, 6]), &mut cache).unwrap();
    let s1 = cache.layers[0].state.as_ref().unwrap().to_vec().unwrap();
    assert_eq!(cache.layers[0].state.as_ref().unwrap().shape()[1], 3);
    m.forward_cached(&ids(&[7]), &mut cache).unwrap();
    let st = cache.layers[0].state.as_ref().unwrap();
    assert_eq!(st.shape()[1], 4);
    let s2 = st.to_vec().unwrap();
    let w = st.shape()[2];
    // key 0's pools took one more step
    assert!(s1[..w].iter().zip(&s2[..w]).any(|(a, b)| a != b));
}

#[test]
fn seed_mode_decoding_continues_the_seeds_state_across_calls() {
    let m = synaptic(PresynMode::Seed);
    let prompt = [3u32, 1, 4, 1, 5, 9];
    // the first call starts from fresh pools: the full forward
    let mut dec = Decoder::new(&m, &CpuDevice).unwrap();
    let first = dec.feed(&prompt).unwrap();
    assert!(max_diff(&first, &full_last(&m, &prompt)) <= 1e-4);
    // later calls read the carried (depleted) pools: no longer the fresh-state forward
    let mut window = prompt.to_vec();
    let mut differs = false;
    for t in [2u32, 6, 5, 3, 5] {
        let l = dec.feed(&[t]).unwrap();
        window.push(t);
        assert!(l.iter().all(|x| x.is_finite()));
        differs |= max_diff(&l, &full_last(&m, &window)) > 1e-4;
    }
    assert!(differs, "seed-mode decoding should carry the presynaptic state across calls");
}

#[test]
fn feeding_in_bulk_or_token_by_token_gives_the_same_window_and_logits() {
    let m = synaptic(PresynMode::Causal);
    let ctx = m.context_len();
    let stream: Vec<u32> = (0..(2 * ctx + 9) as u32).map(|k| (k * 31 + 7) % 256).collect();
    let mut a = Decoder::new(&m, &CpuDevice).unwrap();
    let la = a.feed(&stream).unwrap();
    let mut b = Decoder::new(&m, &CpuDevice).unwrap();
    let mut lb = Vec::new();
    for chunk in stream.chunks(7) {
        lb = b.feed(chunk).unwrap();
    }
    assert_eq!(a.window(), b.window());
    assert!(a.window().len() <= ctx);
    assert!(max_diff(&la, &lb) <= 1e-4);
}

#[test]
fn caches_refuse_what_does_not_fit_and_recover_from_errors() {
    let m = synaptic(PresynMode::Causal);
    let ctx = m.context_len();
    let ids = |t: &[u32]| Ids::<A>::from_u32(t, &[1, t.len()], &CpuDevice).unwrap();
    let mut cache = KvCache::<A>::new(1, &CpuDevice).unwrap();
    // past the context
    let long: Vec<u32> = (0..ctx as u32 + 1).collect();
    assert!(m.forward_cached(&ids(&long), &mut cache).is_err());
    assert_eq!(cache.len(), 0);
    // wrong batch
    let two = Ids::<A>::from_u32(&[1, 2], &[2, 1], &CpuDevice).unwrap();
    assert!(m.forward_cached(&two, &mut cache).is_err());
    // another model's cache
    m.forward_cached(&ids(&[1, 2]), &mut cache).unwrap();
    let gpt = protocell_core::models::Gpt::<A>::init(
        &protocell_core::models::GptConfig { ctx_len: 16, n_layer: 1, n_head: 1, d_model: 8, ..Default::default() },
        RngKey::new(1),
        &CpuDevice,
    )
    .unwrap();
    let e = gpt.forward_cached(&ids(&[1]), &mut cache).unwrap_err();
    assert!(e.to_string().contains("belongs to"), "{e}");
    assert_eq!(cache.len(), 2);
    // an out-of-vocabulary token fails the call and leaves the decoder usable
    let mut dec = Decoder::new(&m, &CpuDevice).unwrap();
    dec.feed(&[1, 2, 3]).unwrap();
    assert!(dec.feed(&[9999]).is_err());
    assert_eq!(dec.window(), &[1, 2, 3]);
    let after = dec.feed(&[4]).unwrap();
    assert!(max_diff(&after, &full_last(&m, &[1, 2, 3, 4])) <= 1e-4);
    assert!(KvCache::<A>::new(0, &CpuDevice).is_err());
    assert!(Decoder::new(&m, &CpuDevice).unwrap().feed(&[]).is_err());
}
