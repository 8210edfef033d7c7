//! The live loop on a real app with a checkable outcome: gnome-calculator, "compute 12+7".
//! The tiny model acts while the rule judge scores each step by reading the result through the
//! accessibility tree and the trainer learns from the verdicts; the trainer publishes adapter
//! versions during the episode and the policy serves them (the recorded versions rise within
//! the one episode); midway the person takes over and types the sum, which is stored as a
//! corrected step and shows 19 in the tree; the stop key ends the run. A second run in the same
//! data resumes the trainer from its checkpoint and serves that adapter from its first step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clawdesk_agent::AgentPrompts;
use clawdesk_desktop::{AccessTree, Action, Allowlist, GuardConfig};
use clawdesk_judge::RuleJudge;
use clawdesk_model::tiny;
use clawdesk_runtime::episode::{AgentSettings, EndReason, PauseSwitch};
use clawdesk_runtime::live::run_live;
use clawdesk_runtime::rules::element_shows;
use clawdesk_store::{EpisodeId, Step, StepOutcome, Store, VerdictSource};
use clawdesk_tests::{load_model, quick_live_settings, start_app};
use clawdesk_trainer::teacher::HintTemplate;

/// The newest episode and its steps so far (none while the store has no episode).
fn newest_episode(store: &Store) -> (Option<EpisodeId>, Vec<Step>) {
    let id = store.episodes(1).ok().and_then(|e| e.first().map(|e| e.id));
    let steps = id.and_then(|id| store.steps(id).ok()).unwrap_or_default();
    (id, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_acting_while_it_is_judged_and_trained() {
    let guard = GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
        ..GuardConfig::default()
    };
    let t = start_app(&["gnome-calculator"], "gnome-calculator", guard).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let model_dir = dir.path().join("tiny");
    tiny::write_tiny_model(&model_dir, &tiny::default_config(), 5).expect("tiny model");

    let mut agent = AgentSettings::new("Compute 12+7.");
    agent.app = Some("gnome-calculator".into());
    agent.max_steps = 60;
    agent.sampling.max_tokens = 16;
    agent.sampling.seed = 9;
    agent.loop_repeats = 1000;
    let mut settings = quick_live_settings(dir.path(), agent);
    settings.train.checkpoint_every = 2;
    settings.gym_tasks = 2;
    let scoring_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    settings.on_scoring = Some(clawdesk_runtime::live::ScoringProgress({
        let seen = scoring_seen.clone();
        Arc::new(move |version, played, tasks| {
            seen.lock().expect("lock").push((version, played, tasks));
        })
    }));
    let judge = Arc::new(RuleJudge::new(
        "shows-19",
        element_shows("19", "Type 12+7= on the keyboard."),
    ));

    // The person takes over once the model has taken two steps; the stop key is pressed once
    // two versions are out, the policy has served the second, and the takeover is stored.
    let person = PauseSwitch::default();
    let done = AtomicBool::new(false);
    let watcher = {
        let store = store.clone();
        let (t, done, person) = (&t, &done, &person);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
            let mut handed = false;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let (_, steps) = newest_episode(&store);
                if !handed && steps.len() >= 2 {
                    person.take_over_with(Action::Type {
                        text: "12+7=".into(),
                        paste: false,
                    });
                    handed = true;
                }
                let mut versions: Vec<i64> =
                    steps.iter().filter_map(|s| s.policy_version).collect();
                versions.dedup();
                let taken = steps.iter().any(|s| s.response.is_none());
                if (versions.len() >= 2 && taken) || tokio::time::Instant::now() > deadline {
                    t.run_in_sandbox(&["xdotool", "key", "Pause"]);
                    return;
                }
            }
        }
    };
    let prompts = AgentPrompts::built_in().expect("prompt");
    let live = async {
        let report = run_live(
            &t.desktop,
            store.clone(),
            load_model(&model_dir),
            Some(judge),
            &prompts,
            HintTemplate::built_in().expect("hint template"),
            &settings,
            &person,
        )
        .await;
        done.store(true, Ordering::SeqCst);
        report
    };
    let (report, ()) = tokio::join!(live, watcher);
    let report = report.expect("the live loop runs");

    let episode = &report.episodes[0];
    assert_eq!(episode.ended, EndReason::StopKey, "{episode:?}");
    assert_eq!(episode.taken_over, 1, "{episode:?}");
    assert!(report.published.len() >= 2, "{report:?}");
    assert!(report.updates >= 2, "{report:?}");
    // Versions recorded on the model's steps never go down, and at least two adapters served.
    let versions: Vec<i64> = episode.versions.iter().map(|v| v.unwrap_or(0)).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    let mut served: Vec<i64> = versions.iter().copied().filter(|&v| v > 0).collect();
    served.dedup();
    assert!(served.len() >= 2, "{versions:?}");

    // Every step is stored with its screens; verdicts came while the agent was still acting.
    let steps = store.steps(EpisodeId(episode.episode)).expect("steps");
    assert_eq!(steps.len(), episode.steps);
    let last_start = steps.last().map(|s| s.started_at_ms).unwrap_or(0);
    let mut judged_early = 0;
    let mut shown = false;
    for step in &steps {
        assert!(step.after_image.is_some());
        let verdicts = store.verdicts(step.id).expect("verdicts");
        judged_early += verdicts
            .iter()
            .filter(|v| v.created_at_ms < last_start)
            .count();
        let rule = verdicts.iter().find(|v| v.source == VerdictSource::Judge);
        if step.response.is_none() {
            // The person's step: typed, stored as a correction with their +1, and the
            // calculator's result, read through the tree, is 19.
            assert_eq!(step.outcome, StepOutcome::Executed, "{:?}", step.error);
            let verdict = store
                .effective_verdict(step.id)
                .expect("verdict")
                .expect("the person's verdict");
            assert_eq!((verdict.source, verdict.score), (VerdictSource::Person, 1));
            let after = step
                .after_tree
                .as_ref()
                .and_then(|b| store.blob(b).ok())
                .and_then(|bytes| serde_json::from_slice::<AccessTree>(&bytes).ok())
                .map(|mut t| {
                    t.reindex();
                    t.linearise()
                });
            assert_eq!(
                rule.map(|v| v.score),
                Some(1),
                "{verdicts:?}\nthe tree after the step:\n{after:?}"
            );
            shown = true;
        } else if !shown {
            // Before the sum is typed, the screen does not show it.
            assert!(rule.is_none_or(|v| v.score == -1), "{verdicts:?}");
        }
    }
    assert!(shown, "the takeover was not stored");
    assert!(
        judged_early >= 2,
        "verdicts arrived only after the agent stopped"
    );
    // Each published version is an adapter row with its folder and its gym score.
    let adapters = store.adapters().expect("adapters");
    assert!(adapters.len() >= report.published.len());
    for a in &adapters {
        assert!(
            std::path::Path::new(&a.path)
                .join("adapter_config.json")
                .exists()
        );
        let score = a.gym_score.expect("every published adapter is scored");
        assert!((0.0..=1.0).contains(&score), "{a:?}");
        // Its scoring was shown as it went: none played, then each task.
        let seen: Vec<(usize, usize)> = scoring_seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(v, _, _)| *v == a.version)
            .map(|&(_, played, tasks)| (played, tasks))
            .collect();
        assert_eq!(seen, vec![(0, 2), (1, 2), (2, 2)], "v{}", a.version);
    }

    let weights = |path: &str| {
        std::fs::read(std::path::Path::new(path).join("adapter_model.safetensors"))
            .expect("the adapter's weights")
    };
    let first_run: Vec<(i64, String, Vec<u8>)> = adapters
        .iter()
        .map(|a| (a.version, a.path.clone(), weights(&a.path)))
        .collect();

    // A second live run in the same data: the trainer resumes from its newest checkpoint and
    // the policy serves that adapter from the first step (the bare base's steps would all be
    // too stale for the trainer to learn from, and it would never publish again).
    t.desktop.stop_flag().reset();
    let first_episode = episode.episode;
    let done = AtomicBool::new(false);
    let watcher = {
        let store = store.clone();
        let (t, done) = (&t, &done);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let (episode, steps) = newest_episode(&store);
                let acted = episode.is_some_and(|id| id.0 != first_episode) && !steps.is_empty();
                if acted || tokio::time::Instant::now() > deadline {
                    t.run_in_sandbox(&["xdotool", "key", "Pause"]);
                    return;
                }
            }
        }
    };
    let live = async {
        let report = run_live(
            &t.desktop,
            store.clone(),
            load_model(&model_dir),
            Some(Arc::new(RuleJudge::new(
                "shows-19",
                element_shows("19", "Type 12+7= on the keyboard."),
            ))),
            &prompts,
            HintTemplate::built_in().expect("hint template"),
            &settings,
            &PauseSwitch::default(),
        )
        .await;
        done.store(true, Ordering::SeqCst);
        report
    };
    let (again, ()) = tokio::join!(live, watcher);
    let again = again.expect("the second live run");
    let resumed = again
        .published
        .first()
        .copied()
        .expect("the resumed adapter is served");
    // Issue 26: the resumed weights are a new version; no folder a step names is rewritten.
    let newest_first = first_run
        .iter()
        .map(|(v, _, _)| *v)
        .max()
        .expect("published");
    assert!(
        resumed > newest_first,
        "resumed as v{resumed}, but the first run published up to v{newest_first}"
    );
    for (version, path, bytes) in &first_run {
        assert!(
            weights(path) == *bytes,
            "v{version}'s folder was rewritten by the second run"
        );
    }
    let second = &again.episodes[0];
    assert_eq!(
        second.versions.first().copied().flatten(),
        Some(resumed),
        "{second:?}"
    );
}
