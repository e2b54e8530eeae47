//! Peak memory of a training step must not grow with the step count. (Its own test binary:
//! the CPU backend's live-memory counters are process-wide.)
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::json;

#[test]
fn live_tensors_and_bytes_stay_flat_across_steps() {
    let mut v = registry::preset("gpt", Some("tiny")).unwrap().to_value();
    v["train"]["steps"] = json!(40);
    v["train"]["batch_size"] = json!(4);
    v["train"]["data"]["corpus_bytes"] = json!(50_000);
    v["model"]["dropout"] = json!(0.1);
    let run = RunConfig::from_value(v).unwrap();
    let mut s = new_session(run, Device::Cpu).unwrap();
    let mut samples = Vec::new();
    for step in 0..30 {
        s.train_step().unwrap();
        protocell_cpu::reset_peak();
        s.train_step().unwrap();
        let m = s.memory().unwrap();
        if step >= 2 {
            samples.push((m.live_tensors, m.live_bytes, m.peak_bytes));
        }
    }
    let first = samples[0];
    for (i, m) in samples.iter().enumerate() {
        assert_eq!(m.0, first.0, "live tensors changed at sample {i}: {samples:?}");
        assert_eq!(m.1, first.1, "live bytes changed at sample {i}: {samples:?}");
        assert_eq!(m.2, first.2, "peak bytes of a step changed at sample {i}: {samples:?}");
    }
    // parameters (tiny preset ≈ 120k) + two AdamW moments, in bytes, with slack for the
    // position embedding and norms: live memory between steps is the model and optimiser
    let params = s.num_params();
    assert!(first.1 <= params * 4 * 3 + 4096, "live bytes {} for {} parameters", first.1, params);
}
