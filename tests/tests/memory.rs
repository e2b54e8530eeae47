//! Peak memory of a training step must not grow with the step count. (Its own test binary:
//! the CPU backend's live-memory counters are process-wide.)
use protocell_runtime::{new_session, registry, Device, RunConfig};
use serde_json::json;

/// Every model of the registry (with dropout and pruning on where the model has them): live
/// tensors and bytes between steps and the peak within a step are the same at every step
/// after warm-up.
#[test]
fn live_tensors_and_bytes_stay_flat_across_steps() {
    for entry in registry::models() {
        let model = entry.name;
        let mut v = registry::preset(model, Some("tiny")).unwrap().to_value();
        let mut extra = json!({});
        if v["model"].get("dropout").is_some() {
            extra["dropout"] = json!(0.1);
        }
        if v["model"].get("pruning").is_some() {
            extra["pruning"] = json!({"rate": 0.3, "threshold": 0.3});
        }
        v["train"]["steps"] = json!(80);
        v["train"]["batch_size"] = json!(4);
        v["train"]["data"]["corpus_bytes"] = json!(50_000);
        for (k, x) in extra.as_object().unwrap() {
            v["model"][k] = x.clone();
        }
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
            assert_eq!(m.0, first.0, "{model}: live tensors changed at sample {i}: {samples:?}");
            assert_eq!(m.1, first.1, "{model}: live bytes changed at sample {i}: {samples:?}");
            assert_eq!(m.2, first.2, "{model}: peak bytes of a step changed at sample {i}: {samples:?}");
        }
        // between steps only the parameters, the two AdamW moments and the model's buffers are
        // alive (plus slack for small constants)
        let (params, buffers) = (s.num_params(), s.num_buffer_values());
        assert!(
            first.1 <= params * 4 * 3 + buffers * 4 + 4096,
            "{model}: live bytes {} for {params} parameters and {buffers} buffer values",
            first.1
        );
        drop(s);
    }
}
