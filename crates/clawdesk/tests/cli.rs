//! The `clawdesk` binary end to end: observe with both capture backends, clear errors, and a
//! `record` killed with SIGKILL leaving a sound database with every committed step, and
//! `agent parse` against the official UI-TARS parser.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawdesk_desktop::{Accessibility, Sandbox, SandboxOptions};
use clawdesk_store::Store;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");

async fn sandbox_with_entry() -> Sandbox {
    let mut sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox");
    sandbox
        .launch("zenity", &["--entry", "--text=CLI"])
        .expect("zenity");
    let a11y = Accessibility::connect(Some(sandbox.dbus_address()))
        .await
        .unwrap();
    a11y.wait_for_application("zenity", Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sandbox
}

/// The zenity entry's tree as `clawdesk observe` writes it.
fn zenity_tree(sandbox: &Sandbox) -> String {
    let dir = tempfile::tempdir().unwrap();
    let obs = sandbox
        .command(BIN)
        .args(["observe", "--app", "zenity", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(obs.status.success());
    std::fs::read_to_string(dir.path().join("tree.txt")).unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{} decodes: {e}", path.display()));
    (img.width(), img.height())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_saves_screenshot_geometry_and_tree_with_either_backend() {
    let sandbox = sandbox_with_entry().await;
    let dir = tempfile::tempdir().unwrap();
    // xcap is in builds with the `xcap` feature; without it, asking for it says how to get it.
    let backends: &[(&str, Option<&str>)] = if cfg!(feature = "xcap") {
        &[("x11", None), ("xcap", Some("--xcap"))]
    } else {
        let refused = sandbox
            .command(BIN)
            .args(["observe", "--app", "zenity", "--xcap", "--out"])
            .arg(dir.path().join("none"))
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("build with --features xcap"), "{err}");
        &[("x11", None)]
    };
    for &(name, extra) in backends {
        let out = dir.path().join(name);
        let mut cmd = sandbox.command(BIN);
        cmd.args(["observe", "--app", "zenity", "--out"]).arg(&out);
        cmd.args(extra);
        let result = cmd.output().unwrap();
        assert!(
            result.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert_eq!(png_size(&out.join("screenshot.png")), (1280, 800), "{name}");
        let surface: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("surface.json")).unwrap()).unwrap();
        assert_eq!(
            (surface["width"].as_u64(), surface["height"].as_u64()),
            (Some(1280), Some(800))
        );
        let tree = std::fs::read_to_string(out.join("tree.txt")).unwrap();
        assert!(tree.contains("text_input"), "{name}: {tree}");
        assert!(tree.contains("button \"OK\""), "{name}: {tree}");
    }
}

#[test]
fn no_display_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["observe", "--display", ":97531"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the X display \":97531\""),
        "{err}"
    );
    assert!(err.contains("clawdesk sandbox"), "the fix is named: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_app_names_the_running_ones() {
    let sandbox = sandbox_with_entry().await;
    let out = sandbox
        .command(BIN)
        .args(["observe", "--app", "no-such-app", "--out", "/tmp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no app named \"no-such-app\""), "{err}");
    assert!(err.contains("zenity"), "lists what is running: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_killed_mid_episode_keeps_every_committed_step() {
    let sandbox = sandbox_with_entry().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut steps = vec![serde_json::json!({"kind": "click", "element": {"role": "text_input"}})];
    for _ in 0..60 {
        steps.push(serde_json::json!({"kind": "type", "text": "x"}));
    }
    let script = dir.path().join("script.json");
    let body = serde_json::json!({"task": "type many x", "app": "zenity", "steps": steps});
    std::fs::write(&script, body.to_string()).unwrap();
    let mut child = sandbox
        .command(BIN)
        .args([
            "record",
            "--sandbox",
            "--no-stop-key",
            "--settle-ms",
            "20",
            "--script",
        ])
        .arg(&script)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Watch from a second connection (WAL lets us read while it writes) and kill mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        assert!(Instant::now() < deadline, "record made no progress");
        if data.join("clawdesk.sqlite3").exists()
            && let Ok(store) = Store::open(&data)
            && let Ok(n) = store.step_count()
            && n >= 5
        {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let store = Store::open(&data).expect("the database opens after the kill");
    store
        .integrity_check()
        .expect("PRAGMA integrity_check passes");
    let episode = store.episodes(10).unwrap().remove(0);
    let steps = store.steps(episode.id).unwrap();
    assert!(
        steps.len() as i64 >= seen,
        "{} steps kept, {seen} seen before the kill",
        steps.len()
    );
    assert!(steps.len() < 61, "killed before the end");
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.index as usize, i, "no gaps");
        store
            .blob(s.before_image.as_ref().expect("a GUI step has a screen"))
            .expect("before image present");
        store
            .blob(s.after_image.as_ref().unwrap())
            .expect("after image present");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_approve_a_person_rejects_an_action_before_it_runs() {
    use std::io::Write;
    let sandbox = sandbox_with_entry().await;
    let run = |answer: &'static str| {
        let mut child = sandbox
            .command(BIN)
            .args([
                "act",
                "--sandbox",
                "--approve",
                "--no-stop-key",
                r#"{"kind":"type","text":"approved"}"#,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("not this one\n");
    let err = String::from_utf8_lossy(&out.stderr);
    // A refusal by the guard has an exit status of its own, apart from errors.
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("run it?"), "the person is asked: {err}");
    assert!(
        err.contains("a person rejected the action: not this one"),
        "{err}"
    );
    let out = run("y\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The approved text reached the entry.
    let tree = zenity_tree(&sandbox);
    assert!(tree.contains("value=\"approved\""), "{tree}");
    assert!(!tree.contains("not this one"));
}

/// Issue 26: acting on a display with neither an allowlist nor the word that it is a sandbox
/// is refused, before anything is sent, with a message that names both ways on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_needs_an_allowlist_or_a_sandbox() {
    let sandbox = sandbox_with_entry().await;
    for argv in [
        vec![
            "act",
            "--no-stop-key",
            r#"{"kind":"type","text":"unguarded"}"#,
        ],
        vec![
            "agent",
            "run",
            "--no-stop-key",
            "--model",
            "/nonexistent",
            "--instruction",
            "do something",
        ],
    ] {
        let out = sandbox.command(BIN).args(&argv).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{argv:?}: {err}");
        assert!(
            err.contains("--allow") && err.contains("--sandbox"),
            "{argv:?}: {err}"
        );
    }
    let tree = zenity_tree(&sandbox);
    assert!(!tree.contains("unguarded"), "nothing was typed: {tree}");
}

#[test]
fn sandbox_command_serves_a_desktop_and_takes_it_down_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args([
            "sandbox",
            "--size",
            "800x600",
            "zenity --entry --text=Served",
        ])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let display = lines.next().unwrap().unwrap();
    let bus = lines.next().unwrap().unwrap();
    let display = display
        .strip_prefix("export DISPLAY=")
        .expect("DISPLAY line")
        .to_owned();
    let bus = bus
        .strip_prefix("export DBUS_SESSION_BUS_ADDRESS='")
        .and_then(|b| b.strip_suffix('\''))
        .expect("bus line")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let observe = || {
        Command::new(BIN)
            .args(["observe", "--display", &display, "--bus", &bus, "--out"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    // The app registers a moment after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = observe();
        if out.status.success()
            && std::fs::read_to_string(dir.path().join("tree.txt"))
                .is_ok_and(|t| t.contains("text_input"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox never showed zenity: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(png_size(&dir.path().join("screenshot.png")), (800, 600));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "SIGTERM is a clean stop");
    let out = observe();
    assert!(!out.status.success(), "the display is gone after the stop");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the X display"));
}

/// The completion script for bash names the subcommands and is valid bash.
#[test]
fn bash_completions_are_printed_and_parse() {
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .expect("clawdesk runs");
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8_lossy(&out.stdout);
    for word in ["_clawdesk()", "observe", "agent", "completions"] {
        assert!(script.contains(word), "{word} is completed");
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), script.as_bytes()).expect("written");
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .output()
        .expect("bash runs");
    assert!(parsed.status.success(), "{parsed:?}");
}

/// `agent parse` against ByteDance's own parser (the `ui-tars` package): the corpus in
/// tests/python/ui_tars_parse.py covers every action UI-TARS writes, in both coordinate forms.
/// Each difference must be a fixed one or one the script lists with its reason.
#[test]
fn agent_parse_agrees_with_the_ui_tars_package() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/ui_tars_parse.py");
    let out = Command::new(support::python())
        .arg(script)
        .arg(BIN)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("the JSON summary");
    assert!(summary["cases"].as_u64() >= Some(50), "{summary}");
}

#[test]
fn agent_parse_prints_actions_and_code_and_refuses_a_reply_without_an_action() {
    let parse = |format: &str, reply: &str| {
        let mut child = Command::new(BIN)
            .args(["agent", "parse", "--format", format, "--screen", "1000x500"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(reply.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    };
    let out = parse(
        "qwen3-vl",
        "<tool_call>\n{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click\", \"coordinate\": [500, 500]}}\n</tool_call>",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"kind\":\"click\""), "{text}");
    // x = 500/999 of 1000 pixels, y = 500/999 of 500.
    assert!(text.contains("pyautogui.click(501, 250)"), "{text}");
    let out = parse("ui-tars-1000", "I think I should click.");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a ui-tars-1000 action"), "{err}");
}

/// Issue 31: a Qwen2.5-VL model is the policy, the local judge and the trained base, through
/// the same commands as Qwen3-VL. A tiny random one in UI-TARS's pixel format acts on a real
/// app (its replies are nonsense; the path is real), judges the steps, and `train run` trains
/// on the person's verdicts and exports a PEFT adapter on the language model only, which moves
/// the model's logits. (That HF PEFT loads the adapter on the same folder and gives the same
/// logits is checked by `scripts/hf/compare-logits.py`, which needs torch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qwen25_model_acts_is_judged_and_trains() {
    let sandbox = sandbox_with_entry().await;
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (dir.path().join("q25"), dir.path().join("data"));
    let (model_s, data_s) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = |args: &[&str]| {
        let out = sandbox.command(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "clawdesk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "model",
        "tiny",
        "--arch",
        "qwen2.5-vl",
        "--seed",
        "3",
        "--out",
        model_s,
    ]);
    let summary = run(&[
        "agent",
        "run",
        "--sandbox",
        "--no-stop-key",
        "--model",
        model_s,
        "--format",
        "ui-tars-pixels",
        "--app",
        "zenity",
        "--instruction",
        "Type hello into the entry.",
        "--max-steps",
        "3",
        "--max-tokens",
        "24",
        "--data-dir",
        data_s,
    ]);
    let summary: serde_json::Value =
        serde_json::from_str(summary.lines().last().unwrap_or_default()).expect("summary");
    assert_eq!(summary["steps"], 3, "{summary}");
    run(&[
        "judge",
        "run",
        "--data-dir",
        data_s,
        "--local",
        model_s,
        "--votes",
        "2",
        "--judge-max-tokens",
        "16",
        "--until-idle",
    ]);
    let steps = Store::open(&data)
        .unwrap()
        .steps(clawdesk_store::EpisodeId(
            summary["episode"].as_i64().unwrap(),
        ))
        .unwrap();
    assert_eq!(steps.len(), 3);
    for step in &steps {
        // Every step holds the policy's turn in this family's template.
        let turn = clawdesk_agent::turn::PolicyTurn::of_step(step.response.as_ref())
            .expect("a well-formed policy turn")
            .expect("the model's turn");
        assert_eq!(turn.tokens.len(), turn.logprobs.len());
        run(&[
            "judge",
            "verdict",
            "--data-dir",
            data_s,
            &step.id.0.to_string(),
            "--reject",
            "--hint",
            "Click the entry first, then type hello.",
        ]);
    }
    let adapter = dir.path().join("adapter");
    let checkpoints = dir.path().join("checkpoints");
    run(&[
        "train",
        "run",
        "--data-dir",
        data_s,
        "--model",
        model_s,
        "--checkpoints",
        checkpoints.to_str().unwrap(),
        "--run",
        "q25",
        "--batch",
        "3",
        "--seed",
        "1",
        "--until-updates",
        "1",
        "--until-idle",
        "--export",
        adapter.to_str().unwrap(),
    ]);
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["target_modules"],
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    );
    let weights = candle_core::safetensors::load(
        adapter.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    // Two layers × seven linears × (A, B), none in the vision tower.
    assert_eq!(weights.len(), 28);
    assert!(
        weights
            .keys()
            .all(|k| k.starts_with("base_model.model.model.language_model.layers.")),
        "{:?}",
        weights.keys()
    );
    let logits = |adapter: Option<&Path>| {
        let out = dir.path().join("logits.safetensors");
        let mut args = vec![
            "model",
            "logits",
            "--model",
            model_s,
            "--prompt",
            "Where is the entry?",
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        run(&args);
        candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap()["logits"].clone()
    };
    let moved = (logits(Some(&adapter)) - logits(None))
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .unwrap();
    assert!(moved > 1e-4, "training left the logits where they were");
}
