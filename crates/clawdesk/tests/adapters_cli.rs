//! `clawdesk adapters`: a published version is listed and exported as a loadable PEFT folder,
//! scored on the gym and activated (and rolled back to the base); an unknown version, a folder
//! that is not an adapter, and a non-empty target are refused.

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
                base_model: p("tiny"),
                path,
                metrics: Some(serde_json::json!({"loss": 0.5})),
            })
            .expect("adapter row");
    }
    let data = p("data");
    let listed = ok(clawdesk(&["adapters", "list", "--data-dir", &data]));
    let row = format!(" v3\t{}\tloss 0.5000\tgym -\t", p("tiny"));
    assert!(listed.contains(&row), "{listed}");

    // Scored on the gym: the figure lands on the row.
    let scored = ok(clawdesk(&[
        "adapters",
        "score",
        "3",
        "--tasks",
        "2",
        "--data-dir",
        &data,
    ]));
    assert!(
        scored.starts_with("v3: ") && scored.contains(" of 2 "),
        "{scored}"
    );
    let score = store.adapters().expect("rows")[0].gym_score.expect("score");
    assert!((0.0..=1.0).contains(&score));
    assert!(
        ok(clawdesk(&["adapters", "list", "--data-dir", &data]))
            .contains(&format!("gym {score:.2}")),
    );

    // Activated, then rolled back to the base.
    ok(clawdesk(&[
        "adapters",
        "activate",
        "v3",
        "--data-dir",
        &data,
    ]));
    assert_eq!(
        store.active_adapter().expect("active").map(|a| a.version),
        Some(3)
    );
    assert!(ok(clawdesk(&["adapters", "list", "--data-dir", &data])).contains("*v3\t"));
    ok(clawdesk(&[
        "adapters",
        "activate",
        "base",
        "--data-dir",
        &data,
    ]));
    assert_eq!(store.active_adapter().expect("active"), None);

    let printed = ok(clawdesk(&[
        "adapters",
        "export",
        "3",
        "--out",
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
            vec!["adapters", "activate", "9"],
            "no adapter version with id 9",
        ),
        (
            vec!["adapters", "activate", "latest"],
            "neither a version number nor base",
        ),
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
