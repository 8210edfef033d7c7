//! The training loop over a real store of recorded gym practice: it never passes over a step
//! still waiting for its verdict, writes each update's figures to the store, and refuses a
//! checkpoint made at another rank.

use candle_core::Device;
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, tiny};
use clawdesk_store::{NewVerdict, Store, VerdictSource};
use clawdesk_trainer::gym::episode::{GymPolicy, HintWhen};
use clawdesk_trainer::gym::record::record_episodes;
use clawdesk_trainer::run::{TrainLoop, TrainLoopSettings, Turn};
use clawdesk_trainer::teacher::HintTemplate;
use clawdesk_trainer::{Schedule, TrainerError};

fn setup() -> (tempfile::TempDir, LoadedModel, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(&dir.path().join("model"), &tiny::default_config(), 11).expect("tiny");
    let loaded = LoadedModel::load(
        dir.path().join("model").to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    let store = Store::open(dir.path().join("data")).expect("store");
    (dir, loaded, store)
}

fn record(store: &Store, loaded: &LoadedModel, episodes: usize, seed: u64) {
    let policy = GymPolicy::built_in(loaded).expect("templates");
    record_episodes(store, &policy, episodes, seed, HintWhen::OnFailure, None).expect("record");
}

/// A person's +1 without a hint.
fn approve(store: &Store, step: clawdesk_store::StepId) {
    store
        .add_verdict(&NewVerdict {
            step,
            source: VerdictSource::Person,
            score: 1,
            votes: None,
            hint: None,
            judge: None,
            mean: None,
            correction: None,
        })
        .expect("verdict");
}

/// The rank-4 adapter every test trains, from one seed.
fn attach(loaded: &mut LoadedModel) {
    loaded
        .model
        .attach_lora(LoraConfig::new(4, 8.0), 3)
        .expect("lora");
}

/// A training loop with the built-in hint template, checkpointing under `checkpoints`.
fn open_loop<'a>(
    store: &'a Store,
    loaded: &'a LoadedModel,
    checkpoints: &std::path::Path,
    settings: TrainLoopSettings,
) -> TrainLoop<'a> {
    TrainLoop::open(
        store,
        loaded,
        "tiny",
        checkpoints,
        HintTemplate::built_in().expect("hints"),
        settings,
    )
    .expect("open")
}

/// A new step at index 99 of `step`'s episode, with its screen and action and `response`.
fn insert_copy(
    store: &Store,
    step: &clawdesk_store::Step,
    response: Option<serde_json::Value>,
) -> clawdesk_store::StepId {
    store
        .insert_step(&clawdesk_store::NewStep {
            episode: step.episode,
            index: 99,
            before_image: step
                .before_image
                .clone()
                .expect("a practice step has a screen"),
            after_image: step.after_image.clone(),
            before_tree: None,
            after_tree: None,
            surface: step.surface.clone(),
            action: step.action.clone(),
            response,
            policy_version: None,
            outcome: clawdesk_store::StepOutcome::Executed,
            error: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })
        .expect("step")
}

/// Three judged practice episodes, a copy of their first model step with no verdict, then
/// three more judged episodes; returns the unjudged step.
fn practice_around_an_unjudged_step() -> (
    tempfile::TempDir,
    LoadedModel,
    Store,
    clawdesk_store::StepId,
) {
    let (dir, loaded, store) = setup();
    record(&store, &loaded, 3, 1);
    let first = store
        .steps_after(clawdesk_store::StepId(0), 1)
        .expect("steps")[0]
        .clone();
    let unjudged = insert_copy(&store, &first, first.response.clone());
    record(&store, &loaded, 3, 2);
    (dir, loaded, store, unjudged)
}

#[test]
fn waits_for_a_verdict_instead_of_passing_over_the_step() {
    // A model step the judge has not reached yet, then more judged practice after it.
    let (dir, mut loaded, store, pending) = practice_around_an_unjudged_step();
    attach(&mut loaded);
    let settings = TrainLoopSettings {
        batch: 4,
        checkpoint_every: 1,
        schedule: Schedule::Constant { lr: 1e-2 },
        ..TrainLoopSettings::default()
    };
    let checkpoints = dir.path().join("ckpt");
    let mut train = open_loop(&store, &loaded, &checkpoints, settings.clone());
    match train.turn().expect("turn") {
        Turn::Waiting { ready } => assert_eq!(ready, 3),
        other => panic!("trained past an unjudged step: {other:?}"),
    }
    assert!(train.cursor().0 < pending.0);
    approve(&store, pending);
    match train.turn().expect("turn") {
        Turn::Updated { step, metrics } => {
            assert_eq!(step, 1);
            assert_eq!(metrics.samples, 4);
            assert!(
                metrics.mean_gap.is_some(),
                "the failed steps' hints made a teacher"
            );
        }
        other => panic!("no update once the verdict came: {other:?}"),
    }
    assert_eq!(
        train.cursor(),
        pending,
        "the batch ends with the step that waited"
    );
    let figures = store.train_updates("main", 0).expect("figures");
    assert_eq!(figures.len(), 1);
    assert!(
        figures[0].metrics["grad_norm"]
            .as_f64()
            .is_some_and(f64::is_finite)
    );

    // Another rank cannot resume this run's checkpoints.
    drop(train);
    let (_other_dir, mut other, _) = setup();
    other
        .model
        .attach_lora(LoraConfig::new(2, 4.0), 3)
        .expect("lora");
    let refused = TrainLoop::open(
        &store,
        &other,
        "tiny",
        &checkpoints,
        HintTemplate::built_in().expect("hints"),
        settings,
    );
    assert!(
        matches!(refused, Err(TrainerError::Checkpoint(ref m)) if m.contains("rank")),
        "{:?}",
        refused.err()
    );
}

/// Issue 26: a step its judge gave up on (a damaged screenshot, say) used to stop training for
/// good, the loop waiting for a verdict that would never come.
#[test]
fn a_step_the_judge_gave_up_on_is_passed_over() {
    let (dir, mut loaded, store, lost) = practice_around_an_unjudged_step();
    attach(&mut loaded);
    let settings = TrainLoopSettings {
        batch: 4,
        schedule: Schedule::Constant { lr: 1e-2 },
        ..TrainLoopSettings::default()
    };
    let mut train = open_loop(&store, &loaded, &dir.path().join("ckpt"), settings);
    assert!(matches!(train.turn().expect("turn"), Turn::Waiting { .. }));
    store
        .record_judge_failure(
            lost,
            "endpoint",
            "the blob is damaged",
            |_| 0,
            clawdesk_store::GiveUp::Now,
        )
        .expect("given up");
    match train.turn().expect("turn") {
        Turn::Updated { metrics, .. } => assert_eq!(metrics.samples, 4),
        other => panic!("still held by the unjudgeable step: {other:?}"),
    }
    assert!(train.cursor().0 > lost.0, "the cursor moved past it");
}

#[test]
fn batches_hold_only_samples_the_method_learns_from() {
    let (dir, mut loaded, store) = setup();
    // A random model fails every step, so every verdict is -1 with a hint; one person's +1
    // without a hint is a sample OPD cannot learn from.
    record(&store, &loaded, 4, 5);
    let first = store
        .steps_after(clawdesk_store::StepId(0), 1)
        .expect("steps")[0]
        .id;
    approve(&store, first);
    attach(&mut loaded);
    let mut settings = TrainLoopSettings {
        batch: 2,
        schedule: Schedule::Constant { lr: 1e-2 },
        ..TrainLoopSettings::default()
    };
    settings.update.advantages.method = clawdesk_trainer::Method::Opd;
    let mut train = open_loop(&store, &loaded, &dir.path().join("ckpt"), settings);
    match train.turn().expect("turn") {
        Turn::Updated { metrics, .. } => {
            assert_eq!((metrics.samples, metrics.dropped), (2, 0));
            assert!(metrics.mean_gap.is_some());
        }
        other => panic!("expected an update: {other:?}"),
    }
    assert!(
        train.cursor().0 > first.0,
        "the unhinted step was passed, not trained"
    );
}

#[test]
fn steps_from_adapters_older_than_the_staleness_bound_are_passed_over() {
    let (dir, mut loaded, store) = setup();
    record(&store, &loaded, 3, 1);
    attach(&mut loaded);
    let settings = TrainLoopSettings {
        batch: 2,
        checkpoint_every: 1000,
        schedule: Schedule::Constant { lr: 1e-3 },
        max_staleness: Some(0),
        ..TrainLoopSettings::default()
    };
    let mut train = open_loop(&store, &loaded, &dir.path().join("ckpt"), settings);
    // The base's steps are fresh while nothing has been trained...
    assert!(matches!(
        train.turn().expect("turn"),
        Turn::Updated { step: 1, .. }
    ));
    // ...and one update later, new steps from the base are one version stale: passed over,
    // however many are judged.
    record(&store, &loaded, 3, 2);
    match train.turn().expect("turn") {
        Turn::Waiting { ready } => assert_eq!(ready, 0),
        other => panic!("trained on stale steps: {other:?}"),
    }
    let last = store.steps_after(train.cursor(), 10).expect("steps");
    assert!(
        last.is_empty(),
        "the stale steps were passed, not waited on"
    );
    // Fresh steps from version 1: the next update's figures count the stale ones passed over.
    let stale = store
        .steps_after(clawdesk_store::StepId(0), 1000)
        .expect("steps")
        .iter()
        .filter(|s| s.policy_version.is_none())
        .count();
    let policy = GymPolicy::built_in(&loaded).expect("templates");
    record_episodes(&store, &policy, 3, 3, HintWhen::OnFailure, Some(1)).expect("record");
    assert!(matches!(
        train.turn().expect("turn"),
        Turn::Updated { step: 2, .. }
    ));
    let figures = store.train_updates("main", 1).expect("figures");
    let passed = figures.last().expect("the second update").metrics["passed_stale"]
        .as_u64()
        .expect("a count");
    // Every base step but the first batch's two was passed over as stale.
    assert_eq!(passed as usize, stale - 2, "of {stale} base steps");
}

/// A conversation turn with no next message yet: the trainer waits for it while its session
/// is open, and passes over it once the session ends or its patience runs out.
#[test]
fn an_unanswered_conversation_turn_holds_training_only_while_it_can_still_be_judged() {
    let (dir, mut loaded, store) = setup();
    record(&store, &loaded, 2, 1);
    let first = store
        .steps_after(clawdesk_store::StepId(0), 1)
        .expect("steps")[0]
        .clone();
    let session = store.session_episode("open", "chat").expect("session");
    store
        .insert_turn(&clawdesk_store::NewTurn {
            episode: session.id,
            response: first.response.clone().expect("a policy turn"),
            action: serde_json::json!({"content": "hi"}),
            policy_version: None,
            started_at_ms: clawdesk_store::now_ms(),
            ended_at_ms: clawdesk_store::now_ms(),
        })
        .expect("turn");
    record(&store, &loaded, 3, 2);
    attach(&mut loaded);
    let open = |patience: std::time::Duration, name: &str| {
        open_loop(
            &store,
            &loaded,
            &dir.path().join(name),
            TrainLoopSettings {
                run: name.into(),
                batch: 64,
                checkpoint_every: 1000,
                schedule: Schedule::Constant { lr: 1e-3 },
                turn_patience: patience,
                ..TrainLoopSettings::default()
            },
        )
    };
    let long = std::time::Duration::from_secs(3600);
    let ready = |train: &mut TrainLoop<'_>| match train.turn().expect("turn") {
        Turn::Waiting { ready } => ready,
        other => panic!("{other:?}"),
    };
    // Open session, patient trainer: it stops at the turn, with the practice before it.
    let before = ready(&mut open(long, "patient"));
    // No patience: passed over, and the practice after it is read too.
    let all = ready(&mut open(std::time::Duration::ZERO, "impatient"));
    assert!(all > before, "{all} vs {before}");
    // The session ends: even a patient trainer goes past it.
    store
        .finish_episode(session.id, clawdesk_store::EpisodeStatus::Done, None)
        .expect("ended");
    assert_eq!(ready(&mut open(long, "after-end")), all);
}

/// A stored reply holding an image placeholder (written before sampling masked them) cannot
/// be scored: the trainer says so and passes over that step instead of failing every turn.
#[test]
fn a_stored_reply_that_opens_an_image_is_passed_over_with_a_warning() {
    let (dir, mut loaded, store) = setup();
    record(&store, &loaded, 1, 1);
    let first = store
        .steps_after(clawdesk_store::StepId(0), 1)
        .expect("steps")[0]
        .clone();
    let mut response = first.response.clone().expect("a practice step has a reply");
    let image = i64::from(loaded.model.config().image_token_id);
    response["tokens"]
        .as_array_mut()
        .expect("tokens")
        .push(image.into());
    response["logprobs"]
        .as_array_mut()
        .expect("logprobs")
        .push(0.0.into());
    let poisoned = insert_copy(&store, &first, Some(response));
    approve(&store, poisoned);
    record(&store, &loaded, 4, 2);
    attach(&mut loaded);
    let settings = TrainLoopSettings {
        batch: 4,
        schedule: Schedule::Constant { lr: 1e-2 },
        ..TrainLoopSettings::default()
    };
    let mut train = open_loop(&store, &loaded, &dir.path().join("ckpt"), settings);
    match train.turn().expect("the bad step does not stop training") {
        Turn::Updated { metrics, .. } => assert_eq!(metrics.samples, 4),
        other => panic!("expected an update: {other:?}"),
    }
    assert!(train.cursor().0 > poisoned.0, "the bad step was passed");
}
