//! The practice path end to end at a tiny scale: a warm start writes a loadable base whose
//! weights moved and is found again in the cache, and a learning run evaluates, updates and
//! reports on it.

use std::time::SystemTime;

use clawdesk_trainer::Method;
use clawdesk_trainer::practice::learn::{LearnSettings, learn};
use clawdesk_trainer::practice::warm_start::{WarmStartSettings, practice_base};

#[test]
fn a_warm_start_is_cached_and_a_learning_run_reports_its_curve() {
    let cache = tempfile::tempdir().expect("tempdir");
    let settings = WarmStartSettings {
        steps: 3,
        batch: 2,
        config: serde_json::json!({}),
        ..WarmStartSettings::default()
    };
    let mut seen = Vec::new();
    let (base, report) =
        practice_base(cache.path(), &settings, &mut |p| seen.push(p.step)).expect("warm start");
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(report.final_loss.is_finite());
    assert!((0.0..=1.0).contains(&report.success_without_hint));
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "warm_start.json",
    ] {
        assert!(base.join(file).exists(), "{file} missing from the base");
    }
    // The merged weights differ from the random model's (the adapter was folded in).
    let merged =
        candle_core::safetensors::load(base.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("merged weights");
    let random = {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = clawdesk_model::tiny::default_config();
        clawdesk_model::tiny::merge_json(&mut config, &settings.config);
        clawdesk_model::tiny::write_tiny_model(dir.path(), &config, settings.seed).expect("tiny");
        candle_core::safetensors::load(
            dir.path().join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .expect("random weights")
    };
    let name = "model.language_model.layers.0.self_attn.q_proj.weight";
    let diff: f32 = (&merged[name] - &random[name])
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar())
        .expect("diff");
    assert!(diff > 0.0, "the warm start did not change {name}");
    let untouched = "model.language_model.embed_tokens.weight";
    assert_eq!(
        merged[untouched].to_vec2::<f32>().expect("embed"),
        random[untouched].to_vec2::<f32>().expect("embed")
    );

    // Asked again, the cache answers without training.
    let modified = std::fs::metadata(base.join("model.safetensors"))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let (again, _) =
        practice_base(cache.path(), &settings, &mut |_| panic!("trained again")).expect("cached");
    assert_eq!(again, base);
    assert_eq!(
        std::fs::metadata(again.join("model.safetensors"))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        modified
    );

    let run = learn(
        &base,
        &LearnSettings {
            method: Method::Combined,
            updates: 2,
            tasks: 2,
            rollouts: 2,
            eval_every: 1,
            eval_tasks: 4,
            ..LearnSettings::default()
        },
        &mut |_| {},
    )
    .expect("learn");
    assert_eq!(
        run.curve.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(run.metrics.len() + run.skipped, 2);
    assert!(run.curve.iter().all(|(_, s)| (0.0..=1.0).contains(s)));
}
