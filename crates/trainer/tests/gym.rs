//! The practice path end to end at a tiny scale: a warm start writes a loadable base whose
//! weights moved and is found again in the cache, and a learning run evaluates, updates and
//! reports on it.

use std::time::SystemTime;

use clawdesk_trainer::Method;
use clawdesk_trainer::gym::PromptStage;
use clawdesk_trainer::gym::learn::{LearnSettings, learn};
use clawdesk_trainer::gym::warm_start::{WarmStartSettings, practice_base};

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

#[test]
fn a_two_phase_warm_start_caches_its_always_right_phase_and_starts_from_it() {
    let cache = tempfile::tempdir().expect("tempdir");
    let settings = WarmStartSettings {
        steps: 2,
        ceiling_steps: 3,
        batch: 2,
        config: serde_json::json!({}),
        ..WarmStartSettings::default()
    };
    let mut seen = Vec::new();
    let (base, report) = practice_base(cache.path(), &settings, &mut |p| {
        seen.push((p.step, p.steps))
    })
    .expect("two-phase warm start");
    // Three always-right updates, then two imperfect ones.
    assert_eq!(seen, vec![(1, 3), (2, 3), (3, 3), (1, 2), (2, 2)]);
    assert_eq!(report.settings, settings);
    let (ceiling, ceiling_report) =
        practice_base(cache.path(), &settings.ceiling_phase(), &mut |_| {
            panic!("the always-right phase is cached, not trained again")
        })
        .expect("the cached phase");
    assert_ne!(ceiling, base);
    assert_eq!(ceiling_report.settings.demo_accuracy, 1.0);
    assert_eq!(ceiling_report.settings.steps, 3);
    // The second phase trained on from the first: its weights are neither the first phase's
    // nor a fresh random model's.
    let first = std::fs::read(ceiling.join("model.safetensors")).expect("phase one weights");
    let second = std::fs::read(base.join("model.safetensors")).expect("phase two weights");
    assert_ne!(first, second);
    let direct = WarmStartSettings {
        ceiling_steps: 0,
        ..settings.clone()
    };
    let (fresh, _) = practice_base(cache.path(), &direct, &mut |_| {}).expect("one-phase base");
    let fresh = std::fs::read(fresh.join("model.safetensors")).expect("one-phase weights");
    assert_ne!(fresh, second);
}

#[test]
fn the_prompt_curriculum_starts_lean_and_holds_the_base_weights_until_the_whole_prompt_passes() {
    let cache = tempfile::tempdir().expect("tempdir");
    let held = WarmStartSettings {
        steps: 3,
        batch: 2,
        config: serde_json::json!({}),
        train_norms: true,
        train_embeddings: true,
        context_grow: true,
        ..WarmStartSettings::default()
    };
    let (held_base, report) = practice_base(cache.path(), &held, &mut |_| {}).expect("warm start");
    // A random model answers no check (none is due in three updates): the demonstrations
    // stayed at the shortest prompt and the base weights were never freed.
    let curriculum = report.curriculum.expect("the curriculum's report");
    assert_eq!(curriculum.stages.len(), 1);
    assert_eq!(curriculum.stages[0].stage, PromptStage::Lean);
    assert_eq!(curriculum.base_from, None);
    let free = WarmStartSettings {
        context_grow: false,
        ..held.clone()
    };
    let (free_base, free_report) =
        practice_base(cache.path(), &free, &mut |_| {}).expect("warm start");
    assert_eq!(free_report.curriculum, None);

    let weights = |dir: &std::path::Path| {
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("weights")
    };
    let (held_weights, free_weights) = (weights(&held_base), weights(&free_base));
    let random = {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = clawdesk_model::tiny::default_config();
        clawdesk_model::tiny::merge_json(&mut config, &held.config);
        clawdesk_model::tiny::write_tiny_model(dir.path(), &config, held.seed).expect("tiny");
        weights(dir.path())
    };
    let max_change = |a: &candle_core::Tensor, b: &candle_core::Tensor| -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar())
            .expect("difference")
    };
    for name in [
        "model.language_model.embed_tokens.weight",
        "model.language_model.norm.weight",
        "model.language_model.layers.0.self_attn.q_norm.weight",
    ] {
        assert_eq!(
            max_change(&held_weights[name], &random[name]),
            0.0,
            "{name} moved while the curriculum held it"
        );
        assert!(
            max_change(&free_weights[name], &random[name]) > 0.0,
            "{name} did not train without the curriculum"
        );
    }
    // The adapter trained throughout (merged into the linears).
    let linear = "model.language_model.layers.0.self_attn.q_proj.weight";
    assert!(max_change(&held_weights[linear], &random[linear]) > 0.0);
}

#[test]
fn each_prompt_stage_adds_to_the_lean_prompt_before_its_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    clawdesk_model::tiny::write_tiny_model(dir.path(), &clawdesk_model::tiny::default_config(), 1)
        .expect("tiny model");
    let loaded = clawdesk_trainer::gym::episode::load_cpu(dir.path()).expect("loads");
    let policy = clawdesk_trainer::gym::GymPolicy::built_in(&loaded).expect("policy");
    let task = clawdesk_gym::Task::generate(clawdesk_gym::TaskKind::Click, 3);
    let text = |stage| {
        let input = policy.prompt_at(&task, None, stage).expect("prompt");
        let text = loaded.processor.decode(&input.ids, false).expect("decodes");
        (text, input.images.len())
    };
    let (lean, lean_images) = text(PromptStage::Lean);
    let (middle, middle_images) = text(PromptStage::Text);
    let (full, full_images) = text(PromptStage::Full);
    assert_eq!((lean_images, middle_images, full_images), (0, 0, 1));
    assert!(!lean.contains("Act:"), "{lean}");
    assert!(
        middle.contains("Act:") && !middle.contains("<|image_pad|>"),
        "{middle}"
    );
    assert!(full.contains("<|image_pad|>"), "{full}");
    // Each stage's extra text goes before the list: every prompt ends the same way.
    let tail = |s: &str| s[s.find("\n- ").expect("a list")..].to_owned();
    assert_eq!(tail(&lean), tail(&middle));
    assert_eq!(tail(&middle), tail(&full));
    assert!(tail(&full).contains(task.instruction()));
    // The policy's own prompt is the whole one.
    assert_eq!(
        policy.prompt(&task, None).expect("prompt").ids,
        policy
            .prompt_at(&task, None, PromptStage::Full)
            .expect("prompt")
            .ids
    );
}
