//! Every model × preset of the registry: build, two training steps, save, load — the same
//! logits to the bit, and the reloaded optimizer takes the same next step.
use protocell_core::record::Checkpoint;
use protocell_runtime::embed::{self, ModelSpec, Optimizer, OptimizerConfig};
use protocell_runtime::{registry, Device};

#[test]
fn every_model_and_preset_trains_saves_and_reloads() {
    let models = registry::models();
    assert!(models.iter().any(|m| m.name == registry::default_model()));
    for m in &models {
        assert!(m.presets.iter().any(|(p, _)| *p == "tiny"), "{}: every model needs a tiny preset for CI", m.name);
        for (preset, _) in &m.presets {
            let what = format!("{}/{preset}", m.name);
            let spec =
                ModelSpec::from_json(&format!(r#"{{"arch": "{}", "preset": "{preset}", "seed": 4}}"#, m.name)).unwrap();
            let mut model = embed::create(&spec, Device::Cpu).unwrap();
            let seq = model.context_len().min(16);
            let v = model.vocab_size() as u32;
            let x: Vec<u32> = (0..2 * seq as u32).map(|k| (k * 7 + 3) % v).collect();
            let y: Vec<u32> = (0..2 * seq as u32).map(|k| (k * 5 + 1) % v).collect();
            let mut opt = Optimizer::new(OptimizerConfig::from_json(r#"{"lr": 1e-3}"#).unwrap()).unwrap();
            for _ in 0..2 {
                let st = model.train_step(&mut opt, &x, &y, 2, seq).unwrap();
                assert!(st.loss.is_finite(), "{what}");
            }
            let logits = model.logits(&x, 2, seq).unwrap();
            let bytes = model.checkpoint(Some(&opt)).unwrap().encode().unwrap();
            let ck = Checkpoint::decode(&bytes).unwrap();
            let mut back = embed::load(&ck, Device::Cpu).unwrap();
            let again = back.logits(&x, 2, seq).unwrap();
            assert!(
                logits.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: reloaded logits differ"
            );
            let mut opt2 = back.restore_optimizer(&ck).unwrap();
            let a = model.train_step(&mut opt, &x, &y, 2, seq).unwrap().loss;
            let b = back.train_step(&mut opt2, &x, &y, 2, seq).unwrap().loss;
            assert_eq!(a.to_bits(), b.to_bits(), "{what}: the reloaded optimizer's step differs");
        }
    }
}
