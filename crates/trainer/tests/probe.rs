//! The tiny model, trained as the warm start trains it, learns to attend by place and by
//! content, the two steps the gym's element lookup chains, and, from weights drawn as HF
//! draws them for training, the chain itself (associative recall). Guards the train path's
//! attention (masking, rotary positions, the fused backward passes) end to end; a broken
//! gradient through the scores leaves all three at chance.

use candle_core::Device;
use clawdesk_trainer::probe::{ProbeSettings, ProbeTask, run_probe};

fn learns(task: ProbeTask, steps: usize) {
    learns_with(ProbeSettings {
        task,
        steps,
        eval_every: steps,
        ..ProbeSettings::default()
    });
}

fn learns_with(settings: ProbeSettings) {
    let (task, steps) = (settings.task, settings.steps);
    let mut seen = Vec::new();
    let report =
        run_probe(&settings, &Device::Cpu, &mut |step, a| seen.push((step, a))).expect("probe");
    assert_eq!(seen, report.curve);
    let before = report.curve[0].1;
    let after = report.final_accuracy();
    assert!(
        before < 0.7,
        "{task:?} right {before} before training: the task gives itself away"
    );
    assert!(
        after >= 0.9,
        "{task:?}: held-out {before} -> {after} after {steps} steps (chance {})",
        task.chance(settings.pairs)
    );
}

#[test]
fn the_tiny_model_learns_to_attend_by_place() {
    learns(ProbeTask::Offset, 300);
}

#[test]
fn the_tiny_model_learns_to_attend_by_content() {
    learns(ProbeTask::Membership, 700);
}

#[test]
fn from_a_trainable_init_the_tiny_model_learns_associative_recall() {
    learns_with(ProbeSettings {
        task: ProbeTask::Recall,
        trainable_init: true,
        steps: 600,
        batch: 128,
        lr: 1e-3,
        eval_every: 600,
        ..ProbeSettings::default()
    });
}

#[test]
fn the_prefix_curriculum_starts_short_and_reaches_the_full_filler_once_the_skill_forms() {
    let settings = ProbeSettings {
        task: ProbeTask::Offset,
        steps: 600,
        eval_every: 600,
        prefix: 30,
        prefix_grow: 10,
        ..ProbeSettings::default()
    };
    let report = run_probe(&settings, &Device::Cpu, &mut |_, _| {}).expect("probe");
    let from = report
        .full_prefix_from
        .expect("the filler reaches its full length within 600 steps");
    // Three growths, each after a check passed at the length before it.
    assert!(
        from > 3 * clawdesk_trainer::gym::curriculum::CHECK_EVERY,
        "full length from step {from}: the curriculum skipped its checks"
    );
    assert!(
        report.final_accuracy() >= 0.9,
        "held-out (full filler) {}",
        report.final_accuracy()
    );
    let plain = run_probe(
        &ProbeSettings {
            steps: 1,
            prefix_grow: 0,
            ..settings
        },
        &Device::Cpu,
        &mut |_, _| {},
    )
    .expect("probe");
    assert_eq!(
        plain.full_prefix_from,
        Some(1),
        "no curriculum: full from the start"
    );
}
