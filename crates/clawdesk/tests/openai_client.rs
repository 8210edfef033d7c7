//! `clawdesk serve` driven by the official OpenAI Python client (tests/python/openai_client.py):
//! plain, streamed, image and log-probability requests, errors, and a two-turn session whose
//! first turn is stored with its next state and then judged, here by the endpoint judge asking
//! the same server. And a server that would be reachable from the network without a token
//! refuses to start.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use clawdesk_store::{StepId, StepKind, Store, VerdictSource};

mod support;
use support::python;

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_openai_python_client_is_served_and_its_session_is_stored_and_judged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    ok(Command::new(BIN)
        .args(["model", "tiny", "--out", &p("model"), "--seed", "3"])
        .output()
        .expect("tiny model"));
    let mut child = Command::new(BIN)
        .args(["serve", "--model", &p("model"), "--bind", "127.0.0.1:0"])
        .args(["--data-dir", &p("data")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the listening line");
    let listening: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let base = format!(
        "http://{}",
        listening["listening"].as_str().expect("address")
    );

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/openai_client.py");
    // Served, as vLLM serves, under the name of the model it was given.
    let report = ok(Command::new(python())
        .arg(&script)
        .arg(&base)
        .arg(p("model"))
        .output()
        .expect("python"));
    let report: serde_json::Value =
        serde_json::from_str(report.trim().lines().last().expect("a report")).expect("JSON");
    let steps: Vec<StepId> = report["session_steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| StepId(s.as_i64().expect("id")))
        .collect();

    ok(Command::new(BIN)
        .args(["judge", "run", "--data-dir", &p("data"), "--until-idle"])
        .args([
            "--endpoint",
            &format!("{base}/v1"),
            "--judge-model",
            &p("model"),
        ])
        .args(["--votes", "1", "--judge-max-tokens", "12"])
        .output()
        .expect("judge"));

    let store = Store::open(p("data")).expect("store");
    // Only the session's two main turns were stored: not the other requests, not the judge's.
    assert_eq!(store.step_count().expect("count"), 2);
    let first = store.step(steps[0]).expect("first turn");
    assert_eq!(first.kind, StepKind::Turn);
    assert_eq!(
        first
            .next_state
            .as_ref()
            .and_then(|n| n["content"].as_str()),
        Some("No, name a warm colour.")
    );
    let verdicts = store.verdicts(first.id).expect("verdicts");
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].source, VerdictSource::Judge);
    let votes = verdicts[0]
        .votes
        .as_ref()
        .and_then(|v| v.as_array())
        .expect("votes");
    assert_eq!(votes.len(), 1, "the judge's raw answer is kept");
    // The last turn of an ended session has no next state: nothing to judge it from.
    let last = store.step(steps[1]).expect("second turn");
    assert_eq!(last.next_state, None);
    assert!(store.verdicts(last.id).expect("verdicts").is_empty());

    // SIGTERM: a graceful stop.
    let pid = server.0.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.0.wait().expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serving_beyond_loopback_without_a_token_is_refused() {
    let out = Command::new(BIN)
        .args(["serve", "--model", "/nonexistent", "--bind", "0.0.0.0:0"])
        .env_remove("CLAWDESK_API_TOKEN")
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
}

#[test]
fn under_load_every_answer_is_a_200_or_a_deliberate_429_and_the_limits_hold() {
    let out = ok(Command::new(BIN)
        .args([
            "bench",
            "serve",
            "--clients",
            "64",
            "--seconds",
            "3",
            "--queue",
            "8",
        ])
        .args(["--requests", "5"])
        .output()
        .expect("bench serve"));
    assert!(out.contains("| 64 concurrent clients over HTTP |"), "{out}");
    assert!(out.contains(", 0 other errors"), "{out}");
    // With 8 places for 64 clients, the queue must have turned some away.
    let busy: usize = out
        .split(" turned away with 429")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a 429 count");
    assert!(busy > 0, "{out}");
    assert!(
        out.contains(
            "a 50 MB body → 413; a 30000×30000 image → 413; the next ordinary request → 200"
        ),
        "{out}"
    );
}
