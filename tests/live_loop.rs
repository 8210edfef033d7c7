//! The live loop on a real app: the agent acts while the judge scores its steps and the
//! trainer learns from them; the trainer publishes adapter versions during the episode and the
//! policy serves them (the recorded versions rise within the one episode); the stop key ends it.

use std::sync::Arc;
use std::time::Duration;

use clawdesk_agent::AgentPrompts;
use clawdesk_desktop::{Allowlist, GuardConfig};
use clawdesk_engine::agent::{AgentSettings, EndReason, StopOnLoop};
use clawdesk_engine::live::{LiveSettings, run_live};
use clawdesk_engine::rules::text_appears;
use clawdesk_judge::{LoopOptions, RuleJudge};
use clawdesk_model::{LoraConfig, tiny};
use clawdesk_store::{EpisodeId, Store};
use clawdesk_tests::{load_model, start_app};
use clawdesk_trainer::optim::Schedule;
use clawdesk_trainer::run::TrainLoopSettings;
use clawdesk_trainer::teacher::HintTemplate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_keeps_acting_while_it_is_judged_and_trained() {
    let guard = GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
    };
    let t = start_app(&["zenity", "--entry", "--text=Live"], "zenity", guard).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let model_dir = dir.path().join("tiny");
    tiny::write_tiny_model(&model_dir, &tiny::default_config(), 5).expect("tiny model");

    let mut agent = AgentSettings::new("Type hello into the entry.");
    agent.app = Some("zenity".into());
    agent.max_steps = 60;
    agent.sampling.max_tokens = 16;
    agent.sampling.seed = 9;
    agent.loop_repeats = 1000;
    let settings = LiveSettings {
        agent,
        episodes: 1,
        base_model: "tiny".into(),
        lora: LoraConfig::new(4, 8.0),
        train: TrainLoopSettings {
            batch: 2,
            checkpoint_every: 1000,
            schedule: Schedule::Constant { lr: 1e-3 },
            ..TrainLoopSettings::default()
        },
        publish_every: 1,
        adapters_dir: dir.path().join("adapters"),
        checkpoints_dir: dir.path().join("checkpoints"),
        judge: LoopOptions {
            poll: Duration::from_millis(100),
            ..LoopOptions::default()
        },
        trainer_idle: Duration::from_millis(100),
        policy_threads: None,
        trainer_threads: None,
    };
    let judge = Arc::new(RuleJudge::new(
        "typed-hello",
        text_appears("hello", "Click the text entry, then type hello."),
    ));

    // Press the stop key once two versions are out and the policy has served the second.
    let done = std::sync::atomic::AtomicBool::new(false);
    let watcher = {
        let store = store.clone();
        let t = &t;
        let done = &done;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let served_v2 = store
                    .episodes(1)
                    .ok()
                    .and_then(|e| e.first().map(|e| e.id))
                    .and_then(|id| store.steps(id).ok())
                    .is_some_and(|steps| {
                        let mut versions: Vec<i64> =
                            steps.iter().filter_map(|s| s.policy_version).collect();
                        versions.dedup();
                        versions.len() >= 2
                    });
                if served_v2 || tokio::time::Instant::now() > deadline {
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
            load_model(&model_dir),
            judge,
            &prompts,
            HintTemplate::built_in().expect("hint template"),
            &settings,
            &StopOnLoop,
        )
        .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        report
    };
    let (report, ()) = tokio::join!(live, watcher);
    let report = report.expect("the live loop runs");

    let episode = &report.episodes[0];
    assert_eq!(episode.ended, EndReason::StopKey, "{episode:?}");
    assert!(report.published.len() >= 2, "{report:?}");
    assert!(report.updates >= 2, "{report:?}");
    // Versions recorded on the steps never go down, and at least two adapters served.
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
    for step in &steps {
        assert!(step.after_image.is_some());
        for verdict in store.verdicts(step.id).expect("verdicts") {
            assert_eq!(verdict.score, -1, "a random model does not type hello");
            assert!(verdict.hint.is_some());
            judged_early += usize::from(verdict.created_at_ms < last_start);
        }
    }
    assert!(
        judged_early >= 2,
        "verdicts arrived only after the agent stopped"
    );
    // Each published version is an adapter row with its folder.
    let adapters = store.adapters().expect("adapters");
    assert!(adapters.len() >= report.published.len());
    for a in &adapters {
        assert!(
            std::path::Path::new(&a.path)
                .join("adapter_config.json")
                .exists()
        );
    }
}
