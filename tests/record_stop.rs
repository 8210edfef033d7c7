//! A scripted episode on a real app: every step is recorded with its before/after screenshots
//! and trees, and the stop key halts the list part-way.

use std::time::Duration;

use clawdesk_desktop::{Allowlist, GuardConfig};
use clawdesk_runtime::record::{RecordOptions, record};
use clawdesk_runtime::script::Script;
use clawdesk_store::{EpisodeStatus, StepOutcome, Store};
use clawdesk_tests::start_app;

fn script(steps: serde_json::Value) -> Script {
    serde_json::from_value(
        serde_json::json!({"task": "fill in the entry", "app": "zenity", "steps": steps}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_every_step_with_screens_and_trees() {
    let t = start_app(
        &["zenity", "--entry", "--text=Record me"],
        "zenity",
        GuardConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = script(serde_json::json!([
        {"kind": "click", "element": {"role": "text_input"}},
        {"kind": "type", "text": "recorded"},
        {"kind": "key", "combo": "ctrl+a"},
    ]));
    let summary = record(&t.desktop, &store, &s, &RecordOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.status, EpisodeStatus::Done);
    let steps = store
        .steps(clawdesk_store::EpisodeId(summary.episode))
        .unwrap();
    assert_eq!(steps.len(), 3);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(
            step.outcome,
            StepOutcome::Executed,
            "step {i}: {:?}",
            step.error
        );
        let png = store.blob(step.before_image.as_ref().unwrap()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            step.after_image.is_some() && step.before_tree.is_some() && step.after_tree.is_some()
        );
        assert!(step.surface["width"].as_u64().unwrap() > 0);
    }
    // The after-state of the typing step holds the text; its before-state does not.
    let tree_of = |id: &clawdesk_store::BlobId| String::from_utf8(store.blob(id).unwrap()).unwrap();
    assert!(!tree_of(steps[1].before_tree.as_ref().unwrap()).contains("recorded"));
    assert!(tree_of(steps[1].after_tree.as_ref().unwrap()).contains("recorded"));
    // Consecutive steps share the observation between them.
    assert_eq!(steps[0].after_image, steps[1].before_image.clone());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_key_halts_a_running_action_list() {
    let guard = GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
        ..GuardConfig::default()
    };
    let t = start_app(&["zenity", "--entry", "--text=Halt"], "zenity", guard).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = script(serde_json::json!([
        {"kind": "click", "element": {"role": "text_input"}},
        {"kind": "wait", "ms": 3000},
        {"kind": "type", "text": "never typed"},
        {"kind": "wait", "ms": 3000},
    ]));
    let press = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        t.run_in_sandbox(&["xdotool", "key", "Pause"]);
    };
    let options = RecordOptions::default();
    let (summary, ()) = tokio::join!(record(&t.desktop, &store, &s, &options, |_, _| {}), press);
    let summary = summary.unwrap();
    assert_eq!(summary.status, EpisodeStatus::Stopped);
    let steps = store
        .steps(clawdesk_store::EpisodeId(summary.episode))
        .unwrap();
    assert_eq!(
        steps.len(),
        2,
        "the click, then the wait that was cut short"
    );
    assert_eq!(steps[1].outcome, StepOutcome::Stopped);
    assert!(
        steps[1].ended_at_ms - steps[1].started_at_ms < 2500,
        "the wait was cut short"
    );
    let episode = store
        .episode(clawdesk_store::EpisodeId(summary.episode))
        .unwrap();
    assert_eq!(episode.status, EpisodeStatus::Stopped);
}
