//! `clawdesk export`: practice episodes as OSWorld's results tree (read back the way its
//! show_result.py reads it, each pyautogui action replayed through our pyautogui parser), as
//! TRL's and verl's Parquet layouts (loaded with `datasets`, TRL's own data utilities and the
//! columns verl's RLHFDataset reads), and as JSONL chat records whose images, tokens and
//! verdicts match the store; a served conversation turn is a record too; a non-empty folder is
//! refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clawdesk_agent::format::{ActionFormat, AgentAction, Frame};
use clawdesk_store::{EpisodeStatus, NewTurn, Store};

mod support;

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

/// Runs tests/python/export_formats.py on an export; its JSON answer.
fn read_with_python(args: &[&str]) -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/export_formats.py");
    let out = ok(Command::new(support::python())
        .arg(script)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .output()
        .expect("python"));
    serde_json::from_str(out.lines().last().unwrap_or_default()).expect("the reader's JSON")
}

/// Whether two actions in the internal form are the same up to `tol` in every number (a
/// point survives pixels only to within a pixel).
fn close(a: &serde_json::Value, b: &serde_json::Value, tol: f64) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() <= tol
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y, tol))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| close(v, w, tol)))
        }
        _ => a == b,
    }
}

/// Replays OSWorld's pyautogui `code` through our parser: true when it is the stored action
/// (within a pixel), false when the stored step held no action and the code is a comment.
fn replay(code: &str, stored: &serde_json::Value, screen: (u32, u32)) -> bool {
    let frame = Frame {
        image: screen,
        screen,
        pointer: None,
    };
    if serde_json::from_value::<clawdesk_desktop::Action>(stored.clone()).is_err() {
        assert!(code.starts_with("# "), "{code}");
        assert!(
            ActionFormat::PyAutoGui.parse(code, &frame).is_err(),
            "{code}"
        );
        return false;
    }
    let reply = ActionFormat::PyAutoGui.parse(code, &frame).expect(code);
    let [AgentAction::Desktop { action }] = reply.actions.as_slice() else {
        panic!("one desktop action in {code}");
    };
    let tol = 1.0 / f64::from(screen.0.min(screen.1)) + 1e-9;
    let replayed = serde_json::to_value(action).expect("json");
    assert!(
        close(&replayed, stored, tol),
        "{code}: {replayed} vs {stored}"
    );
    true
}

fn folder(path: &Path, parts: &[&str]) -> PathBuf {
    parts
        .iter()
        .fold(path.to_path_buf(), |p, part| p.join(part))
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
        .args(["--model", "tiny/policy"])
        .output()
        .expect("export traj"));
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).expect("summary");
    assert_eq!(summary["episodes"], 3, "conversations have no trajectory");
    let results = folder(
        dir.path(),
        &["traj", "pyautogui", "screenshot", "tiny_policy"],
    );
    let (mut steps, mut finished, mut done, mut replayed) = (0, 0, 0, 0);
    for episode in &gui_episodes {
        let domain = episode.app.clone().unwrap_or_else(|| "desktop".into());
        let id = format!("clawdesk-episode-{}", episode.id.0);
        let example = folder(&results, &[&domain, &id]);
        let task: serde_json::Value = serde_json::from_slice(
            &std::fs::read(folder(
                dir.path(),
                &[
                    "traj",
                    "evaluation_examples",
                    "examples",
                    &domain,
                    &format!("{id}.json"),
                ],
            ))
            .expect("the task file"),
        )
        .expect("json");
        assert_eq!(task["instruction"], episode.task.as_str());
        let traj = lines(&example.join("traj.jsonl"));
        let stored = store.steps(episode.id).expect("steps");
        assert_eq!(traj.len(), stored.len());
        for (line, step) in traj.iter().zip(&stored) {
            assert_eq!(line["step_num"], step.index + 1);
            assert_eq!(line["info"]["clawdesk_action"], step.action);
            // Replay: the pyautogui code reads back as the stored action, within a pixel; what
            // is no action (the tiny model's babble) becomes a comment that runs as nothing.
            let screen =
                clawdesk_runtime::export::traj::screen_size(&step.surface).expect("screen size");
            let code = line["action"].as_str().expect("pyautogui code");
            if replay(code, &step.action, screen) {
                replayed += 1;
            }
            let shot = example.join(line["screenshot_file"].as_str().expect("a screenshot"));
            let after = store
                .blob(step.after_image.as_ref().expect("after"))
                .expect("blob");
            assert_eq!(std::fs::read(&shot).expect("copied"), after);
            let verdict = store.effective_verdict(step.id).expect("verdict");
            assert_eq!(line["reward"], verdict.map_or(0, |v| v.score));
            steps += 1;
        }
        let result = std::fs::read_to_string(example.join("result.txt"));
        match episode.status {
            EpisodeStatus::Running => assert!(result.is_err(), "unfinished: no result"),
            status => {
                finished += 1;
                let want = if status == EpisodeStatus::Done {
                    done += 1;
                    "1.0\n"
                } else {
                    "0.0\n"
                };
                assert_eq!(result.expect("result.txt"), want);
            }
        }
    }
    assert_eq!(summary["steps"], steps);
    eprintln!("{replayed} of {steps} gym actions replayed; the rest were not actions");
    // OSWorld's own reading of the tree counts what the store says.
    let osworld = read_with_python(&[
        "osworld",
        &p("traj"),
        "pyautogui",
        "screenshot",
        "tiny_policy",
    ]);
    assert_eq!(osworld["runned"], finished, "{osworld}");
    assert_eq!(osworld["lines"], steps);
    assert_eq!(osworld["screenshots"], steps);
    if finished > 0 {
        let rate = osworld["success_rate"].as_f64().expect("a rate");
        assert!(
            (rate - f64::from(done) / f64::from(finished)).abs() < 1e-9,
            "{osworld}"
        );
    }
    for key in [
        "step_num",
        "action_timestamp",
        "action",
        "response",
        "reward",
        "done",
        "info",
        "screenshot_file",
    ] {
        assert!(
            osworld["keys"]
                .as_array()
                .expect("keys")
                .contains(&key.into()),
            "{key}: {osworld}"
        );
    }

    let export = |format: &str, out: &str| {
        Command::new(BIN)
            .args(["export", format, "--data-dir", &p("data"), "--out", &p(out)])
            .output()
            .expect("export")
    };
    // TRL: datasets loads the images as pictures; TRL's utilities accept and render every row.
    ok(export("trl", "trl"));
    let trl = read_with_python(&["trl", &p("trl"), &p("model")]);
    assert_eq!(
        trl["rows"],
        steps + 1,
        "every model step and the turn: {trl}"
    );
    assert_eq!(trl["rendered"], steps + 1, "{trl}");
    let judged = gui_episodes
        .iter()
        .flat_map(|e| store.steps(e.id).expect("steps"))
        .filter_map(|s| store.effective_verdict(s.id).expect("verdict"))
        .collect::<Vec<_>>();
    let positive = judged.iter().filter(|v| v.score > 0).count();
    assert_eq!(trl["labels"]["true"], positive, "{trl}");
    // verl: its columns, and every <image> marker meets an image.
    ok(Command::new(BIN)
        .args([
            "export",
            "verl",
            "--data-dir",
            &p("data"),
            "--out",
            &p("verl"),
        ])
        .arg("--judged-only")
        .output()
        .expect("export verl"));
    let verl = read_with_python(&["verl", &p("verl")]);
    assert_eq!(verl["rows"], judged.len(), "the judged steps only: {verl}");
    // Every gym step is judged and the conversation turn has no image: the same screenshots.
    assert_eq!(verl["markers"], trl["images"], "{verl} {trl}");

    // A screenshot gone from the store: the export fails, saying which, and leaves no
    // train.parquet behind for a reader to take as a (truncated) dataset.
    let first = &store.steps(gui_episodes[0].id).expect("steps")[0];
    let gone = store.blob_path(first.before_image.as_ref().expect("a screenshot"));
    let kept = std::fs::read(&gone).expect("the screenshot");
    std::fs::remove_file(&gone).expect("remove");
    let failed = export("trl", "trl-broken");
    assert!(!failed.status.success());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("trl-broken"))
        .expect("the folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "a failed export left {left:?}");
    std::fs::write(&gone, kept).expect("restore");

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

#[test]
fn every_kind_of_action_replays_from_the_osworld_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("data")).expect("store");
    let episode = store
        .begin_episode(&clawdesk_store::NewEpisode {
            task: "Save the note".into(),
            app: Some("mousepad".into()),
        })
        .expect("episode");
    let mut png = Vec::new();
    image::RgbImage::new(4, 3)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let shot = store
        .put_blob(&png, clawdesk_store::BlobKind::Png)
        .expect("blob");
    let actions = [
        serde_json::json!({"kind": "click", "at": {"x": 0.25, "y": 0.5}}),
        serde_json::json!({"kind": "click", "at": {"x": 0.1, "y": 0.9}, "button": "right", "count": 1}),
        serde_json::json!({"kind": "click", "at": {"x": 0.5, "y": 0.5}, "count": 2}),
        serde_json::json!({"kind": "move", "at": {"x": 0.75, "y": 0.125}}),
        serde_json::json!({"kind": "drag", "from": {"x": 0.2, "y": 0.2}, "to": {"x": 0.6, "y": 0.7}}),
        serde_json::json!({"kind": "scroll", "at": {"x": 0.5, "y": 0.5}, "dx": 0, "dy": 3}),
        serde_json::json!({"kind": "type", "text": "It's \"done\"\n"}),
        serde_json::json!({"kind": "key", "combo": "ctrl+s"}),
    ];
    for (i, action) in actions.iter().enumerate() {
        let action: clawdesk_desktop::Action =
            serde_json::from_value(action.clone()).expect("an action");
        store
            .insert_step(&clawdesk_store::NewStep {
                episode,
                index: i as u32,
                before_image: shot.clone(),
                after_image: Some(shot.clone()),
                before_tree: None,
                after_tree: None,
                surface: serde_json::json!({"width": 1280, "height": 720}),
                action: serde_json::to_value(&action).expect("json"),
                response: None,
                policy_version: None,
                outcome: clawdesk_store::StepOutcome::Executed,
                error: None,
                started_at_ms: 1_700_000_000_000 + i as i64,
                ended_at_ms: 1_700_000_000_500 + i as i64,
            })
            .expect("step");
    }
    store
        .finish_episode(episode, EpisodeStatus::Done, None)
        .expect("finish");
    let out = dir.path().join("traj");
    ok(Command::new(BIN)
        .args(["export", "traj", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("export traj"));
    let example = folder(
        &out,
        &[
            "pyautogui",
            "screenshot",
            "clawdesk",
            "mousepad",
            &format!("clawdesk-episode-{}", episode.0),
        ],
    );
    let traj = lines(&example.join("traj.jsonl"));
    let stored = store.steps(episode).expect("steps");
    assert_eq!(traj.len(), actions.len());
    for (line, step) in traj.iter().zip(&stored) {
        let code = line["action"].as_str().expect("code");
        // Bare code, as OSWorld records and runs it: no Markdown fence.
        assert!(
            code.starts_with("pyautogui.") && !code.contains("```"),
            "{code}"
        );
        assert!(replay(code, &step.action, (1280, 720)));
    }
    assert_eq!(traj.last().expect("last")["done"], true);
    assert_eq!(
        std::fs::read_to_string(example.join("result.txt")).expect("result"),
        "1.0\n"
    );
    let osworld = read_with_python(&[
        "osworld",
        &out.to_string_lossy(),
        "pyautogui",
        "screenshot",
        "clawdesk",
    ]);
    assert_eq!(osworld["runned"], 1, "{osworld}");
    assert_eq!(osworld["success_rate"], 1.0, "{osworld}");
    assert_eq!(osworld["domains"]["mousepad"]["runned"], 1, "{osworld}");
}

#[test]
fn without_a_data_dir_the_command_line_uses_the_folder_chosen_in_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, chosen, home) = (
        dir.path().join("config"),
        dir.path().join("chosen"),
        dir.path().join("home"),
    );
    std::fs::create_dir_all(&config).expect("config");
    let settings = serde_json::json!({ "dataDir": chosen.display().to_string() });
    std::fs::write(config.join("settings.json"), settings.to_string()).expect("settings");
    ok(Command::new(BIN)
        .args(["export", "chat", "--out"])
        .arg(dir.path().join("out"))
        .env_remove("CLAWDESK_DATA_DIR")
        .env("CLAWDESK_CONFIG_DIR", &config)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .output()
        .expect("export"));
    assert!(
        chosen.join("clawdesk.sqlite3").is_file(),
        "the store of the window's data folder was opened"
    );
    assert!(!home.join(".local/share/clawdesk").exists());
}
