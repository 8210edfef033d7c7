//! `clawdesk model ...` end to end: a tiny model written, a random adapter exported, logits
//! saved with and without it in both modes, and a generation printed.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run clawdesk");
    assert!(
        out.status.success(),
        "clawdesk {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn model_commands_work_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(
        p("shape.json"),
        r#"{"text_config": {"num_hidden_layers": 3}}"#,
    )
    .expect("write");
    run(&[
        "model",
        "tiny",
        "--out",
        &p("tiny"),
        "--seed",
        "2",
        "--config",
        &p("shape.json"),
    ]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("tiny/config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["text_config"]["num_hidden_layers"], 3);
    run(&[
        "model",
        "adapter-random",
        "--model",
        &p("tiny"),
        "--rank",
        "2",
        "--seed",
        "1",
        "--out",
        &p("adapter"),
    ]);
    assert!(dir.path().join("adapter/adapter_config.json").exists());

    let image = image::RgbImage::from_fn(80, 60, |x, y| image::Rgb([x as u8, y as u8, 7]));
    image.save(p("shot.png")).expect("png");
    let logits = |extra: &[&str], out: &str| {
        let model = p("tiny");
        let image = p("shot.png");
        let mut args = vec!["model", "logits", "--model", &model, "--prompt", "Where?"];
        args.extend_from_slice(&["--image", &image]);
        args.extend_from_slice(extra);
        let out_path = p(out);
        args.extend_from_slice(&["--out", &out_path]);
        run(&args);
        candle_core::safetensors::load(&out_path, &candle_core::Device::Cpu).expect("logits file")
    };
    let adapter = p("adapter");
    let base_fast = logits(&[], "base_fast.safetensors");
    let base_train = logits(&["--mode", "train"], "base_train.safetensors");
    let lora = logits(&["--adapter", &adapter], "lora.safetensors");
    let n = base_fast["input_ids"].dims1().expect("ids");
    assert_eq!(base_fast["logits"].dims(), &[n, 288]);
    let diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_keepdim(0))
            .and_then(|d| d.max_keepdim(1))
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.to_vec1::<f32>())
            .expect("diff")[0]
    };
    assert!(diff(&base_fast["logits"], &base_train["logits"]) < 1e-4);
    assert!(
        diff(&base_fast["logits"], &lora["logits"]) > 1e-3,
        "the adapter changed nothing"
    );

    let text = run(&[
        "model",
        "generate",
        "--model",
        &p("tiny"),
        "--prompt",
        "hi",
        "--max-tokens",
        "5",
        "--temperature",
        "0",
    ]);
    assert!(!text.is_empty());
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "model",
            "generate",
            "--model",
            "/nonexistent/model",
            "--prompt",
            "x",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model"), "{stderr}");
}
