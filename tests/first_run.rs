//! The first run, as a new user has it: a fresh clone, the README's run command under Xvfb, the
//! welcome dialog, practice mode picked, and then an agent step, a verdict and a training update
//! appear. The window is operated the way the agent operates apps: found through AT-SPI, clicked
//! with the pointer. Screenshots go to docs/screenshots/.
//!
//! The clone shares the Cargo target directory (`~/.cache/clawdesk/target`, as every checkout
//! does), so its build is the incremental one the README's command makes after the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use accesskit::Role;
use clawdesk_desktop::{
    Action, Allowlist, Desktop, DesktopConfig, GuardConfig, MouseButton, Observation,
    ObserveOptions, Sandbox, SandboxOptions,
};
use clawdesk_store::Store;

const APP: &str = "clawdesk-app";

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

async fn observe(desktop: &Desktop) -> Observation {
    desktop
        .observe(&ObserveOptions {
            app: Some(APP.into()),
            ..ObserveOptions::default()
        })
        .await
        .expect("observe the window")
}

/// Observes until a control `role` named `name` is on screen; returns it with the observation.
async fn wait_for(
    desktop: &Desktop,
    running: &mut Running,
    role: Role,
    name: &str,
    secs: u64,
    log: &Path,
) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!(
                "the README's run command exited with {status}; its log, last lines first:\n{tail}"
            );
        }
        let apps = desktop
            .accessibility()
            .applications()
            .await
            .unwrap_or_default();
        if apps.iter().any(|a| a.name == APP) {
            let o = observe(desktop).await;
            let found = o.tree.as_ref().is_some_and(|t| {
                t.find(Some(role), name)
                    .iter()
                    .any(|e| o.point_of(e).is_some())
            });
            if found {
                return o;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {role:?} {name:?} within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn click(desktop: &Desktop, o: &Observation, role: Role, name: &str) {
    let tree = o.tree.as_ref().expect("a tree");
    let element = tree.find(Some(role), name).remove(0);
    let at = o.point_of(&element).expect("on screen");
    desktop
        .act(
            &Action::Click {
                at,
                button: MouseButton::Left,
                count: 1,
            },
            o,
        )
        .await
        .unwrap_or_else(|e| panic!("clicking {name:?}: {e}"));
}

/// Whether the window has painted its page (the accessibility tree can come first): most of
/// the screen is no longer blank white.
fn painted(o: &Observation) -> bool {
    let image = &o.screenshot.image;
    let total = (image.width() as usize * image.height() as usize).max(1);
    let white = image
        .pixels()
        .filter(|p| p.0[..3] == [255, 255, 255])
        .count();
    white * 2 < total
}

/// Observes until the window has painted (20 s at most).
async fn once_painted(desktop: &Desktop, o: Observation) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut o = o;
    while !painted(&o) {
        assert!(
            Instant::now() < deadline,
            "the window never painted its page"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        o = observe(desktop).await;
    }
    o
}

fn screenshot(o: &Observation, name: &str) {
    let png = clawdesk_desktop::observe::encode_png(&o.screenshot.image).expect("png");
    let dir = repo_root().join("docs").join("screenshots");
    std::fs::create_dir_all(&dir).expect("docs/screenshots");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds a fresh clone into the shared target directory, replacing the binaries other \
            tests run: scripts/test.sh runs it last, with --ignored"]
async fn a_fresh_clone_runs_and_practises_out_of_the_box() {
    let clone = tempfile::tempdir().expect("tempdir");
    let status = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(repo_root())
        .arg(clone.path())
        .status()
        .expect("git runs");
    assert!(status.success(), "git clone");
    let data = tempfile::tempdir().expect("tempdir");
    let log = data.path().join("run-app.log");

    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox");
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.stop_key = None;
    config.guard = GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
    };
    let desktop = Desktop::connect(config).await.expect("desktop");
    let mut running = Running {
        child: sandbox
            .command("bash")
            .arg(clone.path().join("scripts/run-app.sh"))
            .current_dir(clone.path())
            .env("CLAWDESK_DATA_DIR", data.path())
            // A shorter warm start of the practice base than a person's first run makes (the
            // one the other tests made, when they ran first).
            .env(
                "CLAWDESK_PRACTICE_WARM_STEPS",
                clawdesk_tests::PRACTICE_WARM_STEPS.to_string(),
            )
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .stdout(std::fs::File::create(&log).map(Stdio::from).expect("log"))
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .map(Stdio::from)
                    .expect("log"),
            )
            .spawn()
            .expect("the README's run command starts"),
    };

    // The welcome dialog, then practice mode.
    let o = wait_for(
        &desktop,
        &mut running,
        Role::Button,
        "Practise offline",
        2400,
        &log,
    )
    .await;
    let o = once_painted(&desktop, o).await;
    screenshot(&o, "first-run");
    click(&desktop, &o, Role::Button, "Practise offline").await;
    let o = wait_for(&desktop, &mut running, Role::Button, "Practise", 60, &log).await;
    click(&desktop, &o, Role::Button, "Practise").await;

    // The practice base warms up (a progress bar), then the first action waits for approval.
    let o = wait_for(
        &desktop,
        &mut running,
        Role::Button,
        "Approve (Enter)",
        900,
        &log,
    )
    .await;
    screenshot(&o, "practice-mode");
    click(&desktop, &o, Role::Button, "Approve (Enter)").await;
    // Then it runs on its own.
    let o = observe(&desktop).await;
    click(&desktop, &o, Role::RadioButton, "Autonomous").await;

    let store = Store::open(data.path()).expect("the app's store");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let steps = store.step_count().unwrap_or(0);
        let (rows, _) = store
            .timeline(&Default::default(), 0, 100)
            .expect("timeline");
        let judged = rows.iter().filter(|r| r.judge_score.is_some()).count();
        let updates = store.train_updates("main", 0).map(|u| u.len()).unwrap_or(0);
        if steps > 0 && judged > 0 && updates > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "steps {steps}, judged {judged}, training updates {updates}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Stop ends the session (and its practice display) before the window goes: Start is
    // offered again.
    let o = observe(&desktop).await;
    click(&desktop, &o, Role::Button, "Stop").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = observe(&desktop).await;
        let start_again = o.tree.as_ref().is_some_and(|t| {
            t.find(Some(Role::Button), "Start")
                .iter()
                .any(|e| e.enabled)
        });
        if start_again {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session never ended after Stop"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
