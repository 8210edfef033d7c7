//! `clawdesk adapters`: a published version is listed and exported as a loadable PEFT folder;
//! an unknown version, a folder that is not an adapter, and a non-empty target are refused.

use std::process::{Command, Output};

use clawdesk_store::{NewAdapter, Store};

const BIN: &str = env!("CARGO_BIN_EXE_clawdesk");

fn clawdesk(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run clawdesk")
}

#[test]
fn a_published_version_exports_as_a_peft_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let ok = |out: Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(clawdesk(&[
        "model",
        "tiny",
        "--out",
        &p("tiny"),
        "--seed",
        "2",
    ]));
    ok(clawdesk(&[
        "model",
        "adapter-random",
        "--model",
        &p("tiny"),
        "--rank",
        "4",
        "--seed",
        "1",
        "--out",
        &p("v3"),
    ]));
    let store = Store::open(dir.path().join("data")).expect("store");
    for (version, path) in [(3, p("v3")), (4, p("missing"))] {
        store
            .add_adapter(&NewAdapter {
                version,
                base_model: "tiny".into(),
                path,
                metrics: Some(serde_json::json!({"loss": 0.5})),
            })
            .expect("adapter row");
    }
    let data = p("data");
    let listed = ok(clawdesk(&["adapters", "list", "--data-dir", &data]));
    assert!(listed.contains("v3\ttiny\tloss 0.5000"), "{listed}");

    let printed = ok(clawdesk(&[
        "adapters",
        "export",
        "3",
        "--to",
        &p("out"),
        "--data-dir",
        &data,
    ]));
    assert!(printed.contains("--lora-modules clawdesk-v3="), "{printed}");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        let a = std::fs::read(dir.path().join("v3").join(file)).expect("source");
        let b = std::fs::read(dir.path().join("out").join(file)).expect("exported");
        assert_eq!(a, b, "{file}");
    }

    for (args, why) in [
        (
            vec!["adapters", "export", "9", "--to", &p("x")],
            "no adapter version 9",
        ),
        (vec!["adapters", "export", "4", "--to", &p("y")], "missing"),
        (
            vec!["adapters", "export", "3", "--to", &p("out")],
            "is not empty",
        ),
    ] {
        let mut args = args;
        args.extend(["--data-dir", &data]);
        let out = clawdesk(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
}
