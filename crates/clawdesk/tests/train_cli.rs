//! `clawdesk train run` as a process: SIGKILLed during training and started again, the adapter
//! after the last update equals the one an uninterrupted run makes from the same store, and
//! every update's figures are in the store once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clawdesk_model::tiny;
use clawdesk_store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");
const UPDATES: u64 = 6;

fn clawdesk(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run clawdesk");
    assert!(
        out.status.success(),
        "clawdesk {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn train_args<'a>(
    data: &'a str,
    model: &'a str,
    checkpoints: &'a str,
    run: &'a str,
) -> Vec<&'a str> {
    vec![
        "train",
        "run",
        "--data-dir",
        data,
        "--model",
        model,
        "--checkpoints",
        checkpoints,
        "--run",
        run,
        "--batch",
        "4",
        "--checkpoint-every",
        "1",
        "--lr",
        "0.01",
        "--seed",
        "7",
    ]
}

fn latest_step(checkpoints: &Path) -> u64 {
    std::fs::read_to_string(checkpoints.join("LATEST"))
        .ok()
        .and_then(|name| name.trim().trim_start_matches("step-").parse::<u64>().ok())
        .unwrap_or(0)
}

fn adapter(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(
        dir.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .expect("adapter weights")
}

#[test]
fn a_killed_training_run_resumes_to_the_same_adapter() {
    let root = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| root.path().join(name).to_string_lossy().into_owned();
    tiny::write_tiny_model(&root.path().join("model"), &tiny::default_config(), 5).expect("tiny");
    let (data, model) = (path("data"), path("model"));
    let (ckpt_a, ckpt_b) = (path("a"), path("b"));
    let (export_a, export_b) = (path("a-adapter"), path("b-adapter"));
    // Practice episodes with their rule verdicts and hints: the data both runs learn from.
    clawdesk(&[
        "gym",
        "record",
        "--data-dir",
        &data,
        "--model",
        &model,
        "--episodes",
        "32",
        "--seed",
        "3",
    ]);

    // The uninterrupted run.
    let mut args = train_args(&data, &model, &ckpt_a, "a");
    let until = UPDATES.to_string();
    args.extend(["--until-updates", &until, "--export", &export_a]);
    let out = clawdesk(&args);
    // Each update says what it did in one line, whatever the log filter.
    let said = String::from_utf8_lossy(&out.stderr);
    for step in 1..=UPDATES {
        assert!(
            said.lines()
                .any(|l| l.starts_with(&format!("update {step}: loss "))),
            "no summary of update {step}:\n{said}"
        );
    }

    // The same run, SIGKILLed once two checkpoints are down, then started again.
    let mut args = train_args(&data, &model, &ckpt_b, "b");
    args.extend(["--until-updates", &until]);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(300);
    while latest_step(&root.path().join("b")) < 2 {
        assert!(Instant::now() < deadline, "no second checkpoint in time");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let killed_at = latest_step(&root.path().join("b"));
    assert!(
        killed_at < UPDATES,
        "killed too late to test a resume ({killed_at})"
    );
    args.extend(["--export", &export_b]);
    let out = clawdesk(&args);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{UPDATES} updates")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let a = adapter(&root.path().join("a-adapter"));
    let b = adapter(&root.path().join("b-adapter"));
    assert_eq!(a.len(), b.len());
    let mut moved = 0f32;
    for (name, ta) in &a {
        let tb = b.get(name).expect("same tensors");
        let diff: f32 = (ta - tb)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar())
            .expect("diff");
        assert!(diff <= 1e-5, "{name} differs by {diff} after the resume");
        if name.contains("lora_B") {
            moved = moved.max(
                ta.abs()
                    .and_then(|t| t.max_all())
                    .and_then(|t| t.to_scalar())
                    .expect("max"),
            );
        }
    }
    assert!(moved > 0.0, "the updates did not change the adapter");

    let store = Store::open(root.path().join("data")).expect("store");
    for run in ["a", "b"] {
        let steps: Vec<i64> = store
            .train_updates(run, 0)
            .expect("figures")
            .iter()
            .map(|u| u.step)
            .collect();
        assert_eq!(steps, (1..=UPDATES as i64).collect::<Vec<_>>(), "run {run}");
    }
    let first = &store.train_updates("b", 0).expect("figures")[0].metrics;
    for key in [
        "loss",
        "mean_reward",
        "clip_fraction",
        "approx_kl",
        "grad_norm",
        "tokens_per_second",
    ] {
        assert!(first[key].is_number(), "{key} missing from {first}");
    }
}
