//! Helpers for the end-to-end tests: a sandbox with one real app, and the desktop on it.

use std::process::Child;
use std::time::{Duration, Instant};

use clawdesk_desktop::{
    AppRef, Desktop, DesktopConfig, GuardConfig, Observation, ObserveOptions, Sandbox,
    SandboxOptions,
};

/// A sandbox running one app whose process the test holds (to read its exit and output).
pub struct AppUnderTest {
    pub desktop: Desktop,
    pub app: AppRef,
    pub child: Child,
    pub sandbox: Sandbox,
}

impl Drop for AppUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a sandbox, runs `argv` in it with stdout piped, and waits until `app_name` is on the
/// accessibility bus with a visible window.
pub async fn start_app(argv: &[&str], app_name: &str, guard: GuardConfig) -> AppUnderTest {
    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox starts");
    let child = sandbox
        .command(argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", argv[0]));
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.guard = guard;
    let desktop = Desktop::connect(config).await.expect("desktop connects");
    let app = desktop
        .accessibility()
        .wait_for_application(app_name, Duration::from_secs(20))
        .await
        .expect("app appears on the accessibility bus");
    let t = AppUnderTest {
        desktop,
        app,
        child,
        sandbox,
    };
    // Wait until the window is mapped and focused, so clicks land and trees have bounds.
    t.wait_for(|o| {
        o.active_window.is_some() && o.tree.as_ref().is_some_and(|t| !t.elements().is_empty())
    })
    .await;
    t
}

impl AppUnderTest {
    /// Observes the app under test.
    pub async fn observe(&self) -> Observation {
        self.desktop
            .observe(&ObserveOptions {
                app: Some(self.app.name.clone()),
                ..ObserveOptions::default()
            })
            .await
            .expect("observe")
    }

    /// Observes until `pred` holds (10 s at most), returning the observation that passed.
    pub async fn wait_for(&self, pred: impl Fn(&Observation) -> bool) -> Observation {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = self.observe().await;
            if pred(&o) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "condition not met; last tree:\n{}",
                tree_text(&o)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Observes until an editable field has keyboard focus.
    pub async fn wait_for_editable_focus(&self) -> Observation {
        self.wait_for(|o| {
            o.tree
                .as_ref()
                .and_then(|t| t.focused())
                .is_some_and(|f| f.editable)
        })
        .await
    }

    /// Presses Return (zenity's OK) and returns the app's exit code and what it printed.
    pub async fn submit(&mut self, o: &Observation) -> (Option<i32>, String) {
        let enter = clawdesk_desktop::Action::Key {
            combo: "Return".into(),
        };
        self.desktop
            .act(&enter, o)
            .await
            .expect("Return is pressed");
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits for the app to exit and returns its code and stdout.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut s) = self.child.stdout.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut out);
                }
                return (status.code(), out);
            }
            assert!(
                Instant::now() < deadline,
                "app did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a program (xdotool, say) inside the sandbox and waits for it.
    pub fn run_in_sandbox(&self, argv: &[&str]) {
        let status = self
            .sandbox
            .command(argv[0])
            .args(&argv[1..])
            .status()
            .unwrap_or_else(|e| panic!("{} runs: {e}", argv[0]));
        assert!(status.success(), "{argv:?} failed: {status}");
    }
}

/// The linearised tree of an observation, for assertion messages.
pub fn tree_text(o: &Observation) -> String {
    o.tree
        .as_ref()
        .map(|t| t.linearise())
        .unwrap_or_else(|| "(no tree)".into())
}

/// Loads a model folder on the CPU (the tests' generated tiny models).
pub fn load_model(dir: &std::path::Path) -> clawdesk_model::source::LoadedModel {
    clawdesk_trainer::gym::episode::load_cpu(dir).expect("the model loads")
}

/// A live loop that trains fast enough to see within a test: the tiny model's rank-4 adapter,
/// batches of 2 at lr 1e-3, an adapter published after every update, the judge and the idle
/// trainer looking again every 100 ms; data under `dir`, one episode, no gym score, no API.
pub fn quick_live_settings(
    dir: &std::path::Path,
    agent: clawdesk_runtime::episode::AgentSettings,
) -> clawdesk_runtime::live::LiveSettings {
    let learning = clawdesk_trainer::LearningChoices {
        batch: 2,
        lr: 1e-3,
        max_staleness: None,
        ..clawdesk_trainer::LearningChoices::default()
    };
    clawdesk_runtime::live::LiveSettings {
        keep_adapters: 0,
        checkpoints_dir: dir.join("checkpoints"),
        judge: clawdesk_judge::LoopOptions {
            poll: Duration::from_millis(100),
            ..clawdesk_judge::LoopOptions::default()
        },
        trainer_idle: Duration::from_millis(100),
        ..clawdesk_runtime::live::LiveSettings::new(
            agent,
            "tiny".into(),
            clawdesk_model::LoraConfig::new(4, 8.0),
            learning.train_loop("main"),
            dir,
        )
    }
}

/// Warm-start updates of the practice base the tests run (cached between runs): enough for
/// the action format and hint-following, not for a good policy.
pub const PRACTICE_WARM_STEPS: usize = 120;

/// The practice base: a tiny model warm-started on the gym, so it writes valid actions.
pub fn practice_base() -> std::path::PathBuf {
    // The app's own cache: the base made here is the one the app makes for
    // CLAWDESK_PRACTICE_WARM_STEPS=120, so a test of the app finds it made.
    let cache = clawdesk_runtime::paths::default_cache().expect("a cache folder");
    let settings = clawdesk_trainer::gym::warm_start::WarmStartSettings {
        steps: PRACTICE_WARM_STEPS,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let (dir, report) =
        clawdesk_trainer::gym::warm_start::practice_base(&cache, &settings, &mut |p| {
            if p.step % 20 == 0 {
                eprintln!("warm start {}/{} loss {:.3}", p.step, p.steps, p.loss);
            }
        })
        .expect("the practice base");
    eprintln!(
        "practice base in {:.0} s: held-out success {:.2} without a hint, {:.2} with",
        started.elapsed().as_secs_f64(),
        report.success_without_hint,
        report.success_with_hint
    );
    dir
}

/// `len` bytes that no other `seed` gives (xorshift): files that are really new, and that a
/// disk cannot compress.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
