//! The model as an agent on a real app: every step is committed with its screens, the policy
//! turn the trainer needs (messages, image blobs, tokens, log-probabilities) and the adapter
//! version that produced it; a reply that is not an action is an invalid step, not a crash;
//! the stop key ends an episode.

use clawdesk_agent::turn::PolicyTurn;
use clawdesk_agent::{AgentPrompts, Policy};
use clawdesk_desktop::{Action, GuardConfig};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, tiny};
use clawdesk_runtime::episode::{AgentSettings, EndReason, PauseSwitch, StopOnLoop, run_agent};
use clawdesk_store::{EpisodeId, EpisodeStatus, StepOutcome, Store};
use clawdesk_tests::{load_model, start_app};

fn tiny_model(dir: &std::path::Path) -> LoadedModel {
    tiny::write_tiny_model(dir, &tiny::default_config(), 3).expect("tiny model");
    load_model(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_step_is_stored_with_its_policy_turn_and_version() {
    let t = start_app(
        &["zenity", "--entry", "--text=Agent here"],
        "zenity",
        GuardConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("data")).expect("store");
    let model_dir = dir.path().join("tiny");
    let mut loaded = tiny_model(&model_dir);
    // A second copy of the model writes a random adapter for the policy to swap in.
    let adapter = dir.path().join("adapter");
    let mut other = tiny_model(&model_dir);
    clawdesk_model::peft::write_random_adapter(
        &mut other.model,
        LoraConfig::new(4, 8.0),
        11,
        &adapter,
        "tiny",
    )
    .expect("adapter");
    loaded
        .model
        .attach_lora(LoraConfig::new(4, 8.0), 1)
        .expect("attach");
    let policy = Policy::spawn(loaded);
    let prompts = AgentPrompts::built_in().expect("prompt");
    let mut settings = AgentSettings::new("Type hello into the entry.");
    settings.app = Some("zenity".into());
    settings.max_steps = 3;
    settings.sampling.temperature = 1.0;
    settings.sampling.max_tokens = 24;
    settings.sampling.seed = 5;
    settings.loop_repeats = 10;

    let mut reports = Vec::new();
    let base = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |r| reports.push(r.clone()),
    )
    .await
    .expect("episode runs");
    assert_eq!(base.steps, 3, "{base:?}");
    assert_eq!(base.ended, EndReason::StepLimit);
    assert_eq!(base.versions, vec![None, None, None]);
    assert_eq!(reports.len(), 3);

    policy
        .activate(7, adapter.clone())
        .await
        .expect("adapter loads");
    settings.max_steps = 2;
    let adapted = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |_| {},
    )
    .await
    .expect("episode runs");
    assert_eq!(adapted.versions, vec![Some(7), Some(7)]);

    // A folder that is not an adapter is refused and the active one stays.
    let refused = policy.activate(8, dir.path().join("nothing")).await;
    assert!(refused.is_err());

    for summary in [&base, &adapted] {
        let steps = store.steps(EpisodeId(summary.episode)).expect("steps");
        assert_eq!(steps.len(), summary.steps);
        for (i, step) in steps.iter().enumerate() {
            assert!(step.after_image.is_some() && step.before_tree.is_some());
            let turn = PolicyTurn::of_step(step.response.as_ref())
                .expect("a well-formed policy turn")
                .expect("the model's turn is stored");
            assert_eq!(turn.tokens.len(), turn.logprobs.len());
            assert!(turn.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
            // The current screen plus up to two earlier ones, the current one last.
            assert_eq!(turn.images.len(), i.min(2) + 1, "step {i}");
            assert_eq!(turn.images.last(), step.before_image.as_ref());
            assert_eq!(turn.tools.len(), 1, "the computer_use schema");
            assert_eq!(step.policy_version, summary.versions[i]);
            // A random model's reply is not an action: stored as invalid, with the reason.
            if step.outcome == StepOutcome::Invalid {
                assert!(step.error.as_deref().is_some_and(|e| !e.is_empty()));
                assert!(step.action.get("invalid").is_some());
            }
        }
    }
    assert!(
        store
            .steps(EpisodeId(base.episode))
            .expect("steps")
            .iter()
            .any(|s| s.outcome == StepOutcome::Invalid),
        "a random tiny model writes no valid computer_use call"
    );

    // The person takes over for one step: their action runs and is stored as a corrected
    // step (no policy turn, a person's +1 with the action as the correction).
    let person = PauseSwitch::default();
    person.take_over_with(Action::Type {
        text: "hello".into(),
        paste: false,
    });
    settings.max_steps = 1;
    let taken = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &person,
        |_| {},
    )
    .await
    .expect("episode runs");
    assert_eq!((taken.steps, taken.taken_over), (1, 1));
    let step = &store.steps(EpisodeId(taken.episode)).expect("steps")[0];
    assert_eq!(step.outcome, StepOutcome::Executed, "{:?}", step.error);
    assert!(step.response.is_none() && step.policy_version.is_none());
    let verdict = store
        .effective_verdict(step.id)
        .expect("verdict")
        .expect("the person's verdict");
    assert_eq!(verdict.score, 1);
    assert_eq!(
        verdict.correction.as_ref().and_then(|c| c["text"].as_str()),
        Some("hello")
    );
    let after = store
        .blob(step.after_tree.as_ref().expect("after tree"))
        .expect("tree blob");
    assert!(
        String::from_utf8_lossy(&after).contains("hello"),
        "the typing landed"
    );

    // A paused agent takes no step until it is resumed.
    let switch = PauseSwitch::default();
    switch.pause();
    settings.max_steps = 1;
    let resume_at = std::sync::Mutex::new(0i64);
    let resume = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        *resume_at.lock().expect("lock") = clawdesk_store::now_ms();
        switch.resume();
    };
    let (paused, ()) = tokio::join!(
        run_agent(
            &t.desktop,
            &store,
            &policy,
            &prompts,
            &settings,
            &switch,
            |_| {}
        ),
        resume
    );
    let paused = paused.expect("episode runs");
    let first = &store.steps(EpisodeId(paused.episode)).expect("steps")[0];
    assert!(
        first.started_at_ms >= *resume_at.lock().expect("lock"),
        "a step began while paused"
    );

    // The stop key (its flag) ends the next episode before it acts.
    t.desktop.stop_flag().stop();
    let stopped = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |_| {},
    )
    .await
    .expect("episode runs");
    assert_eq!(stopped.ended, EndReason::StopKey);
    assert_eq!(stopped.status, EpisodeStatus::Stopped);
    assert_eq!(stopped.steps, 0);
}
