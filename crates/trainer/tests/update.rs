//! Updates on a generated tiny Qwen3-VL: Binary RL moves the responses' probability the way the
//! reward says, OPD (on the sampled token and on the student's top-k) pulls the student toward
//! the hinted teacher, top-k OPD keeps the hint whose teacher agrees most, micro-batching
//! changes nothing, and a batch with nothing to learn changes nothing.

use candle_core::Device;
use clawdesk_model::chat::{Message, Role};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, ModelInput, ScoreItem, tiny};
use clawdesk_trainer::{
    AdamW, AdamWConfig, AdvantageSettings, Method, OpdForm, TrainSample, UpdateSettings, update,
};

/// OPD's per-token advantages are large on this saturated tiny model (gaps of several nats);
/// at 0.02 six PPO epochs on one sample overshoot and the student moves away from the teacher.
const LR_OPD: f64 = 0.002;

fn tiny_policy(seed: u64) -> (tempfile::TempDir, LoadedModel) {
    tiny_policy_drawn(seed, tiny::Init::OrderOne)
}

/// [`tiny_policy`] with the model's weights drawn as `init` says.
fn tiny_policy_drawn(seed: u64, init: tiny::Init) -> (tempfile::TempDir, LoadedModel) {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model_with(dir.path(), &tiny::default_config(), 3, &[], init).expect("tiny");
    let mut loaded = LoadedModel::load(
        dir.path().to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    loaded
        .model
        .attach_lora(LoraConfig::new(4, 8.0), seed)
        .expect("lora");
    (dir, loaded)
}

fn prompt(loaded: &LoadedModel, text: &str) -> ModelInput {
    loaded
        .processor
        .prompt(&[Message::text(Role::User, text)], &[], &[])
        .expect("prompt")
}

/// A response with the policy's log-probabilities of it, as if it had been sampled.
///
/// The generated tiny models put almost all mass on one token (random embeddings tied to the
/// head), where log π ≈ 0 and no gradient flows; a fixed text of ordinary tokens is what a
/// high-temperature sample of a real model looks like to the loss.
fn sample(loaded: &LoadedModel, input: &ModelInput, text: &str) -> (Vec<u32>, Vec<f32>) {
    let response = loaded.processor.tokenize(text).expect("tokens");
    let old = logprobs(loaded, input, &response, true);
    (response, old)
}

fn logprobs(loaded: &LoadedModel, input: &ModelInput, response: &[u32], lora: bool) -> Vec<f32> {
    let scored = loaded
        .model
        .score(
            &[ScoreItem {
                prompt: input.clone(),
                response: response.to_vec(),
            }],
            lora,
        )
        .expect("score");
    scored.logprobs.detach().to_vec1().expect("vec")
}

fn weights(loaded: &LoadedModel) -> Vec<Vec<f32>> {
    loaded
        .model
        .lora_vars()
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .expect("w")
        })
        .collect()
}

fn optimizer(loaded: &LoadedModel) -> AdamW {
    AdamW::new(
        loaded.model.lora_vars(),
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )
    .expect("adamw")
}

fn settings(method: Method) -> UpdateSettings {
    UpdateSettings {
        advantages: AdvantageSettings {
            method,
            ..AdvantageSettings::default()
        },
        ..UpdateSettings::default()
    }
}

#[test]
fn binary_rl_follows_the_reward() {
    for reward in [1.0f32, -1.0] {
        let (_dir, loaded) = tiny_policy(1);
        let input = prompt(&loaded, "Click the blue button.");
        let (response, old) = sample(&loaded, &input, "click(512, 300)");
        let before: f32 = logprobs(&loaded, &input, &response, true).iter().sum();
        let mut opt = optimizer(&loaded);
        let batch = vec![TrainSample {
            prompt: input.clone(),
            teacher_prompts: Vec::new(),
            response: response.clone(),
            old_logprobs: old,
            reward: Some(reward),
        }];
        for _ in 0..4 {
            let m = update(
                &loaded.model,
                &mut opt,
                &batch,
                &settings(Method::BinaryRl),
                0.02,
            )
            .expect("update");
            assert_eq!((m.samples, m.dropped), (1, 0));
            assert!(m.grad_norm > 0.0 && m.grad_norm.is_finite());
            assert_eq!(m.mean_reward, f64::from(reward));
        }
        let after: f32 = logprobs(&loaded, &input, &response, true).iter().sum();
        assert!(
            (after - before) * reward > 0.05,
            "reward {reward}: log-prob {before} -> {after}"
        );
    }
}

#[test]
fn token_opd_pulls_the_student_toward_the_hinted_teacher() {
    // The sampled-token form, unclipped as it was first tested.
    {
        let (form, clip) = (OpdForm::Token, None);
        let (_dir, loaded) = tiny_policy(2);
        let input = prompt(&loaded, "Open the settings.");
        let hinted = prompt(
            &loaded,
            "Open the settings.\n\nHint: the gear icon is at the top right.",
        );
        let (response, old) = sample(&loaded, &input, "click(950, 40)");
        let teacher = logprobs(&loaded, &hinted, &response, false);
        let gap = |student: &[f32]| -> f32 {
            student
                .iter()
                .zip(&teacher)
                .map(|(s, t)| (s - t).abs())
                .sum::<f32>()
        };
        let before = gap(&logprobs(&loaded, &input, &response, true));
        let mut opt = optimizer(&loaded);
        let batch = vec![TrainSample {
            prompt: input.clone(),
            teacher_prompts: vec![hinted],
            response: response.clone(),
            old_logprobs: old,
            reward: None,
        }];
        let mut settings = settings(Method::Combined);
        settings.advantages.opd_form = form;
        settings.advantages.opd_clip = clip;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let m = update(&loaded.model, &mut opt, &batch, &settings, LR_OPD).expect("update");
            gaps.push(m.mean_gap.expect("a teacher gap"));
            assert_eq!(m.mean_reward, 0.0, "hint only: r = 0");
            assert_eq!(m.hint_overlap, None);
        }
        let after = gap(&logprobs(&loaded, &input, &response, true));
        assert!(
            after < before * 0.8,
            "{form}: student-teacher gap {before} -> {after} ({gaps:?})"
        );
    }
}

/// Top-k OPD, with the defaults (top-4, the gap clipped at 2): the student's log-probabilities
/// at its top-k move toward the hinted teacher's, weighted by the student's share as the loss
/// weighs them. The model is drawn as for training (small weights): the order-one tiny model
/// puts all its mass on one token that teacher and student agree on, where top-k OPD has
/// nothing to do.
#[test]
fn top_k_opd_pulls_the_students_top_k_toward_the_hinted_teacher() {
    let (_dir, loaded) = tiny_policy_drawn(7, tiny::Init::Trainable);
    let input = prompt(&loaded, "Open the settings.");
    let hinted = prompt(
        &loaded,
        "Open the settings.\n\nHint: the gear icon is at the top right.",
    );
    let (response, old) = sample(&loaded, &input, "click(950, 40)");
    let k = 4;
    let item = |p: &ModelInput| ScoreItem {
        prompt: p.clone(),
        response: response.clone(),
    };
    let start = loaded
        .model
        .score_top_k(&[item(&input)], true, k, None)
        .expect("student");
    let ids = start.indices.clone();
    // The log-probabilities at the student's first top-k, with `prompt`, adapter on or off.
    let values_at = |loaded: &LoadedModel, prompt: &ModelInput, lora: bool| -> Vec<f32> {
        loaded
            .model
            .score_top_k(&[item(prompt)], lora, k, Some(&ids))
            .expect("scored")
            .at
            .expect("at")
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("values")
    };
    let teacher = values_at(&loaded, &hinted, false);
    // Σ over positions and the first top-k of w_v·|log π_S(v) − log π_T(v)|.
    let distance = |loaded: &LoadedModel| -> f32 {
        let s = values_at(loaded, &input, true);
        s.chunks(k)
            .zip(teacher.chunks(k))
            .map(|(s, t)| {
                let z: f32 = s.iter().map(|v| v.exp()).sum();
                s.iter()
                    .zip(t)
                    .map(|(sv, tv)| sv.exp() / z * (sv - tv).abs())
                    .sum::<f32>()
            })
            .sum()
    };
    let before = distance(&loaded);
    let batch = vec![TrainSample {
        prompt: input.clone(),
        teacher_prompts: vec![hinted.clone()],
        response: response.clone(),
        old_logprobs: old,
        reward: None,
    }];
    let mut opt = optimizer(&loaded);
    let defaults = settings(Method::Opd);
    assert_eq!(defaults.advantages.opd_form, OpdForm::TopK { k: 4 });
    let mut overlaps = Vec::new();
    for _ in 0..6 {
        let m = update(&loaded.model, &mut opt, &batch, &defaults, LR_OPD).expect("update");
        overlaps.push(m.hint_overlap.expect("an overlap"));
    }
    let after = distance(&loaded);
    assert!(
        before > 0.0 && after < before * 0.8,
        "top-k distance {before} -> {after} (overlaps {overlaps:?})"
    );
}

/// Of several judges' hints, top-k OPD keeps the one whose teacher's top-k overlaps the
/// student's most, wherever it comes in the list; its overlap is in the update's figures.
#[test]
fn top_k_opd_keeps_the_hint_whose_teacher_agrees_most() {
    let (_dir, loaded) = tiny_policy(5);
    let input = prompt(&loaded, "Open the settings.");
    let other = prompt(
        &loaded,
        "Open the settings.\n\nHint: the gear icon, top right, then Display.",
    );
    let (response, old) = sample(&loaded, &input, "click(950, 40)");
    // A fresh adapter's B is zero, so the student is the base: a "hint" that leaves the
    // prompt as it is gives a teacher whose top-k is the student's at every position.
    let overlap_with = |teachers: Vec<ModelInput>, budget: usize| {
        let (_dir, loaded) = tiny_policy(5);
        let batch = vec![TrainSample {
            prompt: input.clone(),
            teacher_prompts: teachers,
            response: response.clone(),
            old_logprobs: old.clone(),
            reward: Some(-1.0),
        }];
        let mut opt = optimizer(&loaded);
        let settings = UpdateSettings {
            micro_batch_tokens: budget,
            ..settings(Method::Combined)
        };
        let m = update(&loaded.model, &mut opt, &batch, &settings, LR_OPD).expect("update");
        (
            m.hint_overlap.expect("an overlap"),
            m.mean_gap.expect("a gap"),
        )
    };
    let (alone, _) = overlap_with(vec![other.clone()], 1 << 20);
    assert!(
        alone < 1.0,
        "the other hint's teacher agrees fully ({alone})"
    );
    assert_eq!(overlap_with(vec![input.clone()], 1 << 20).0, 1.0);
    let both = overlap_with(vec![other.clone(), input.clone()], 1 << 20);
    assert_eq!(both.0, 1.0);
    assert_eq!(
        overlap_with(vec![input.clone(), other.clone()], 1 << 20).0,
        1.0
    );
    // The teachers' passes split under a budget of one sample each: the same choice and gap.
    let split = overlap_with(vec![other, input.clone()], 1);
    assert_eq!(split.0, both.0);
    assert!((split.1 - both.1).abs() < 1e-6, "{split:?} vs {both:?}");
    drop(loaded);
}

#[test]
fn micro_batches_accumulate_to_the_same_update() {
    let run = |budget: usize| {
        let (_dir, loaded) = tiny_policy(3);
        let prompts = ["Type hello.", "Press Return.", "Scroll down twice."];
        let batch: Vec<TrainSample> = prompts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let input = prompt(&loaded, text);
                let (response, old) = sample(&loaded, &input, &format!("key(Return) {i}"));
                TrainSample {
                    prompt: input,
                    teacher_prompts: Vec::new(),
                    response,
                    old_logprobs: old,
                    reward: Some(if i == 1 { -1.0 } else { 1.0 }),
                }
            })
            .collect();
        // AdamW's step is lr · m / (√v + eps): with the default eps (1e-8) it is ±lr for any
        // gradient well above 1e-8, whatever its scale, so micro-batches summed at 3× the right
        // weight would pass, and a gradient near 1e-8 turns the last bits of a sum's order
        // (the micro-batches add in another order) into a large change of its step. An eps
        // above the gradients, and no clipping to a fixed norm, make the step follow their
        // size: scale errors show, and the rounding of the sums stays at its own size.
        let mut opt = AdamW::new(
            loaded.model.lora_vars(),
            AdamWConfig {
                eps: 1e-3,
                max_grad_norm: None,
                weight_decay: 0.0,
                ..AdamWConfig::default()
            },
        )
        .expect("adamw");
        let settings = UpdateSettings {
            micro_batch_tokens: budget,
            ..settings(Method::BinaryRl)
        };
        let first = update(&loaded.model, &mut opt, &batch, &settings, 0.01).expect("update");
        // A second update too: the first one's B is no longer zero, so A gets gradient as well.
        update(&loaded.model, &mut opt, &batch, &settings, 0.01).expect("update");
        (weights(&loaded), first.surrogate)
    };
    let (whole, loss_whole) = run(1 << 20);
    let (split, loss_split) = run(1);
    assert!((loss_whole - loss_split).abs() < 1e-5);
    // Rounding moves weights by up to 4e-6 here; micro-batches summed without their shares,
    // by 1.3e-2.
    for (a, b) in whole.iter().flatten().zip(split.iter().flatten()) {
        assert!((a - b).abs() < 5e-5, "{a} vs {b}");
    }
}

#[test]
fn nothing_to_learn_changes_nothing() {
    let (_dir, loaded) = tiny_policy(4);
    let input = prompt(&loaded, "Wait.");
    let (response, old) = sample(&loaded, &input, "wait(1)");
    let before = weights(&loaded);
    let mut opt = optimizer(&loaded);
    let batch = vec![TrainSample {
        prompt: input,
        teacher_prompts: Vec::new(),
        response,
        old_logprobs: old,
        reward: None,
    }];
    let err = update(
        &loaded.model,
        &mut opt,
        &batch,
        &settings(Method::Combined),
        0.1,
    )
    .expect_err("nothing trainable");
    assert!(err.to_string().contains("none of the 1 samples"), "{err}");
    assert_eq!(weights(&loaded), before);
    assert_eq!(opt.steps(), 0);
}
