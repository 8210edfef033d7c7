//! Shared fixtures: a store with recorded steps, and an endpoint judge with fast retries.
#![allow(dead_code)]

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use clawdesk_judge::{
    EndpointConfig, EndpointJudge, JudgeEvent, JudgeLoop, JudgePrompts, LoopOptions, LoopStats,
    RetryPolicy, VoteSettings,
};
use clawdesk_store::{
    BlobKind, NewEpisode, NewStep, StepId, StepOutcome, Store, Verdict, VerdictSource,
};

/// A small PNG of one colour.
pub fn png(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([shade, 128, 255 - shade]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// A store holding one episode of `steps` executed steps.
pub fn store_with_steps(steps: u32) -> (tempfile::TempDir, Arc<Store>, Vec<StepId>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("data")).expect("store");
    let episode = store
        .begin_episode(&NewEpisode {
            task: "compute 12+7 in the calculator".into(),
            app: Some("gnome-calculator".into()),
        })
        .expect("episode");
    let ids = (0..steps)
        .map(|i| {
            let before = store
                .put_blob(&png(64, 48, i as u8), BlobKind::Png)
                .expect("blob");
            let after = store
                .put_blob(&png(64, 48, i as u8 + 1), BlobKind::Png)
                .expect("blob");
            store
                .insert_step(&NewStep {
                    episode,
                    index: i,
                    before_image: before,
                    after_image: Some(after),
                    before_tree: None,
                    after_tree: None,
                    surface: serde_json::json!({"width": 64, "height": 48}),
                    action: serde_json::json!({"kind": "key", "combo": "7"}),
                    response: Some(serde_json::json!({
                        "text": format!("Action: press 7 (step {i})")
                    })),
                    policy_version: Some(1),
                    outcome: StepOutcome::Executed,
                    error: None,
                    started_at_ms: 0,
                    ended_at_ms: 1,
                })
                .expect("step")
        })
        .collect();
    (dir, Arc::new(store), ids)
}

/// Settings for tests: quick retries, short timeouts.
pub fn config(base_url: &str) -> EndpointConfig {
    EndpointConfig {
        base_url: base_url.into(),
        model: "judge-model".into(),
        timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(500),
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(5),
            max: Duration::from_millis(40),
        },
        ..EndpointConfig::default()
    }
}

pub async fn judge(config: EndpointConfig, votes: usize) -> Arc<EndpointJudge> {
    let settings = VoteSettings {
        votes,
        ..VoteSettings::default()
    };
    Arc::new(
        EndpointJudge::new(config, settings, JudgePrompts::builtin().expect("prompts"))
            .await
            .expect("judge"),
    )
}

/// Runs a loop until nothing can be judged now.
pub async fn run_until_idle(
    store: &Arc<Store>,
    judge: Arc<dyn clawdesk_judge::Judge>,
    concurrency: usize,
) -> LoopStats {
    let options = LoopOptions {
        concurrency,
        until_idle: true,
        ..LoopOptions::default()
    };
    JudgeLoop::new(store.clone(), judge, options)
        .expect("loop")
        .run(std::future::pending())
        .await
        .expect("run")
}

/// The judge verdicts on a step.
pub fn judge_verdicts(store: &Store, step: StepId) -> Vec<Verdict> {
    store
        .verdicts(step)
        .expect("verdicts")
        .into_iter()
        .filter(|v| v.source == VerdictSource::Judge)
        .collect()
}

/// Waits for `n` events of the kind `pick` accepts.
pub async fn wait_for(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<JudgeEvent>,
    n: usize,
    pick: impl Fn(&JudgeEvent) -> bool,
) {
    let mut seen = 0;
    while seen < n {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("an event within 20 s")
            .expect("the loop is running");
        if pick(&event) {
            seen += 1;
        }
    }
}
