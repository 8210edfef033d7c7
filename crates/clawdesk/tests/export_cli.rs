//! `clawdesk export`: practice episodes as OSWorld trajectories (traj.jsonl lines pointing at
//! screenshots that exist) and as JSONL chat records whose images, tokens and verdicts match
//! the store; a served conversation turn is a chat record too; a non-empty folder is refused.

use std::process::{Command, Output};

use clawdesk_store::{NewTurn, Store};

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn episodes_export_as_trajectories_and_chat_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    ok(Command::new(BIN)
        .args(["model", "tiny", "--out", &p("model"), "--seed", "4"])
        .output()
        .expect("tiny"));
    ok(Command::new(BIN)
        .args([
            "gym",
            "record",
            "--data-dir",
            &p("data"),
            "--model",
            &p("model"),
        ])
        .args(["--episodes", "3", "--seed", "2"])
        .output()
        .expect("gym record"));
    // A served conversation turn, as `clawdesk serve` stores one.
    {
        let store = Store::open(p("data")).expect("store");
        let episode = store
            .session_episode("s", "Name a colour.")
            .expect("session");
        store
            .insert_turn(&NewTurn {
                episode: episode.id,
                response: serde_json::json!({
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}],
                    "images": [], "text": "Blue.", "tokens": [5, 6], "logprobs": [-0.5, -0.1]
                }),
                action: serde_json::json!({"content": "Blue.", "tool_calls": []}),
                policy_version: None,
                started_at_ms: 1,
                ended_at_ms: 2,
            })
            .expect("turn");
    }
    let store = Store::open(p("data")).expect("store");
    let gui_episodes: Vec<_> = store
        .episodes(100)
        .expect("episodes")
        .into_iter()
        .filter(|e| e.session.is_none())
        .collect();
    assert_eq!(gui_episodes.len(), 3);

    let summary = ok(Command::new(BIN)
        .args([
            "export",
            "traj",
            "--data-dir",
            &p("data"),
            "--out",
            &p("traj"),
        ])
        .output()
        .expect("export traj"));
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).expect("summary");
    assert_eq!(summary["episodes"], 3, "conversations have no trajectory");
    let mut steps = 0;
    for episode in &gui_episodes {
        let folder = dir
            .path()
            .join("traj")
            .join(format!("episode-{}", episode.id.0));
        let task: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("task.json")).expect("task"))
                .expect("json");
        assert_eq!(task["instruction"], episode.task.as_str());
        let traj = lines(&folder.join("traj.jsonl"));
        let stored = store.steps(episode.id).expect("steps");
        assert_eq!(traj.len(), stored.len());
        for (line, step) in traj.iter().zip(&stored) {
            assert_eq!(line["step_num"], step.index + 1);
            assert_eq!(line["action"], step.action);
            let shot = folder.join(line["screenshot_file"].as_str().expect("a screenshot"));
            let after = store
                .blob(step.after_image.as_ref().expect("after"))
                .expect("blob");
            assert_eq!(std::fs::read(&shot).expect("copied"), after);
            let verdict = store.effective_verdict(step.id).expect("verdict");
            assert_eq!(line["reward"], verdict.map_or(0, |v| v.score));
            steps += 1;
        }
    }
    assert_eq!(summary["steps"], steps);

    ok(Command::new(BIN)
        .args([
            "export",
            "chat",
            "--data-dir",
            &p("data"),
            "--out",
            &p("chat"),
        ])
        .output()
        .expect("export chat"));
    let records = lines(&dir.path().join("chat").join("chat.jsonl"));
    assert_eq!(records.len(), steps + 1, "every model step and the turn");
    for r in &records {
        let step = store
            .step(clawdesk_store::StepId(r["step"].as_i64().expect("id")))
            .expect("step");
        let placeholders = r["prompt"]
            .as_array()
            .expect("messages")
            .iter()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["type"] == "image")
            .count();
        let images = r["images"].as_array().expect("images");
        assert_eq!(placeholders, images.len());
        for image in images {
            let path = dir.path().join("chat").join(image.as_str().expect("path"));
            assert!(path.exists(), "{}", path.display());
        }
        assert_eq!(
            r["tokens"].as_array().map(Vec::len),
            r["logprobs"].as_array().map(Vec::len)
        );
        let verdict = store.effective_verdict(step.id).expect("verdict");
        assert_eq!(
            r["reward"],
            serde_json::json!(verdict.as_ref().map(|v| v.score))
        );
        assert_eq!(r["hint"], serde_json::json!(verdict.and_then(|v| v.hint)));
    }
    let turn = records
        .iter()
        .find(|r| r["kind"] == "turn")
        .expect("the turn");
    assert_eq!(turn["completion"][0]["content"], "Blue.");

    // Only the turns with a verdict: the unjudged conversation turn is left out.
    ok(Command::new(BIN)
        .args([
            "export",
            "chat",
            "--data-dir",
            &p("data"),
            "--out",
            &p("judged"),
        ])
        .arg("--judged-only")
        .output()
        .expect("export judged"));
    assert_eq!(
        lines(&dir.path().join("judged").join("chat.jsonl")).len(),
        steps
    );

    let refused = Command::new(BIN)
        .args([
            "export",
            "chat",
            "--data-dir",
            &p("data"),
            "--out",
            &p("chat"),
        ])
        .output()
        .expect("again");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
}
