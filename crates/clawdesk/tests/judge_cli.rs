//! `clawdesk judge ...` as a process: killed with SIGKILL mid-batch and started again, every
//! step ends with exactly one verdict set; then a person's verdict and the agreement table.

use std::io::Cursor;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clawdesk_judge::stub::{Reply, StubEndpoint};
use clawdesk_store::{BlobKind, NewEpisode, NewStep, StepId, StepOutcome, Store, VerdictSource};

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");
const STEPS: u32 = 16;

fn seed(store: &Store) -> Vec<StepId> {
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        32,
        24,
        image::Rgb([9, 99, 199]),
    ))
    .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
    .expect("png");
    let blob = store.put_blob(&png, BlobKind::Png).expect("blob");
    let episode = store
        .begin_episode(&NewEpisode {
            task: "type hello".into(),
            app: None,
        })
        .expect("episode");
    (0..STEPS)
        .map(|index| {
            store
                .insert_step(&NewStep {
                    episode,
                    index,
                    before_image: blob.clone(),
                    after_image: Some(blob.clone()),
                    before_tree: None,
                    after_tree: None,
                    surface: serde_json::json!({}),
                    action: serde_json::json!({"kind": "type", "text": "h"}),
                    response: None,
                    policy_version: None,
                    outcome: StepOutcome::Executed,
                    error: None,
                    started_at_ms: 0,
                    ended_at_ms: 0,
                })
                .expect("step")
        })
        .collect()
}

fn judged(store: &Store, steps: &[StepId]) -> Vec<usize> {
    steps
        .iter()
        .map(|s| {
            store
                .verdicts(*s)
                .expect("verdicts")
                .iter()
                .filter(|v| v.source == VerdictSource::Judge)
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_judge_process_resumes_and_judges_each_step_once() {
    let stub = StubEndpoint::start(false, |n, _| {
        let score = if n % 4 == 0 { "-1" } else { "1" };
        Reply::Answer(format!("\\boxed{{{score}}}")).after(Duration::from_millis(150))
    })
    .await
    .expect("stub");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let store = Store::open(&data).expect("store");
    let steps = seed(&store);
    let (data_arg, url) = (
        data.to_str().expect("utf8").to_owned(),
        stub.base_url.clone(),
    );
    let args = move |extra: &[&str]| {
        let mut args: Vec<String> = [
            "judge",
            "run",
            "--data-dir",
            &data_arg,
            "--endpoint",
            &url,
            "--judge-model",
            "stub-model",
            "--concurrency",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let mut child = Command::new(BIN)
        .args(args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while judged(&store, &steps).iter().sum::<usize>() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no verdicts within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let before: usize = judged(&store, &steps).iter().sum();
    assert!(
        before < STEPS as usize,
        "killed before the end ({before} judged)"
    );

    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(args(&["--until-idle"]))
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 steps still owed"));
    assert_eq!(judged(&store, &steps), vec![1; STEPS as usize]);

    // A person rejects one step the judge approved, with a hint and a correction.
    let approved = steps
        .iter()
        .find(|s| store.effective_verdict(**s).expect("v").expect("v").score == 1)
        .expect("an approved step");
    let person = Command::new(BIN)
        .args([
            "judge",
            "verdict",
            "--data-dir",
            data.to_str().expect("utf8"),
            &approved.0.to_string(),
            "--reject",
            "--hint",
            "Type the whole word at once.",
            "--correction",
            r#"{"kind":"type","text":"hello"}"#,
        ])
        .output()
        .expect("verdict");
    assert!(
        person.status.success(),
        "{}",
        String::from_utf8_lossy(&person.stderr)
    );
    let v = store.effective_verdict(*approved).expect("v").expect("v");
    assert_eq!((v.source, v.score), (VerdictSource::Person, -1));
    assert_eq!(v.correction.expect("correction")["text"], "hello");

    let bad = Command::new(BIN)
        .args([
            "judge",
            "verdict",
            "--data-dir",
            data.to_str().expect("utf8"),
            "1",
            "--approve",
            "--correction",
            r#"{"kind":"teleport"}"#,
        ])
        .output()
        .expect("verdict");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an action"));

    let table = Command::new(BIN)
        .args([
            "judge",
            "agreement",
            "--data-dir",
            data.to_str().expect("utf8"),
        ])
        .output()
        .expect("agreement");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("| stub-model @ http://127.0.0.1:"),
        "{table}"
    );
    assert!(table.contains("| 1 | 0 | 0 | 0% |"), "{table}");
}
