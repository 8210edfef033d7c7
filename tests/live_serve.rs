//! The live loop serving its policy over the OpenAI-compatible API at the same time: one
//! policy thread answers the GUI agent and the API's clients (the API reports the adapter
//! versions the trainer publishes to the agent), and a session's main turn lands in the same
//! store, where the live judge scores it from the session's next message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clawdesk_agent::AgentPrompts;
use clawdesk_desktop::{Allowlist, GuardConfig};
use clawdesk_judge::{RuleJudge, RuleVerdict, StepCase};
use clawdesk_model::tiny;
use clawdesk_runtime::episode::{AgentSettings, EndReason, StopOnLoop};
use clawdesk_runtime::live::run_live;
use clawdesk_server::ServerConfig;
use clawdesk_store::{StepId, StepKind, Store, VerdictSource};
use clawdesk_tests::{load_model, quick_live_settings, start_app};
use clawdesk_trainer::teacher::HintTemplate;
use serde_json::{Value, json};

/// Scores conversation turns +1 with a hint and screen steps -1: enough for the trainer to
/// have both kinds of sample.
fn rule(case: &StepCase) -> RuleVerdict {
    match &case.conversation {
        Some(c) => RuleVerdict {
            score: 1,
            hint: Some(format!("The user then said: {}", c.next.text)),
            reason: "a turn".into(),
        },
        None => RuleVerdict {
            score: -1,
            hint: None,
            reason: "a screen step".into(),
        },
    }
}

async fn chat(http: &reqwest::Client, base: &str, body: Value, session: Option<&str>) -> Value {
    let mut request = http
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(id) = session {
        request = request.header("x-session-id", id);
    }
    let response = request.send().await.expect("answered");
    assert!(response.status().is_success(), "{}", response.status());
    let step = response
        .headers()
        .get("x-clawdesk-step")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut answer: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    answer["step_header"] = json!(step);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_policy_is_served_and_its_conversations_are_judged_with_its_steps() {
    let guard = GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
        ..GuardConfig::default()
    };
    let t = start_app(
        &["zenity", "--entry", "--text=Live and served"],
        "zenity",
        guard,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let model_dir = dir.path().join("tiny");
    tiny::write_tiny_model(&model_dir, &tiny::default_config(), 5).expect("tiny model");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");

    let mut agent = AgentSettings::new("Type hello into the entry.");
    agent.app = Some("zenity".into());
    agent.max_steps = 200;
    agent.sampling.max_tokens = 16;
    agent.loop_repeats = 1000;
    let mut settings = quick_live_settings(dir.path(), agent);
    settings.train.checkpoint_every = 100;
    settings.serve = Some(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        ..ServerConfig::default()
    });

    let done = AtomicBool::new(false);
    let client = {
        let (store, t, done, base) = (store.clone(), &t, &done, base.clone());
        async move {
            let http = reqwest::Client::new();
            let up = async {
                loop {
                    if http.get(format!("{base}/v1/models")).send().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(60), up)
                .await
                .expect("the live loop serves the API");
            let ask = json!({"messages": [{"role": "user", "content": "Name a colour."}],
                             "max_tokens": 6});
            let first = chat(&http, &base, ask, Some("live-chat")).await;
            let said = first["choices"][0]["message"]["content"].clone();
            let step: i64 = first["step_header"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("the turn is stored");
            let follow = json!({"messages": [
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": said},
                {"role": "user", "content": "One word, please."}],
                "max_tokens": 6, "session_done": true});
            chat(&http, &base, follow, Some("live-chat")).await;
            // Wait for the turn's verdict and an adapter the trainer published, then ask once
            // more: the API answers with the agent's current adapter.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
            let mut served_version = None;
            while tokio::time::Instant::now() < deadline && !done.load(Ordering::SeqCst) {
                let judged = !store.verdicts(StepId(step)).expect("verdicts").is_empty();
                let published = !store.adapters().expect("adapters").is_empty();
                if judged && published {
                    let again = chat(
                        &http,
                        &base,
                        json!({"messages": [
                        {"role": "user", "content": "Hi"}], "max_tokens": 2}),
                        None,
                    )
                    .await;
                    served_version = again["clawdesk"]["adapter_version"].as_i64();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            t.run_in_sandbox(&["xdotool", "key", "Pause"]);
            (StepId(step), served_version)
        }
    };
    let prompts = AgentPrompts::built_in().expect("prompts");
    let live = async {
        let report = run_live(
            &t.desktop,
            store.clone(),
            load_model(&model_dir),
            Some(Arc::new(RuleJudge::new("turns-and-steps", rule))),
            &prompts,
            HintTemplate::built_in().expect("hint template"),
            &settings,
            &StopOnLoop,
        )
        .await;
        done.store(true, Ordering::SeqCst);
        report
    };
    let (report, (turn, served_version)) = tokio::join!(live, client);
    let report = report.expect("the live loop runs");
    assert_eq!(report.episodes[0].ended, EndReason::StopKey, "{report:?}");
    assert!(report.episodes[0].steps > 0);
    assert!(
        served_version.is_some_and(|v| v >= 1),
        "the API serves the adapters the trainer publishes: {served_version:?} ({report:?})"
    );
    let stored = store.step(turn).expect("the turn");
    assert_eq!(stored.kind, StepKind::Turn);
    let verdict = store
        .effective_verdict(turn)
        .expect("read")
        .expect("the live judge scored the turn");
    assert_eq!((verdict.source, verdict.score), (VerdictSource::Judge, 1));
    assert_eq!(
        verdict.hint.as_deref(),
        Some("The user then said: One word, please.")
    );
    // The API is gone with the loop.
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .is_err()
    );
}
