//! The built app driven over WebDriver, as a person would use it: `tauri-driver` in front of
//! WebKitGTK's WebKitWebDriver, the app in a sandbox display, a real store behind it.
//!
//! Needs `tauri-driver` (on PATH or in $CLAWDESK_TAURI_DRIVER) and `WebKitWebDriver`
//! (Debian's webkit2gtk-driver); scripts/test.sh installs both.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use clawdesk_desktop::{Sandbox, SandboxOptions};
use clawdesk_store::{
    BlobKind, EpisodeId, NewAdapter, NewEpisode, NewStep, StepId, StepOutcome, Store, VerdictSource,
};
use fantoccini::{Client, ClientBuilder, Locator};

const APP: &str = env!("CARGO_BIN_EXE_clawdesk-app");

/// The app under WebDriver, with the processes behind it.
struct Driven {
    client: Client,
    driver: Child,
    sandbox: Sandbox,
}

impl Drop for Driven {
    fn drop(&mut self) {
        // tauri-driver leads a process group of its own with the WebKitWebDriver it started;
        // both go, or a WebKitWebDriver outlives every test.
        let group = format!("-{}", self.driver.id());
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .status();
        let _ = self.driver.wait();
    }
}

fn tauri_driver() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAWDESK_TAURI_DRIVER") {
        return p.into();
    }
    PathBuf::from("tauri-driver")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The settings file of a test's app: in `config/` inside its data folder, which the app is
/// told is its config folder, so that a file written to the data folder would show.
fn settings_file(data: &Path) -> PathBuf {
    let config = data.join("config");
    std::fs::create_dir_all(&config).unwrap();
    config.join("settings.json")
}

/// Starts the app with `data` as its data folder (and `env` set) and connects a WebDriver
/// session to it.
async fn drive(data: &Path, env: &[(&str, &str)]) -> Driven {
    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox");
    let port = free_port();
    let native = free_port();
    let mut driver = sandbox
        .command(tauri_driver())
        .process_group(0)
        .args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env("CLAWDESK_DATA_DIR", data)
        .env("CLAWDESK_CONFIG_DIR", data.join("config"))
        .env("CLAWDESK_GYM_TASKS", "2")
        .envs(env.iter().copied())
        .env("CLAWDESK_LOG_FILE", data.join("app.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tauri-driver starts (cargo install tauri-driver)");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": APP }),
    );
    caps.insert("browserName".into(), "wry".into());
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                if let Ok(Some(status)) = driver.try_wait() {
                    panic!("tauri-driver exited with {status}");
                }
                assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let driven = Driven {
        client,
        driver,
        sandbox,
    };
    if driven
        .client
        .wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("body[data-ready=true]"))
        .await
        .is_err()
    {
        let page = driven
            .client
            .execute(
                "return [document.readyState, document.body.dataset.error || '', \
                 document.body.innerText.slice(0, 400)];",
                vec![],
            )
            .await;
        // Why the page's module did not finish: load it again and report its error.
        let probe = driven
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 const src = document.querySelector('script[type=module]').src;\
                 import(src + '?again').then(() => done('loaded'), e => done(e + ' ' + e.stack));",
                vec![],
            )
            .await;
        panic!("the window never finished starting: {page:?}; its module: {probe:?}");
    }
    driven
}

impl Driven {
    /// Ends the WebDriver session, which closes the app, then the driver and the display.
    async fn finish(self) {
        let _ = tokio::time::timeout(Duration::from_secs(20), self.client.clone().close()).await;
    }

    async fn click(&self, css: &str) {
        eprintln!("ui: click {css}");
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    async fn fill(&self, css: &str, value: &str) {
        let input = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }

    /// Waits until the text of `css` satisfies `pred`.
    async fn wait_text(&self, css: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(Ok(t)) = tokio::time::timeout(Duration::from_secs(10), e.text()).await
            {
                if pred(&t) {
                    return t;
                }
                last = Some(t);
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed the expected text; last it showed {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves the window as the person sees it, read from the X display it runs on: WebDriver's
    /// own snapshot leaves out the screens the app shows through its `clawdesk:` scheme, so
    /// the pictures of the live view and the review came out as empty grey boxes. Written under
    /// the test's scratch folder; with `CLAWDESK_UPDATE_SCREENSHOTS=1`, into
    /// `docs/screenshots/` for the README (tests do not write into tracked files otherwise).
    async fn screenshot(&self, name: &str) {
        eprintln!("ui: screenshot {name}");
        // The page holds what the test waited for; WebKit paints it to the display a moment
        // later (a fresh picture is decoded first).
        let _ = self
            .client
            .execute(
                "return Promise.all([...document.images].filter(i => !i.hidden && i.src)\
                   .map(i => i.decode().catch(() => null)));",
                vec![],
            )
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let display = self.sandbox.display().to_owned();
        let png = tokio::task::spawn_blocking(move || {
            let capture = clawdesk_desktop::CaptureBackend::x11(&display).expect("the display");
            // The app's is the only window on its display, and the one with focus.
            let shot = capture
                .capture(&clawdesk_desktop::CaptureTarget::ActiveWindow)
                .or_else(|_| capture.capture(&clawdesk_desktop::CaptureTarget::Screen))
                .expect("the window's pixels");
            clawdesk_desktop::observe::encode_png(&shot.image).expect("png")
        })
        .await
        .expect("capture");
        let dir = if std::env::var_os("CLAWDESK_UPDATE_SCREENSHOTS").is_some() {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("docs")
                .join("screenshots")
        } else {
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
        };
        std::fs::create_dir_all(&dir).expect("the screenshots folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("ui: saved {}", path.display());
    }
}

/// A screen with a square at `x`: before and after differ where the square moved.
fn screen_png(x: u32) -> Vec<u8> {
    let mut img = image::RgbaImage::from_pixel(640, 400, image::Rgba([240, 240, 240, 255]));
    for dy in 0..40 {
        for dx in 0..60 {
            img.put_pixel(x + dx, 100 + dy, image::Rgba([37, 99, 235, 255]));
        }
    }
    clawdesk_desktop::observe::encode_png(&img).expect("png")
}

fn seed_steps(store: &Store, episode: EpisodeId, n: u32) -> Vec<StepId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let before = store
            .put_blob(&screen_png(20 + 30 * (i % 10)), BlobKind::Png)
            .unwrap();
        let after = store
            .put_blob(&screen_png(50 + 30 * (i % 10)), BlobKind::Png)
            .unwrap();
        ids.push(
            store
                .insert_step(&NewStep {
                    episode,
                    index: i,
                    before_image: before,
                    after_image: Some(after),
                    before_tree: None,
                    after_tree: None,
                    surface: serde_json::json!({"kind": "screen", "x": 0, "y": 0, "width": 640,
                                                "height": 400, "scale": 1.0}),
                    action: serde_json::json!({"kind": "click", "at": {"x": 0.2, "y": 0.3}}),
                    response: None,
                    policy_version: Some(1),
                    outcome: StepOutcome::Executed,
                    error: None,
                    started_at_ms: 1,
                    ended_at_ms: 2,
                })
                .unwrap(),
        );
    }
    ids
}

fn metrics(loss: f64) -> serde_json::Value {
    serde_json::json!({"loss": loss, "surrogate": loss, "kl_to_base": 0.01, "mean_reward": 0.5,
        "mean_gap": 0.1, "clip_fraction": 0.05, "approx_kl": 0.002, "grad_norm": 1.0,
        "lr": 1e-3, "samples": 4, "dropped": 0, "tokens": 100, "tokens_per_second": 50.0})
}

/// One app under test at a time: the scroll test times frames, and on a 2-core machine a
/// second app and WebKit running beside it drop frames that are not the timeline's.
static ONE_APP_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reviews_steps_watches_training_exports_and_runs_the_agent() {
    let _one = ONE_APP_AT_A_TIME.lock().await;
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    // A tiny model to run the agent with, and a real adapter of it.
    let model_dir = data.path().join("tiny-model");
    clawdesk_model::tiny::write_tiny_model(&model_dir, &clawdesk_model::tiny::default_config(), 7)
        .unwrap();
    let adapter_dir = data.path().join("adapters").join("v1");
    {
        let mut loaded = clawdesk_trainer::gym::episode::load_cpu(&model_dir).unwrap();
        clawdesk_model::peft::write_random_adapter(
            &mut loaded.model,
            clawdesk_model::LoraConfig::new(4, 8.0),
            3,
            &adapter_dir,
            &model_dir.display().to_string(),
        )
        .unwrap();
    }
    store
        .add_adapter(&NewAdapter {
            version: 1,
            base_model: model_dir.display().to_string(),
            path: adapter_dir.display().to_string(),
            metrics: Some(metrics(0.4)),
        })
        .unwrap();
    let episode = store
        .begin_episode(&NewEpisode {
            task: "Move the blue box right".into(),
            app: Some("boxes".into()),
        })
        .unwrap();
    let steps = seed_steps(&store, episode, 3);
    for step in 1..=3 {
        store
            .record_train_update("live", step, &metrics(1.0 / step as f64))
            .unwrap();
    }
    let settings = serde_json::json!({
        "baseModel": model_dir.display().to_string(),
        "judge": "local",
        "sandbox": true,
        "launch": "zenity --entry --text=Name",
        "maxSteps": 2,
        "batch": 1,
        "learningRate": 0.001,
    });
    std::fs::write(
        settings_file(data.path()),
        serde_json::to_vec(&settings).unwrap(),
    )
    .unwrap();

    let app = drive(data.path(), &[]).await;

    // Timeline: the newest step opens with its before/after; reject it with a hint.
    app.click("#tab-timeline").await;
    app.wait_text("#timeline-count", 20, |t| t == "3 steps")
        .await;
    app.wait_text("#step-detail h2", 20, |t| t.contains("Step 3 of episode"))
        .await;
    app.client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#step-detail .changed"))
        .await
        .expect("the changed region is drawn");
    // The full screenshots arrive through the app's `clawdesk:` scheme.
    wait_review_images(&app, 4, 640, 20).await;
    app.fill("#verdict-hint", "drag the box, do not click it")
        .await;
    app.click("#verdict-reject").await;
    app.wait_text("#step-detail .verdicts", 20, |t| t.contains("Person: −1"))
        .await;
    let newest = store.effective_verdict(steps[2]).unwrap().expect("stored");
    assert_eq!(newest.source, VerdictSource::Person);
    assert_eq!(newest.score, -1);
    assert_eq!(
        newest.hint.as_deref(),
        Some("drag the box, do not click it")
    );
    // J moves to the next (older) step, A approves it.
    let list = app
        .client
        .find(Locator::Css("#timeline-list"))
        .await
        .unwrap();
    list.send_keys("j").await.unwrap();
    app.wait_text("#step-detail h2", 20, |t| t.contains("Step 2 of episode"))
        .await;
    // Ctrl+A and Ctrl+R are the page's (select all, reload), not verdicts. (WebDriver holds
    // Control, U+E009, down until the null key, U+E000.)
    list.send_keys("\u{E009}a\u{E000}").await.unwrap();
    list.send_keys("\u{E009}r\u{E000}").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.effective_verdict(steps[1]).unwrap().is_none(),
        "a chord with Control judged nothing"
    );
    list.send_keys("a").await.unwrap();
    app.wait_text("#step-detail .verdicts", 20, |t| t.contains("Person: +1"))
        .await;
    assert_eq!(
        store.effective_verdict(steps[1]).unwrap().map(|v| v.score),
        Some(1)
    );
    assert!(store.effective_verdict(steps[0]).unwrap().is_none());

    // Training: the curves hold the stored updates, and a new update appears live.
    app.click("#tab-training").await;
    app.wait_text("#training-status", 20, |t| t.contains("3 updates"))
        .await;
    store.record_train_update("live", 4, &metrics(0.2)).unwrap();
    app.wait_text("#training-status", 20, |t| t.contains("4 updates"))
        .await;
    let charts = app
        .client
        .find_all(Locator::Css("#charts .uplot"))
        .await
        .unwrap();
    assert!(charts.len() >= 6, "one chart per figure");
    app.screenshot("training").await;

    // Adapters: export v1 as a PEFT folder and find its files.
    app.click("#tab-adapters").await;
    app.wait_text("#adapters tbody", 20, |t| t.contains("v1"))
        .await;
    let out = data.path().join("exported-v1");
    app.fill("#export-version", "1").await;
    app.fill("#export-adapter-folder", &out.display().to_string())
        .await;
    app.click("#export-adapter").await;
    app.wait_text("#export-adapter-status", 30, |t| {
        t.starts_with("Exported v1")
    })
    .await;
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(out.join(file).is_file(), "{file} exported");
    }
    let commands = app.text("#export-adapter-commands").await;
    assert!(
        commands.contains("PeftModel.from_pretrained") && commands.contains("vllm serve"),
        "{commands}"
    );
    app.screenshot("adapters").await;

    // Settings: a bad value is named and not saved; a good one is.
    app.click("#tab-settings").await;
    app.fill("#set-votes", "0").await;
    app.click("#settings-save").await;
    app.wait_text("#set-votes-error", 10, |t| t.contains("votes per step"))
        .await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(settings_file(data.path())).unwrap()).unwrap();
    assert_eq!(saved.get("votes"), None, "nothing was saved");
    app.fill("#set-votes", "5").await;
    app.click("#settings-save").await;
    app.wait_text("#settings-status", 10, |t| t.starts_with("Saved"))
        .await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(settings_file(data.path())).unwrap()).unwrap();
    assert_eq!(saved["votes"], 5);
    assert_eq!(
        saved["device"], "auto",
        "the Device choice is saved with the rest"
    );
    assert!(
        !data.path().join("settings.json").exists(),
        "settings live in the config folder, not the data folder"
    );

    // Live: the tiny model acts in a sandbox of its own; a step lands and is shown.
    app.click("#tab-live").await;
    app.fill("#instruction", "Type your name and press OK")
        .await;
    app.click("#mode-autonomous").await;
    app.click("#agent-start").await;
    app.wait_text("#live-steps", 240, |t| t.contains("Step 1"))
        .await;
    app.client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#live-frame:not([hidden])"))
        .await
        .expect("the agent's screen is shown");
    app.screenshot("live").await;
    // Read through the page: WebKitWebDriver's element text can hang on a hidden element, and
    // the hint hides again when the session ends.
    let stop_hint = app
        .client
        .execute(
            "return document.getElementById('stop-key-hint').textContent;",
            vec![],
        )
        .await
        .expect("stop hint");
    assert!(
        stop_hint.as_str().is_some_and(|t| t.contains("PAUSE")),
        "{stop_hint}"
    );
    // The header says where the model runs (this build has no CUDA: auto is the CPU) and
    // what memory the process holds there.
    app.wait_text("#model-device", 30, |t| {
        t.starts_with("Model on CPU (f32)") && t.contains("GiB of")
    })
    .await;
    eprintln!("ui: waiting for the session to end");
    app.wait_text("#live-state", 240, |t| t.contains("the session ended"))
        .await;
    eprintln!("ui: the session ended");
    let (rows, total) = store
        .timeline(&Default::default(), 0, 10)
        .expect("timeline");
    assert!(total >= 4, "the agent's steps were stored: {rows:?}");
    eprintln!("ui: closing");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_steps_open_fast_and_scroll_smoothly() {
    let _one = ONE_APP_AT_A_TIME.lock().await;
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let episode = store
        .begin_episode(&NewEpisode {
            task: "many steps".into(),
            app: None,
        })
        .unwrap();
    seed_steps(&store, episode, 10_000);
    // A returning person (saved settings): no welcome dialog over the timeline.
    std::fs::write(settings_file(data.path()), "{}").unwrap();
    // Xvfb has no GPU: WebKit's composited mode then composites every layer of the window on
    // the CPU each frame (about a quarter of the scroll frames over 25 ms, measured); its
    // non-composited mode repaints only what changed, as a GPU compositor would spare it.
    // (WebDriver screenshots hang in that mode, so the other test keeps the default.)
    let app = drive(data.path(), &[("WEBKIT_DISABLE_COMPOSITING_MODE", "1")]).await;
    app.click("#tab-timeline").await;
    app.wait_text("#timeline-count", 30, |t| t == "10000 steps")
        .await;
    let open_ms = app
        .client
        .execute("return window.timelineOpenMs;", vec![])
        .await
        .expect("open time")
        .as_f64()
        .expect("a number");
    app.client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(180)),
            None,
            None,
        ))
        .await
        .expect("script timeout");
    // A fast wheel scroll: two rows a frame (~5,800 px/s at 60 Hz) for 900 frames (1,800
    // rows), beside the same number of idle frames as the display's own baseline.
    let measured = app
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.measureScroll(96, 900).then(done);",
            vec![],
        )
        .await
        .expect("scroll measured");
    let stat = |phase: &str, key: &str| measured[phase][key].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "timeline of 10000 steps: opened in {open_ms:.0} ms; idle {} frames, {} over 25 ms, \
         worst {:.1} ms; scrolling {} frames, {} over 25 ms, worst {:.1} ms",
        stat("idle", "frames"),
        stat("idle", "dropped"),
        stat("idle", "worstMs"),
        stat("scroll", "frames"),
        stat("scroll", "dropped"),
        stat("scroll", "worstMs"),
    );
    assert!(open_ms < 1000.0, "opened in {open_ms} ms");
    app.finish().await;
    assert_eq!(stat("scroll", "frames"), 900.0, "{measured}");
    // Scrolling drops no more frames than the idle display does, give or take 2% of them.
    assert!(
        stat("scroll", "dropped") <= stat("idle", "dropped") + 18.0,
        "dropped frames while scrolling: {measured}"
    );
}

/// The text of element `id`, read through the page (WebKitWebDriver's element text can hang).
/// Waits until the review shows at least `count` pictures, all loaded at `width` pixels.
async fn wait_review_images(app: &Driven, count: usize, width: u32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let loaded = app
            .client
            .execute(
                "const [count, width] = arguments;\
                 const imgs = [...document.querySelectorAll('#step-detail img')];\
                 return imgs.length >= count && imgs.every(i => i.complete && i.naturalWidth === width);",
                vec![count.into(), width.into()],
            )
            .await
            .expect("images checked");
        if loaded == serde_json::Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the step's screenshots never loaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn page_text(app: &Driven, id: &str) -> String {
    let script =
        format!("const e = document.getElementById('{id}'); return e ? e.textContent : '';");
    match tokio::time::timeout(Duration::from_secs(20), app.client.execute(&script, vec![])).await {
        Ok(Ok(v)) => v.as_str().unwrap_or_default().to_owned(),
        Ok(Err(e)) => panic!("reading #{id}: {e}"),
        Err(_) => panic!("reading #{id} timed out"),
    }
}

/// Waits until the text of element `id` satisfies `pred`, saying what it shows meanwhile.
async fn wait_page_text(app: &Driven, id: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        let text = page_text(app, id).await;
        if pred(&text) {
            return text;
        }
        if text != last {
            eprintln!("ui: #{id} shows {text:?}");
            last = text;
        }
        assert!(
            Instant::now() < deadline,
            "#{id} never showed the expected text; last it showed {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The cell a card's "left click at (x, y)" points at.
fn proposed_cell(description: &str) -> Option<clawdesk_gym::Cell> {
    let (x, y) = description
        .split_once('(')?
        .1
        .trim_end_matches(')')
        .split_once(',')?;
    let grid = |v: &str| v.trim().parse::<f64>().ok().map(|v| (v * 1000.0) as u32);
    clawdesk_gym::Cell::at_grid(grid(x)?, grid(y)?)
}

/// Waits for an approval card other than `previous`; returns its id.
async fn next_approval(app: &Driven, previous: Option<&str>, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let shown = app
            .client
            .execute(
                "const c = document.getElementById('approval');\
                 return c.hidden ? null : (c.dataset.id || null);",
                vec![],
            )
            .await
            .expect("read the card");
        if let Some(id) = shown.as_str()
            && Some(id) != previous
        {
            return id.to_owned();
        }
        let state = page_text(app, "live-state").await;
        assert!(
            Instant::now() < deadline,
            "no approval card within {secs} s; the session says {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn practice_in_approve_mode_a_person_approves_then_edits_a_step() {
    use clawdesk_gym::{Cell, GymAction, Task, TaskKind};
    let _one = ONE_APP_AT_A_TIME.lock().await;
    let base = clawdesk_tests::practice_base();
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).unwrap();
    let window = Path::new(APP).with_file_name("clawdesk-practice");
    assert!(
        window.is_file(),
        "{} is built with the workspace (cargo build -p clawdesk-practice)",
        window.display()
    );
    let seed = 11u64;
    let task = Task::generate(TaskKind::Click, seed);
    let Some(GymAction::Click { x, y }) = task.expert() else {
        panic!("a click task's right action is a click")
    };
    let app = drive(
        data.path(),
        &[("CLAWDESK_PRACTICE", window.to_str().expect("utf-8 path"))],
    )
    .await;

    // A first run: the welcome dialog asks for the model before anything else; a folder
    // that does not exist is named and refused, the practice base's folder is taken.
    wait_page_text(&app, "welcome-title", 20, |t| t.contains("Welcome")).await;
    // The dialog is modal: Tab from its last control comes back to its first, Shift+Tab from
    // its first goes to its last; the pages behind it are never reached.
    let focused = || async {
        app.client
            .execute("return document.activeElement.id;", vec![])
            .await
            .expect("the focused element")
    };
    app.client
        .execute(
            "document.getElementById('welcome-folder-use').focus();",
            vec![],
        )
        .await
        .expect("focus the last control");
    app.client
        .active_element()
        .await
        .expect("focused")
        .send_keys("\u{E004}")
        .await
        .expect("Tab");
    assert_eq!(focused().await, "welcome-practice");
    app.client
        .active_element()
        .await
        .expect("focused")
        .send_keys("\u{E008}\u{E004}\u{E000}")
        .await
        .expect("Shift+Tab");
    assert_eq!(focused().await, "welcome-folder-use");
    // No way out until a choice fails; then the defaults, unsaved, are one click away.
    let skip_shown = || async {
        app.client
            .execute(
                "return !document.getElementById('welcome-skip').hidden;",
                vec![],
            )
            .await
            .expect("the skip button's state")
    };
    assert_eq!(skip_shown().await, serde_json::json!(false));
    app.fill("#welcome-folder", "/no/such/model").await;
    app.click("#welcome-folder-use").await;
    wait_page_text(&app, "welcome-status", 20, |t| t.contains("/no/such/model")).await;
    assert_eq!(skip_shown().await, serde_json::json!(true));
    app.fill("#welcome-folder", base.to_str().expect("utf-8 path"))
        .await;
    app.click("#welcome-folder-use").await;
    wait_page_text(&app, "live-state", 20, |t| t.contains("approval")).await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(settings_file(data.path())).unwrap()).unwrap();
    assert_eq!(saved["baseModel"], base.display().to_string());
    // A short session with an update every two judged steps.
    app.click("#tab-settings").await;
    app.fill("#set-maxSteps", "6").await;
    app.fill("#set-batch", "2").await;
    app.click("#settings-save").await;
    app.wait_text("#settings-status", 10, |t| t.starts_with("Saved"))
        .await;

    app.click("#tab-live").await;
    app.fill("#practice-seed", &seed.to_string()).await;
    app.click("#practice-start").await;
    wait_page_text(&app, "live-state", 120, |t| t.contains(task.instruction())).await;

    // The model's first valid action waits on the card; Enter approves it.
    let first = next_approval(&app, None, 240).await;
    let proposed = page_text(&app, "approval-action").await;
    eprintln!("ui: the model proposes {proposed}");
    // The card's screen is the one the action was chosen on, loaded before the picture.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let loaded = app
            .client
            .execute(
                "const i = document.getElementById('live-frame');\
                 return !i.hidden && i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0;",
                vec![],
            )
            .await
            .expect("read the frame");
        if loaded.as_u64().unwrap_or(0) > 0 {
            assert_eq!(
                loaded.as_u64(),
                Some(1024),
                "the practice display's full width"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the card's screen never loaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.screenshot("approval").await;
    app.client
        .active_element()
        .await
        .expect("the focused Approve button")
        .send_keys("\u{E007}")
        .await
        .expect("Enter");

    // The next one is edited: the marker dragged onto the right button, then Edit.
    let second = next_approval(&app, Some(&first), 240).await;
    // Moved to another cell than the model chose: the right button when the model missed it,
    // else (on purpose) a wrong one, which the practice window will call wrong.
    let proposed = proposed_cell(&page_text(&app, "approval-action").await);
    let right = Cell::at_grid(x, y);
    let target = if proposed != right {
        right
    } else {
        let wrong = task.mistakes().remove(0);
        let GymAction::Click { x, y } = wrong else {
            panic!("a click task's mistake is a click")
        };
        Cell::at_grid(x, y)
    };
    let (tx, ty) = target.map(|c| c.center_grid()).expect("a cell");
    let to = (f64::from(tx) / 1000.0, f64::from(ty) / 1000.0);
    app.client
        .execute(
            "const [x, y] = arguments;\
             const box = document.getElementById('live-screen').getBoundingClientRect();\
             const m = document.getElementById('live-marker');\
             const at = (type, cx, cy) => m.dispatchEvent(new PointerEvent(type, {\
               pointerId: 7, bubbles: true, clientX: cx, clientY: cy }));\
             const r = m.getBoundingClientRect();\
             at('pointerdown', r.left + r.width / 2, r.top + r.height / 2);\
             at('pointermove', box.left + x * box.width, box.top + y * box.height);\
             at('pointerup', box.left + x * box.width, box.top + y * box.height);",
            vec![to.0.into(), to.1.into()],
        )
        .await
        .expect("drag the marker");
    // The arrow keys move the focused marker; right then left comes back to the same point.
    let marker_left = || async {
        let left = app
            .client
            .execute(
                "return document.getElementById('live-marker').style.left;",
                vec![],
            )
            .await
            .expect("the marker's place");
        left.as_str()
            .and_then(|l| l.trim_end_matches('%').parse::<f64>().ok())
            .expect("a percentage")
    };
    let dragged_to = marker_left().await;
    app.client
        .execute("document.getElementById('live-marker').focus();", vec![])
        .await
        .expect("focus the marker");
    let marker = app.client.active_element().await.expect("the marker");
    marker.send_keys("\u{E014}").await.expect("ArrowRight");
    let nudged = marker_left().await;
    assert!(
        (nudged - dragged_to - 0.5).abs() < 1e-6,
        "ArrowRight moved the marker half a percent: {dragged_to} -> {nudged}"
    );
    marker.send_keys("\u{E012}").await.expect("ArrowLeft");
    let back = marker_left().await;
    assert!(
        (back - dragged_to).abs() < 1e-6,
        "ArrowLeft moved it back: {back}"
    );
    // Enter on the focused Edit button edits (it used to approve the model's action).
    app.client
        .execute("document.getElementById('edit-btn').focus();", vec![])
        .await
        .expect("focus Edit");
    app.client
        .active_element()
        .await
        .expect("the focused Edit button")
        .send_keys("\u{E007}")
        .await
        .expect("Enter");
    eprintln!("ui: edited approval {second} from {proposed:?} to {target:?}");

    // The edited click ran in the practice window and its verifier called it done: the
    // practice judge's +1 lands on the person's correction.
    let deadline = Instant::now() + Duration::from_secs(120);
    let corrected = loop {
        let (rows, _) = store
            .timeline(&Default::default(), 0, 50)
            .expect("timeline");
        let found = rows.iter().find_map(|r| {
            let verdicts = store.verdicts(r.step).ok()?;
            let person = verdicts.iter().find(|v| {
                v.source == VerdictSource::Person && v.correction.is_some() && v.score == 1
            })?;
            let judged = verdicts
                .iter()
                .find(|v| v.judge.as_deref() == Some("rule practice"))?;
            Some((r.step, person.clone(), judged.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no judged correction stored: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (step, person, judged) = corrected;
    let at = &person.correction.as_ref().expect("a correction")["at"];
    let cell = Cell::at_grid(
        (at["x"].as_f64().unwrap() * 1000.0) as u32,
        (at["y"].as_f64().unwrap() * 1000.0) as u32,
    );
    assert_eq!(cell, target, "the correction is the dragged point: {at}");
    let expected = if target == right { 1 } else { -1 };
    assert_eq!(
        judged.score, expected,
        "the practice window's verdict on step {step:?}: {judged:?}"
    );
    let steps = store.steps(store.step(step).unwrap().episode).unwrap();
    // The approved step ran the model's own action; the edited one was refused and carries
    // the person's −1 with the correction.
    assert!(
        steps
            .iter()
            .any(|s| s.outcome == StepOutcome::Executed && s.response.is_some()),
        "the approved model step ran: {steps:?}"
    );
    let refused = steps
        .iter()
        .find(|s| s.outcome == StepOutcome::Refused)
        .expect("the edited proposal is stored as refused");
    let rejected = store
        .effective_verdict(refused.id)
        .unwrap()
        .expect("a verdict");
    assert_eq!(
        (rejected.score, rejected.correction.as_ref()),
        (-1, person.correction.as_ref())
    );

    // The rest runs on its own; the trainer learns from the judged steps while it does, and
    // its update is a new point on the training curves.
    app.click("#mode-autonomous").await;
    wait_page_text(&app, "live-state", 120, |t| t.contains("the session ended")).await;
    let updates = store.train_updates("main", 0).expect("updates");
    assert!(!updates.is_empty(), "the live trainer made no update");
    app.click("#tab-training").await;
    let shown = wait_page_text(&app, "training-status", 30, |t| t.starts_with("Run main:")).await;
    assert!(
        shown.contains(&format!("{} update", updates.len())),
        "{shown} vs {} stored updates",
        updates.len()
    );
    // The review of a step from this session: the practice window before and after.
    app.click("#tab-timeline").await;
    app.wait_text("#step-detail h2", 20, |t| t.contains("of episode"))
        .await;
    wait_review_images(&app, 2, 1024, 30).await;
    app.screenshot("step-review").await;
    app.finish().await;
}
