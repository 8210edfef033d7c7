//! `clawdesk bench observe`: the observe path on a real app in a sandbox, beside OSWorld's
//! stack (pyautogui screenshot, pyatspi tree linearisation, Pillow PNG) run on the same
//! display in the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clawdesk_desktop::observe::encode_png;
use clawdesk_desktop::{
    Accessibility, CaptureBackend, CaptureTarget, Desktop, DesktopConfig, KeepTrees,
    ObserveOptions, Sandbox, TreeRead, WalkLimits,
};
use clawdesk_store::{BlobKind, NewEpisode, NewStep, StepOutcome, Store};

use super::{Row, Stats, table};

#[derive(Debug, Clone, clap::Args)]
pub struct ObserveBenchArgs {
    /// Screen size of the sandbox, WIDTHxHEIGHT.
    #[arg(long, default_value = "1920x1080")]
    pub size: String,
    /// The app to observe (started in the sandbox).
    #[arg(long, default_value = "gtk3-demo")]
    pub app: String,
    /// Arguments for the app, in one string split at spaces (`--file-selection
    /// --filename=/usr/share/doc/` opens zenity's GTK file chooser on a long list).
    #[arg(long, allow_hyphen_values = true)]
    pub app_args: Option<String>,
    /// Two keys pressed in turn between the "after a key press" observations, to change the
    /// app the way an action would (in gtk3-demo and a file chooser they move the selection).
    #[arg(long, default_value = "Down,Up")]
    pub keys: String,
    /// Measured iterations (after 3 warm-up rounds).
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Python interpreter with pyautogui and pyatspi for the baseline.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip the OSWorld baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Internal: only time xcap captures on $DISPLAY and print them as JSON.
    #[arg(long, hide = true)]
    pub xcap_probe: bool,
}

/// Timings of the baseline script, in milliseconds.
#[derive(Debug, Default, serde::Deserialize)]
struct Baseline {
    screenshot: Vec<f64>,
    tree: Vec<f64>,
    encode: Vec<f64>,
    step: Vec<f64>,
    nodes: usize,
}

fn default_python() -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/clawdesk/osworld-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("/usr/bin/python3")
    }
}

fn baseline_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/osworld_baseline.py")
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Runs the benchmark and returns the table.
pub async fn run(args: ObserveBenchArgs) -> anyhow::Result<String> {
    if args.xcap_probe {
        return xcap_probe(args.iterations);
    }
    let (w, h) = clawdesk_runtime::parse_size(&args.size).map_err(|detail| {
        clawdesk_runtime::RuntimeError::Script {
            path: "--size".into(),
            detail,
        }
    })?;
    let mut sandbox = super::start_sandbox(w, h).await?;
    let app_args: Vec<&str> = args
        .app_args
        .as_deref()
        .map(|a| a.split_whitespace().collect())
        .unwrap_or_default();
    sandbox.launch(&args.app, &app_args)?;
    let keys: Vec<&str> = args.keys.split(',').map(str::trim).collect();
    let [key_a, key_b] = keys[..] else {
        return Err(anyhow::anyhow!("--keys takes two keys, as in Down,Up"));
    };
    let a11y = Accessibility::connect(Some(sandbox.dbus_address())).await?;
    let app = a11y
        .wait_for_application(&args.app, Duration::from_secs(20))
        .await?;
    // Let the app finish drawing its first frame.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.stop_key = None;
    let desktop = Desktop::connect(config).await?;
    let capture = CaptureBackend::x11(sandbox.display())?;
    let dir = tempfile::tempdir().map_err(|e| {
        anyhow::Error::from(super::External {
            program: "tempdir".into(),
            detail: e.to_string(),
        })
    })?;

    let (mut cap, mut tree_t, mut enc, mut ins, mut step, mut full) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // What the guard reads at the moment of acting (issue 26), for a keystroke and a click.
    let (mut guard_key, mut guard_click) = (vec![], vec![]);
    // What the agent waits for (issue 29): `Desktop::observe` whole, and its app list; the
    // tree walked whole each time or kept between steps, with the app unchanged or changed
    // by a key press since the last observation.
    let (mut whole, mut listing) = (vec![], vec![]);
    let (mut kept_still, mut walked_changed, mut kept_changed) = (vec![], vec![], vec![]);
    let mut kept_reads: Vec<TreeRead> = Vec::new();
    let walk = ObserveOptions {
        keep: KeepTrees::never(),
        ..ObserveOptions::default()
    };
    let keep = ObserveOptions::default();
    let keystroke = clawdesk_desktop::Action::Type {
        text: "x".into(),
        paste: false,
    };
    let click = clawdesk_desktop::Action::Click {
        at: clawdesk_desktop::NormPoint::new(0.5, 0.5),
        button: clawdesk_desktop::MouseButton::Left,
        count: 1,
    };
    let mut nodes = 0;
    for i in 0..args.iterations + 3 {
        let t0 = Instant::now();
        let shot = capture.capture(&CaptureTarget::Screen)?;
        let c = ms(t0);
        let t1 = Instant::now();
        let tree = desktop
            .accessibility()
            .snapshot(&app, WalkLimits::default())
            .await?;
        let text = tree.linearise();
        let t = ms(t1);
        let s = ms(t0);
        let t2 = Instant::now();
        let png = encode_png(&shot.image)?;
        let e = ms(t2);
        // A fresh store each round, so the blob is really written (same screen, same hash).
        let store = Store::open(dir.path().join(format!("s{i}")))?;
        let episode = store.begin_episode(&NewEpisode {
            task: "bench".into(),
            app: Some(args.app.clone()),
        })?;
        let t3 = Instant::now();
        let image = store.put_blob(&png, BlobKind::Png)?;
        let tree_blob = store.put_blob(text.as_bytes(), BlobKind::Json)?;
        store.insert_step(&NewStep {
            episode,
            index: 0,
            before_image: image.clone(),
            after_image: Some(image),
            before_tree: Some(tree_blob),
            after_tree: None,
            surface: serde_json::to_value(&shot.surface).unwrap_or_default(),
            action: serde_json::json!({"kind": "wait", "ms": 0}),
            response: None,
            policy_version: None,
            outcome: StepOutcome::Executed,
            error: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })?;
        let n = ms(t3);
        let t4 = Instant::now();
        desktop.context_now(&keystroke, &shot.surface).await?;
        let gk = ms(t4);
        let t5 = Instant::now();
        desktop.context_now(&click, &shot.surface).await?;
        let gc = ms(t5);
        let t6 = Instant::now();
        desktop.observe(&walk).await?;
        let w = ms(t6);
        let t7 = Instant::now();
        desktop.accessibility().applications().await?;
        let l = ms(t7);
        // The app changes: the kept tree is refreshed from its events ...
        press(&sandbox, key_a)?;
        let (kc, read_changed) = timed_observe(&desktop, &keep).await?;
        let (ks, read_still) = timed_observe(&desktop, &keep).await?;
        // ... or walked whole.
        press(&sandbox, key_b)?;
        let (wc, _) = timed_observe(&desktop, &walk).await?;
        if i >= 3 {
            kept_changed.push(kc);
            kept_still.push(ks);
            walked_changed.push(wc);
            kept_reads.extend(read_changed);
            kept_reads.extend(read_still);
            whole.push(w);
            listing.push(l);
            guard_key.push(gk);
            guard_click.push(gc);
            cap.push(c);
            tree_t.push(t);
            step.push(s);
            enc.push(e);
            ins.push(n);
            full.push(s + e + n);
            nodes = tree.len();
        }
    }

    let xcap = run_xcap_probe(&sandbox, args.iterations);
    let baseline = if args.no_baseline {
        Baseline::default()
    } else {
        run_baseline(&args, &sandbox)?
    };
    let xcap_stats = match &xcap {
        Ok(v) => Stats::of(v),
        Err(e) => {
            tracing::warn!("xcap probe failed: {e}");
            None
        }
    };
    let rows = vec![
        Row {
            what: "screen capture (X11 MIT-SHM) vs pyautogui.screenshot".into(),
            ours: Stats::of(&cap),
            baseline: Stats::of(&baseline.screenshot),
        },
        Row {
            what: "screen capture (xcap) vs pyautogui.screenshot".into(),
            ours: xcap_stats,
            baseline: Stats::of(&baseline.screenshot),
        },
        Row {
            what: format!(
                "tree walk + linearise ({nodes} nodes; pyatspi {} nodes)",
                baseline.nodes
            ),
            ours: Stats::of(&tree_t),
            baseline: Stats::of(&baseline.tree),
        },
        Row {
            what: "PNG encode (ours fast; Pillow default)".into(),
            ours: Stats::of(&enc),
            baseline: Stats::of(&baseline.encode),
        },
        Row {
            what: "store insert (blobs, each fsynced, + step row)".into(),
            ours: Stats::of(&ins),
            baseline: None,
        },
        Row {
            what: "guard read before a keystroke (focused app + its focused element)".into(),
            ours: Stats::of(&guard_key),
            baseline: None,
        },
        Row {
            what: "guard read before a click (the window under the point)".into(),
            ours: Stats::of(&guard_click),
            baseline: None,
        },
        Row {
            what: "observed step (capture + tree)".into(),
            ours: Stats::of(&step),
            baseline: Stats::of(&baseline.step),
        },
        Row {
            what: "observed step + encode + store".into(),
            ours: Stats::of(&full),
            baseline: None,
        },
        Row {
            what: "the apps on the bus (kept between steps; new ones asked)".into(),
            ours: Stats::of(&listing),
            baseline: None,
        },
        Row {
            what: "Desktop::observe (active window, apps, focused app, capture, tree, window \
                   rect), tree walked whole"
                .into(),
            ours: Stats::of(&whole),
            baseline: Stats::of(&baseline.step),
        },
        Row {
            what: "Desktop::observe, tree kept, the app unchanged".into(),
            ours: Stats::of(&kept_still),
            baseline: Stats::of(&baseline.step),
        },
        Row {
            what: format!(
                "Desktop::observe after a key press ({key_a}/{key_b}), tree walked whole"
            ),
            ours: Stats::of(&walked_changed),
            baseline: Stats::of(&baseline.step),
        },
        Row {
            what: format!(
                "Desktop::observe after a key press ({key_a}/{key_b}), tree kept and refreshed"
            ),
            ours: Stats::of(&kept_changed),
            baseline: Stats::of(&baseline.step),
        },
    ];
    // The kept tree must be the tree: compare it once with a whole walk, the app unchanged.
    let kept_tree = desktop.observe(&keep).await?.tree;
    let whole_tree = desktop.observe(&walk).await?.tree;
    let same = match (&kept_tree, &whole_tree) {
        (Some(k), Some(w)) => first_difference(k, w),
        _ => Some("one of the two reads has no tree".into()),
    };
    sandbox.stop();
    let title = format!(
        "bench observe: {} on a {w}x{h} Xvfb + openbox sandbox, {} iterations (+3 warm-up), {} build",
        args.app,
        args.iterations,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut out = table(&title, "OSWorld stack", &rows);
    out.push_str(&kept_summary(&kept_reads, same));
    Ok(out)
}

/// Presses `key` in the sandbox (the person's keyboard, not the guarded agent) and gives the
/// app a moment to redraw, as the agent's settle would.
fn press(sandbox: &Sandbox, key: &str) -> anyhow::Result<()> {
    let status = sandbox
        .command("xdotool")
        .args(["key", key])
        .status()
        .map_err(|e| {
            anyhow::Error::from(super::External {
                program: "xdotool".into(),
                detail: format!("{e}; install it with `apt-get install xdotool`"),
            })
        })?;
    if !status.success() {
        return Err(anyhow::anyhow!("xdotool key {key} failed: {status}"));
    }
    std::thread::sleep(Duration::from_millis(250));
    Ok(())
}

async fn timed_observe(
    desktop: &Desktop,
    options: &ObserveOptions,
) -> anyhow::Result<(f64, Option<TreeRead>)> {
    let t = Instant::now();
    let o = desktop.observe(options).await?;
    Ok((ms(t), o.timings.tree_read))
}

/// How the kept rows' trees were read, and whether the kept tree equalled a whole walk.
fn kept_summary(reads: &[TreeRead], difference: Option<String>) -> String {
    let mut walked: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut kept, mut events, mut reread, mut added, mut extents) = (0, 0, 0, 0, 0);
    for r in reads {
        match r {
            TreeRead::Kept {
                events: e,
                reread: r,
                added: a,
                extents: x,
            } => {
                kept += 1;
                (events, reread, added, extents) = (events + e, reread + r, added + a, extents + x);
            }
            TreeRead::Walked { why } => *walked.entry(format!("{why:?}")).or_default() += 1,
        }
    }
    let per = |n: usize| n as f64 / kept.max(1) as f64;
    format!(
        "\nKept-tree observations: {kept} of {} refreshed from events (per refresh: {:.1} \
         events, {:.1} nodes read again, {:.1} new, {:.1} extents); walked whole: {walked:?}. \
         The kept tree equals a whole walk: {}.\n",
        reads.len(),
        per(events),
        per(reread),
        per(added),
        per(extents),
        difference.map_or("yes".to_owned(), |d| format!("NO ({d})"))
    )
}

/// Where two trees of the same app first differ, if they do.
fn first_difference(
    kept: &clawdesk_desktop::AccessTree,
    whole: &clawdesk_desktop::AccessTree,
) -> Option<String> {
    let mut out = Vec::new();
    if kept.update.focus != whole.update.focus {
        out.push(format!(
            "focus on node {} kept, {} walked",
            kept.update.focus.0, whole.update.focus.0
        ));
    }
    if kept.len() != whole.len() {
        out.push(format!("{} nodes kept, {} walked", kept.len(), whole.len()));
    }
    out.extend(
        kept.update
            .nodes
            .iter()
            .zip(&whole.update.nodes)
            .find(|(k, w)| k != w)
            .map(|(k, w)| format!("node {}: kept {:?}, walked {:?}", k.0.0, k.1, w.1)),
    );
    (!out.is_empty()).then(|| out.join("; "))
}

/// Times xcap in a child process, since xcap reads $DISPLAY and this process must not change
/// its own environment.
fn run_xcap_probe(sandbox: &Sandbox, iterations: usize) -> anyhow::Result<Vec<f64>> {
    let exe = std::env::current_exe().map_err(|e| {
        anyhow::Error::from(super::External {
            program: "clawdesk".into(),
            detail: e.to_string(),
        })
    })?;
    let out = sandbox
        .command(exe)
        .args([
            "bench",
            "observe",
            "--xcap-probe",
            "--iterations",
            &iterations.to_string(),
        ])
        .output()
        .map_err(|e| {
            anyhow::Error::from(super::External {
                program: "xcap probe".into(),
                detail: e.to_string(),
            })
        })?;
    if !out.status.success() {
        return Err(anyhow::Error::from(super::External {
            program: "xcap probe".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        }));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::Error::from(super::External {
            program: "xcap probe".into(),
            detail: e.to_string(),
        })
    })
}

fn xcap_probe(iterations: usize) -> anyhow::Result<String> {
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + 3 {
        let t = Instant::now();
        CaptureBackend::Xcap.capture(&CaptureTarget::Screen)?;
        if i >= 3 {
            samples.push(ms(t));
        }
    }
    serde_json::to_string(&samples).map_err(|e| {
        anyhow::Error::from(super::External {
            program: "json".into(),
            detail: e.to_string(),
        })
    })
}

fn run_baseline(args: &ObserveBenchArgs, sandbox: &Sandbox) -> anyhow::Result<Baseline> {
    let python = args.python.clone().unwrap_or_else(default_python);
    let script = baseline_script();
    let out = sandbox
        .command(&python)
        .arg(&script)
        .args([
            "--app",
            &args.app,
            "--iterations",
            &args.iterations.to_string(),
        ])
        .output()
        .map_err(|e| {
            anyhow::Error::from(super::External {
                program: python.display().to_string(),
                detail: format!("{e}; run `bash bench/setup-baseline.sh` to install the baseline"),
            })
        })?;
    if !out.status.success() {
        return Err(anyhow::Error::from(super::External {
            program: format!("{} {}", python.display(), script.display()),
            detail: format!(
                "{}; run `bash bench/setup-baseline.sh` to install pyautogui and pyatspi",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }));
    }
    // python-xlib prints warnings on stdout; the timings are the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(last).map_err(|e| {
        anyhow::Error::from(super::External {
            program: "baseline".into(),
            detail: format!(
                "unreadable output ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    })
}
