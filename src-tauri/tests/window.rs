//! The built desktop app under Xvfb: its window renders the UI, and its own accessibility
//! tree (through WebKit's socket) is readable by the same observe code the agent uses.

use std::time::{Duration, Instant};

use clawdesk_desktop::observe::tree::role_name;
use clawdesk_desktop::{
    CaptureTarget, Desktop, DesktopConfig, ObserveOptions, Sandbox, SandboxOptions,
};

const APP: &str = env!("CARGO_BIN_EXE_clawdesk-app");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_renders_and_its_tree_is_readable() {
    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox");
    let root = tempfile::tempdir().unwrap();
    // A returning person (saved settings: the pages, not the welcome dialog) who chose a data
    // folder of their own in the Settings page; the home folder is one of the test's.
    let (config, chosen, home) = (
        root.path().join("config"),
        root.path().join("chosen data"),
        root.path().join("home"),
    );
    std::fs::create_dir_all(&config).unwrap();
    let settings = serde_json::json!({ "dataDir": chosen.display().to_string() });
    std::fs::write(config.join("settings.json"), settings.to_string()).unwrap();
    let mut child = sandbox
        .command(APP)
        .env_remove("CLAWDESK_DATA_DIR")
        .env("CLAWDESK_CONFIG_DIR", &config)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the app starts");
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.stop_key = None;
    let desktop = Desktop::connect(config).await.unwrap();

    // The app registers on the bus under its program name.
    let deadline = Instant::now() + Duration::from_secs(60);
    let app = loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the app exited with {status}: {err}");
        }
        let apps = desktop.accessibility().applications().await.unwrap();
        if let Some(app) = apps.into_iter().find(|a| a.name.contains("clawdesk")) {
            break app;
        }
        assert!(
            Instant::now() < deadline,
            "the app never appeared on the accessibility bus"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Wait until the page has loaded and asked the shell (through IPC) for the data folder.
    let options = ObserveOptions {
        target: CaptureTarget::ActiveWindow,
        app: Some(app.name.clone()),
        ..ObserveOptions::default()
    };
    // WebKit paints a moment after its tree is ready, so wait for the pixels too.
    let header_pixels = |o: &clawdesk_desktop::Observation| {
        o.screenshot
            .image
            .pixels()
            .filter(|p| p.0[..3] == [0x1d, 0x23, 0x30])
            .count()
    };
    let observation = loop {
        let o = desktop.observe(&options).await;
        if let Ok(o) = o
            && let Some(tree) = &o.tree
            && tree.linearise().contains(&chosen.display().to_string())
            && header_pixels(&o) > 10_000
        {
            break o;
        }
        if Instant::now() > deadline {
            let tree = desktop
                .observe(&options)
                .await
                .ok()
                .and_then(|o| o.tree)
                .map(|t| t.linearise());
            panic!(
                "the UI never rendered the store's answer; tree:\n{}",
                tree.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let tree = observation.tree.as_ref().unwrap();
    let text = tree.linearise();
    assert!(text.contains("heading \"ClawDesk\""), "{text}");
    assert!(
        tree.elements()
            .iter()
            .any(|e| role_name(e.role) == "button" && e.name == "Start"),
        "{text}"
    );
    for tab in ["Live", "Timeline", "Training", "Adapters", "Settings"] {
        assert!(
            tree.elements().iter().any(|e| e.name == tab),
            "the {tab} tab is labelled: {text}"
        );
    }
    let data_dir = chosen.display().to_string();
    assert!(
        text.contains(&data_dir),
        "the header shows the data directory from app_info:\n{text}"
    );
    assert!(
        chosen.join("clawdesk.sqlite3").is_file(),
        "the store was opened in the data folder the settings chose"
    );
    assert!(
        !home.join(".local/share/clawdesk").exists(),
        "nothing was written to the default data folder"
    );

    // The capture is of the app's window: the configured size, the header's band drawn.
    let shot = &observation.screenshot;
    assert_eq!(
        (shot.image.width(), shot.image.height()),
        (1100, 720),
        "{:?}",
        shot.surface
    );
    assert!(
        header_pixels(&observation) > 1100 * 50,
        "the dark header band spans the window"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn without_a_display_the_app_says_so_instead_of_panicking() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(APP)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("CLAWDESK_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no display to open the ClawDesk window on"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = std::process::Command::new(APP)
        .env("DISPLAY", ":97531")
        .env_remove("WAYLAND_DISPLAY")
        .env("CLAWDESK_DATA_DIR", data.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot open the X display"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
