//! The desktop layer on real GTK apps in a sandbox: find, click, type, drag, scroll, and the
//! guard's refusals, each checked through the app's own behaviour or its accessibility tree.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use accesskit::Role;
use clawdesk_desktop::{
    Action, Allowlist, DesktopError, GuardConfig, KeepTrees, MouseButton, NormPoint,
    ObserveOptions, Refusal, TreeRead, WalkLimits, WalkReason, x11,
};
use clawdesk_tests::{AppUnderTest, start_app, tree_text};

fn any_app() -> GuardConfig {
    GuardConfig {
        allowlist: Allowlist::Any,
        max_steps: None,
        ..GuardConfig::default()
    }
}

fn click(at: NormPoint) -> Action {
    Action::Click {
        at,
        button: MouseButton::Left,
        count: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_a_button_found_through_the_tree() {
    let mut t = start_app(
        &["zenity", "--question", "--text=Proceed?"],
        "zenity",
        any_app(),
    )
    .await;
    let o = t
        .wait_for(|o| {
            o.tree
                .as_ref()
                .is_some_and(|tr| !tr.find(Some(Role::Button), "Yes").is_empty())
        })
        .await;
    let yes = o
        .tree
        .as_ref()
        .unwrap()
        .find(Some(Role::Button), "Yes")
        .remove(0);
    let at = o.point_of(&yes).expect("the button is on screen");
    // The hit test agrees with the search.
    let (cx, cy) = yes.center().unwrap();
    assert_eq!(
        o.tree.as_ref().unwrap().element_at(cx, cy).unwrap().name,
        "Yes",
        "{}",
        tree_text(&o)
    );
    t.desktop.act(&click(at), &o).await.expect("click runs");
    let (code, _) = t.wait_exit(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(0),
        "zenity --question exits 0 when Yes is clicked"
    );
}

/// GTK 4 marks no widget below the window as SHOWING; its buttons must still be visible
/// elements that the agent can find and click, and the result readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_through_a_gtk4_calculator_and_reads_the_result() {
    let t = start_app(&["gnome-calculator"], "gnome-calculator", any_app()).await;
    // GTK 4 names a calculator key "<label> <label>"; its first word is the key.
    let key = |o: &clawdesk_desktop::Observation, label: &str| {
        o.tree.as_ref().and_then(|tr| {
            tr.elements()
                .into_iter()
                .find(|e| e.role == Role::Button && e.name.split_whitespace().next() == Some(label))
        })
    };
    for label in ["1", "2", "+", "7", "="] {
        let o = t.wait_for(|o| key(o, label).is_some()).await;
        let button = key(&o, label).expect("the key is in the tree");
        let at = o.point_of(&button).expect("the key is on screen");
        t.desktop.act(&click(at), &o).await.expect("click runs");
    }
    let shows_19 = |o: &clawdesk_desktop::Observation| {
        o.tree.as_ref().is_some_and(|tr| {
            tr.elements()
                .iter()
                .any(|e| e.name == "19" || e.value.as_deref() == Some("19"))
        })
    };
    let o = t.wait_for(shows_19).await;
    assert!(shows_19(&o), "{}", tree_text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_unicode_text_and_reads_it_back_through_the_tree() {
    let mut t = start_app(
        &["zenity", "--entry", "--text=Your name"],
        "zenity",
        any_app(),
    )
    .await;
    let o = t.observe().await;
    let entry = o
        .tree
        .as_ref()
        .unwrap()
        .elements()
        .into_iter()
        .find(|e| e.editable)
        .expect("an editable entry");
    t.desktop
        .act(&click(o.point_of(&entry).unwrap()), &o)
        .await
        .unwrap();
    let o = t.wait_for_editable_focus().await;
    let text = "Grüße ✓ 42";
    t.desktop
        .act(
            &Action::Type {
                text: text.into(),
                paste: false,
            },
            &o,
        )
        .await
        .expect("typing runs");
    let o = t
        .wait_for(|o| {
            o.tree
                .as_ref()
                .unwrap()
                .elements()
                .iter()
                .any(|e| e.value.as_deref() == Some(text))
        })
        .await;
    let (code, out) = t.submit(&o).await;
    assert_eq!(code, Some(0));
    assert_eq!(out.trim_end(), text, "zenity prints what was typed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pastes_text_through_the_clipboard() {
    let mut t = start_app(
        &["zenity", "--entry", "--text=Paste here"],
        "zenity",
        any_app(),
    )
    .await;
    let o = t.wait_for_editable_focus().await;
    let text = "pasted: 東京 — ✓";
    t.desktop
        .act(
            &Action::Type {
                text: text.into(),
                paste: true,
            },
            &o,
        )
        .await
        .expect("paste runs");
    let o = t.observe().await;
    let (code, out) = t.submit(&o).await;
    assert_eq!((code, out.trim_end()), (Some(0), text));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drags_a_slider() {
    let t = start_app(
        &[
            "zenity",
            "--scale",
            "--text=Level",
            "--value=10",
            "--min-value=0",
            "--max-value=100",
        ],
        "zenity",
        any_app(),
    )
    .await;
    let slider_value = |o: &clawdesk_desktop::Observation| {
        o.tree
            .as_ref()
            .unwrap()
            .elements()
            .into_iter()
            .find(|e| e.role == Role::Slider)
            .map(|e| {
                (
                    e.value
                        .clone()
                        .unwrap_or_default()
                        .parse::<f64>()
                        .unwrap_or(-1.0),
                    e,
                )
            })
    };
    let o = t.wait_for(|o| slider_value(o).is_some()).await;
    let (before, slider) = slider_value(&o).unwrap();
    assert_eq!(before, 10.0, "{}", tree_text(&o));
    let (x, y, w, h) = slider.bounds.unwrap();
    let surface = &o.screenshot.surface;
    let norm = |px: f64| {
        NormPoint::new(
            px / f64::from(surface.width),
            (y + h / 2.0) / f64::from(surface.height),
        )
    };
    // GTK draws the knob at the value's share of the trough.
    let from = norm(x + w * 0.10);
    let to = norm(x + w * 0.80);
    t.desktop
        .act(
            &Action::Drag {
                from,
                to,
                button: MouseButton::Left,
            },
            &o,
        )
        .await
        .unwrap();
    let o = t
        .wait_for(|o| slider_value(o).is_some_and(|(v, _)| v > 50.0))
        .await;
    assert!(slider_value(&o).unwrap().0 > 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrolls_a_long_list() {
    let rows: Vec<String> = (1..=200).map(|i| format!("row {i}")).collect();
    let mut argv = vec!["zenity", "--list", "--column=Item", "--height=400"];
    argv.extend(rows.iter().map(String::as_str));
    let t = start_app(&argv, "zenity", any_app()).await;
    let scroll_value = |o: &clawdesk_desktop::Observation| {
        o.tree
            .as_ref()
            .unwrap()
            .elements()
            .into_iter()
            .filter(|e| e.role == Role::ScrollBar)
            .filter_map(|e| e.value.as_deref().and_then(|v| v.parse::<f64>().ok()))
            .fold(0.0, f64::max)
    };
    let o = t.observe().await;
    assert_eq!(scroll_value(&o), 0.0, "{}", tree_text(&o));
    let list = o
        .tree
        .as_ref()
        .unwrap()
        .elements()
        .into_iter()
        .find(|e| e.role == Role::Table || e.role == Role::List || e.role == Role::TreeGrid)
        .expect("a list");
    let at = o.point_of(&list);
    t.desktop
        .act(&Action::Scroll { at, dx: 0, dy: 10 }, &o)
        .await
        .unwrap();
    let o = t.wait_for(|o| scroll_value(o) > 0.0).await;
    let down = scroll_value(&o);
    t.desktop
        .act(&Action::Scroll { at, dx: 0, dy: -3 }, &o)
        .await
        .unwrap();
    let o = t.wait_for(|o| scroll_value(o) < down).await;
    assert!(scroll_value(&o) < down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_blocks_an_app_not_on_it() {
    let guard = GuardConfig {
        allowlist: Allowlist::Only(vec!["mousepad".into()]),
        max_steps: None,
        ..GuardConfig::default()
    };
    let t = start_app(&["zenity", "--entry", "--text=Blocked"], "zenity", guard).await;
    let o = t.observe().await;
    let err = t
        .desktop
        .act(
            &Action::Type {
                text: "should not appear".into(),
                paste: false,
            },
            &o,
        )
        .await
        .unwrap_err();
    match err {
        DesktopError::Refused(Refusal::NotAllowed { app, allowed }) => {
            assert_eq!(app, "zenity");
            assert_eq!(allowed, "mousepad");
        }
        other => panic!("expected NotAllowed, got {other}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let o = t.observe().await;
    assert!(
        o.tree
            .as_ref()
            .unwrap()
            .elements()
            .iter()
            .all(|e| e.value.as_deref() != Some("should not appear")),
        "nothing was typed:\n{}",
        tree_text(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_into_a_password_field_is_refused() {
    let t = start_app(&["zenity", "--password"], "zenity", any_app()).await;
    let o = t
        .wait_for(|o| {
            o.tree
                .as_ref()
                .and_then(|t| t.focused())
                .is_some_and(|f| f.password)
        })
        .await;
    let err = t
        .desktop
        .act(
            &Action::Type {
                text: "hunter2".into(),
                paste: false,
            },
            &o,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DesktopError::Refused(Refusal::PasswordField { .. })),
        "{err}"
    );
    // Clicking is still allowed: only keystrokes are kept out.
    let field = o.tree.as_ref().unwrap().focused().unwrap();
    t.desktop
        .act(&click(o.point_of(&field).unwrap()), &o)
        .await
        .expect("clicking a password field is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_key_halts_a_running_action_within_100_ms() {
    let t = start_app(
        &["zenity", "--entry", "--text=Stop me"],
        "zenity",
        any_app(),
    )
    .await;
    let o = t.observe().await;
    let long: String = "abcdefghij".repeat(100);
    let desktop = &t.desktop;
    let action = Action::Type {
        text: long.clone(),
        paste: false,
    };
    let typing = desktop.act(&action, &o);
    let press = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        t.run_in_sandbox(&["xdotool", "key", "Pause"]);
        sent
    };
    let (result, sent) = tokio::join!(
        async {
            let r = typing.await;
            (r, Instant::now())
        },
        press
    );
    let (result, halted) = result;
    assert!(matches!(result, Err(DesktopError::Stopped)), "{result:?}");
    let latency = halted.saturating_duration_since(sent);
    assert!(
        latency < Duration::from_millis(100),
        "halted {latency:?} after the key press"
    );
    // The flag stays set: the next action is refused until someone resets it.
    let err = desktop
        .act(
            &Action::Type {
                text: "x".into(),
                paste: false,
            },
            &o,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DesktopError::Refused(Refusal::Stopped)),
        "{err}"
    );
    let o = t.observe().await;
    let typed = o
        .tree
        .as_ref()
        .unwrap()
        .elements()
        .into_iter()
        .find_map(|e| e.value.filter(|v| v.starts_with("abc")));
    let typed = typed.expect("some text was typed before the stop");
    assert!(
        typed.len() < long.len(),
        "typing stopped part-way ({} of {} chars)",
        typed.len(),
        long.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_stops_answering_is_reported_not_waited_on() {
    let t = start_app(&["zenity", "--entry", "--text=Frozen"], "zenity", any_app()).await;
    let pid = t.child.id().to_string();
    t.run_in_sandbox(&["kill", "-STOP", &pid]);
    let limits = clawdesk_desktop::WalkLimits {
        call_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let started = Instant::now();
    let err = t
        .desktop
        .accessibility()
        .snapshot(&t.app, limits)
        .await
        .unwrap_err();
    // The kept tree's refresh reports it the same way, without walking whole after.
    let kept_started = Instant::now();
    let kept_err = t
        .desktop
        .observe(&ObserveOptions {
            app: Some(t.app.name.clone()),
            limits: clawdesk_desktop::WalkLimits {
                call_timeout: Duration::from_secs(1),
                ..limits
            },
            ..ObserveOptions::default()
        })
        .await
        .unwrap_err();
    let kept_took = kept_started.elapsed();
    t.run_in_sandbox(&["kill", "-CONT", &pid]);
    assert!(
        matches!(kept_err, DesktopError::AppNotResponding { .. }),
        "{kept_err}"
    );
    // One timeout (the round trip), not two (that and a whole walk's first question).
    assert!(kept_took < Duration::from_millis(1_600), "{kept_took:?}");
    assert!(
        matches!(err, DesktopError::AppNotResponding { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("zenity"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up in {:?}",
        started.elapsed()
    );
}

/// The app list is kept between observations (each app is asked its name once), yet it
/// follows apps that come and go; and an app that has stopped answering stays listed under
/// the name it gave, instead of dropping out of the list (and costing half a second) at every
/// step as when every app was asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_list_is_kept_between_steps_and_follows_apps_that_come_and_go() {
    let mut t = start_app(&["zenity", "--entry", "--text=First"], "zenity", any_app()).await;
    let a11y = t.desktop.accessibility().clone();
    let names = |apps: Vec<clawdesk_desktop::AppRef>| -> Vec<String> {
        apps.into_iter().map(|a| a.name).collect()
    };
    assert!(names(a11y.applications().await.expect("apps")).contains(&"zenity".into()));
    let mut second = t
        .sandbox
        .command("gnome-calculator")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gnome-calculator starts");
    a11y.wait_for_application("gnome-calculator", Duration::from_secs(20))
        .await
        .expect("a new app is found through the kept list");
    // Stopped, the calculator cannot answer; its name was given before.
    let pid = second.id().to_string();
    t.run_in_sandbox(&["kill", "-STOP", &pid]);
    let listed = names(a11y.applications().await.expect("apps"));
    t.run_in_sandbox(&["kill", "-CONT", &pid]);
    assert!(
        listed.contains(&"gnome-calculator".into()),
        "a stopped app dropped out: {listed:?}"
    );
    // An app that quits leaves the list.
    t.child.kill().expect("kill zenity");
    t.child.wait().expect("wait");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = names(a11y.applications().await.expect("apps"));
        if !now.contains(&"zenity".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "zenity is still listed: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = second.kill();
    let _ = second.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visible_sandbox_runs_nested_in_a_window_on_the_host() {
    use clawdesk_desktop::{Desktop, DesktopConfig, ObserveOptions, Sandbox, SandboxOptions};
    // The "host" is itself a sandbox, so the test needs no real screen.
    let host = Sandbox::start(&SandboxOptions::default()).expect("host display");
    let options = SandboxOptions {
        width: 800,
        height: 600,
        visible: true,
        host_display: Some(host.display().to_owned()),
        ..SandboxOptions::default()
    };
    let mut nested = Sandbox::start(&options).expect("Xephyr starts on the host display");
    assert_ne!(nested.display(), host.display());
    nested
        .launch("zenity", &["--entry", "--text=Nested"])
        .unwrap();
    let mut config = DesktopConfig::for_sandbox(&nested);
    config.stop_key = None;
    let desktop = Desktop::connect(config).await.unwrap();
    let app = desktop
        .accessibility()
        .wait_for_application("zenity", Duration::from_secs(20))
        .await
        .unwrap();
    let o = desktop
        .observe(&ObserveOptions {
            app: Some(app.name),
            ..ObserveOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (o.screenshot.image.width(), o.screenshot.image.height()),
        (800, 600)
    );
    // Xephyr's window lives on the host display.
    let tree = std::process::Command::new("xwininfo")
        .args(["-root", "-tree", "-display", host.display()])
        .output()
        .expect("xwininfo runs");
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(
        tree.contains("(\"Xephyr\" \"Xephyr\")"),
        "no Xephyr window on the host:\n{tree}"
    );
    nested.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_capture_uses_shared_memory_and_matches_get_image() {
    // A dialog without a blinking text cursor, so two grabs see the same screen.
    let t = start_app(&["zenity", "--info", "--text=Pixels"], "zenity", any_app()).await;
    let grabber = clawdesk_desktop::x11::RootGrabber::open(t.sandbox.display()).unwrap();
    assert!(grabber.uses_shm(), "Xvfb offers MIT-SHM");
    let (w, h) = grabber.size();
    let fast = grabber.grab_all().unwrap();
    assert!(
        grabber.uses_shm(),
        "the shared-memory grab worked (no fallback)"
    );
    assert_eq!(fast.len(), (w * h * 4) as usize);
    // The same frame through the socket path: the same pixels, but for the entry's blinking
    // text cursor.
    let slow = grabber.grab_without_shm(0, 0, w as u16, h as u16).unwrap();
    let differ = fast
        .chunks_exact(4)
        .zip(slow.chunks_exact(4))
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differ < 200,
        "{differ} pixels differ between shared-memory and GetImage frames"
    );
    assert!(
        fast.chunks_exact(4).any(|p| p[..3] != [0, 0, 0]),
        "the dialog is drawn"
    );
}

// Issue 26: the guard is a real boundary. What it checks is what would really receive each
// action, read at the moment of acting: the focused window's app (never the app a run was
// named for), its focused element (read again after every Tab or Return typed), and the
// window under each point of a pointer action.

fn only(apps: &[&str]) -> GuardConfig {
    GuardConfig {
        allowlist: Allowlist::Only(apps.iter().map(|a| (*a).to_owned()).collect()),
        max_steps: None,
        ..GuardConfig::default()
    }
}

fn typing(text: &str) -> Action {
    Action::Type {
        text: text.into(),
        paste: false,
    }
}

/// An xterm in the test's sandbox whose shell writes what it is sent to `out`, placed by
/// `geometry`; it has no accessibility tree, so only the X server knows it.
struct Terminal {
    child: Child,
    out: PathBuf,
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Terminal {
    fn start(t: &AppUnderTest, dir: &Path, geometry: &str) -> Terminal {
        let out = dir.join("terminal-received.txt");
        std::fs::write(&out, "").expect("output file");
        let child = t
            .sandbox
            .command("xterm")
            .args([
                "-fa",
                "Monospace",
                "-fs",
                "10",
                "-geometry",
                geometry,
                "-e",
                "sh",
                "-c",
            ])
            .arg(format!("cat > '{}'", out.display()))
            .spawn()
            .expect("xterm starts");
        let term = Terminal { child, out };
        term.wait_until_active(t);
        term
    }

    /// Waits until the window manager says the terminal has focus.
    fn wait_until_active(&self, t: &AppUnderTest) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let active = x11::active_window(t.sandbox.display()).expect("X answers");
            if active.is_some_and(|w| w.class.eq_ignore_ascii_case("xterm")) {
                return;
            }
            assert!(Instant::now() < deadline, "the terminal never got focus");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

fn assert_not_allowed(result: Result<(), DesktopError>) {
    match result {
        Err(DesktopError::Refused(Refusal::NotAllowed { app, .. } | Refusal::Denied { app })) => {
            assert!(app.to_lowercase().contains("xterm"), "refused for {app}");
        }
        other => panic!("expected the terminal to be refused, got {other:?}"),
    }
}

/// `--app mousepad --allow mousepad` while a terminal has focus: today's identity carried
/// mousepad's name whatever had focus, so the keystrokes went into the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_app_does_not_lend_its_name_to_the_focused_terminal() {
    let t = start_app(&["mousepad"], "mousepad", only(&["mousepad"])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let term = Terminal::start(&t, dir.path(), "60x10+0+0");
    // The observation names mousepad (its tree is what the prompt shows)...
    let o = t.observe().await;
    assert_eq!(
        o.tree.as_ref().map(|tr| tr.app.name.as_str()),
        Some("mousepad")
    );
    // ...but who has focus is the terminal.
    let app = o.app.as_ref().expect("a focused app");
    assert_eq!(
        app.window_class
            .as_deref()
            .map(str::to_lowercase)
            .as_deref(),
        Some("xterm")
    );
    assert_not_allowed(t.desktop.act(&typing("echo pwned\n"), &o).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(term.received(), "", "the terminal received nothing");
}

/// An observation taken while the allowed app had focus, then another window takes focus
/// before the action runs (a hotkey of the same reply, a window popping up): the action is
/// judged by what has focus when it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_takes_focus_after_the_observation_gets_nothing() {
    let t = start_app(&["mousepad"], "mousepad", only(&["mousepad"])).await;
    let o = t
        .wait_for(|o| {
            o.app
                .as_ref()
                .and_then(|a| a.accessible_name.as_deref())
                .is_some_and(|n| n.eq_ignore_ascii_case("mousepad"))
        })
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let term = Terminal::start(&t, dir.path(), "60x10+0+0");
    assert_not_allowed(t.desktop.act(&typing("echo pwned\n"), &o).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(term.received(), "", "the terminal received nothing");
}

/// `type "alice\thunter2"` from the username field: the Tab moves focus to the password
/// field after the one check the whole text used to get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_cannot_tab_its_way_into_a_password_field() {
    let mut t = start_app(
        &["zenity", "--password", "--username"],
        "zenity",
        only(&["zenity"]),
    )
    .await;
    let o = t
        .wait_for(|o| {
            o.tree
                .as_ref()
                .and_then(|tr| tr.focused())
                .is_some_and(|f| f.editable && !f.password)
        })
        .await;
    let err = t
        .desktop
        .act(&typing("alice\thunter2"), &o)
        .await
        .expect_err("the password part is refused");
    assert!(
        matches!(err, DesktopError::Refused(Refusal::PasswordField { .. })),
        "{err}"
    );
    // Submit with the person's keyboard (xdotool, not the guarded agent): zenity prints
    // `username|password`.
    t.run_in_sandbox(&["xdotool", "key", "Return"]);
    let (code, out) = t.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim_end(),
        "alice|",
        "nothing reached the password field"
    );
}

/// A click goes to the window under the pointer, whatever has focus: a point on a terminal's
/// window is refused while the allowed dialog has focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_a_window_of_an_app_not_allowed_is_refused() {
    let t = start_app(
        &["zenity", "--entry", "--text=Focused"],
        "zenity",
        only(&["zenity"]),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Bottom right, away from the dialog; then the dialog gets focus back.
    let _term = Terminal::start(&t, dir.path(), "40x8-0-0");
    // The person clicks the dialog's label (xdotool, not the guarded agent).
    let label = t
        .observe()
        .await
        .tree
        .and_then(|tr| tr.find(Some(Role::Label), "Focused").into_iter().next())
        .and_then(|e| e.center())
        .expect("the dialog's label");
    let (x, y) = (label.0.round().to_string(), label.1.round().to_string());
    t.run_in_sandbox(&["xdotool", "mousemove", &x, &y, "click", "1"]);
    let o = t
        .wait_for(|o| {
            o.app
                .as_ref()
                .and_then(|a| a.accessible_name.as_deref())
                .is_some_and(|n| n == "zenity")
        })
        .await;
    let surface = &o.screenshot.surface;
    let corner = NormPoint::new(
        1.0 - 20.0 / f64::from(surface.width),
        1.0 - 20.0 / f64::from(surface.height),
    );
    let click = Action::Click {
        at: corner,
        button: MouseButton::Left,
        count: 1,
    };
    assert_not_allowed(t.desktop.act(&click, &o).await);
    // The dialog itself still takes clicks.
    let entry = o
        .tree
        .as_ref()
        .and_then(|tr| tr.elements().into_iter().find(|e| e.editable))
        .expect("the entry");
    let at = o.point_of(&entry).expect("on screen");
    t.desktop
        .act(
            &Action::Click {
                at,
                button: MouseButton::Left,
                count: 1,
            },
            &o,
        )
        .await
        .expect("a click on the allowed dialog runs");
}

/// zenity's progress dialog, whose label and bar follow what is written to its stdin: a
/// change to elements that do not have focus, made without touching the desktop.
async fn start_progress(text: &str) -> (AppUnderTest, std::process::ChildStdin) {
    use clawdesk_desktop::{Desktop, DesktopConfig, Sandbox, SandboxOptions};
    let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox starts");
    let mut child = sandbox
        .command("zenity")
        .args(["--progress", &format!("--text={text}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("zenity starts");
    let stdin = child.stdin.take().expect("a pipe");
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.guard = any_app();
    let desktop = Desktop::connect(config).await.expect("desktop connects");
    let app = desktop
        .accessibility()
        .wait_for_application("zenity", Duration::from_secs(20))
        .await
        .expect("zenity appears on the accessibility bus");
    let t = AppUnderTest {
        desktop,
        app,
        child,
        sandbox,
    };
    t.wait_for(|o| has_label(o, text)).await;
    (t, stdin)
}

fn has_label(o: &clawdesk_desktop::Observation, text: &str) -> bool {
    o.tree
        .as_ref()
        .is_some_and(|t| t.elements().iter().any(|e| e.name == text))
}

fn say(stdin: &mut std::process::ChildStdin, line: &str) {
    use std::io::Write;
    writeln!(stdin, "{line}").expect("zenity reads its stdin");
    stdin.flush().expect("flush");
}

fn read_of(o: &clawdesk_desktop::Observation) -> TreeRead {
    o.timings.tree_read.clone().expect("a tree was read")
}

/// A kept tree follows what changed through the app's events alone: a new label and a new
/// value show up in a tree that was not walked again, and that tree is the one a whole walk
/// reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tree_follows_the_apps_events_and_matches_a_whole_walk() {
    let (t, mut stdin) = start_progress("Starting").await;
    t.observe().await;
    let o = t.observe().await;
    assert!(
        matches!(read_of(&o), TreeRead::Kept { .. }),
        "{:?}",
        read_of(&o)
    );
    say(&mut stdin, "# Halfway");
    say(&mut stdin, "50");
    let o = t
        .wait_for(|o| {
            has_label(o, "Halfway")
                && o.tree.as_ref().is_some_and(|t| {
                    t.elements().iter().any(|e| {
                        e.role == Role::ProgressIndicator && e.value.as_deref() == Some("0.5")
                    })
                })
        })
        .await;
    match read_of(&o) {
        TreeRead::Kept { events, reread, .. } => {
            assert!(events > 0 && reread > 0, "events {events}, reread {reread}")
        }
        other => panic!("the change was seen by a whole walk, not the events: {other:?}"),
    }
    assert_kept_is_whole(&t, &o).await;
}

/// An event that never arrives leaves a kept tree out of date, but only until the kept tree
/// is walked whole again (`rewalk_after`, `rewalk_every`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_event_is_recovered_by_the_next_whole_walk() {
    let (t, mut stdin) = start_progress("Before").await;
    let rewalk_after = Duration::from_secs(3);
    let options = ObserveOptions {
        app: Some(t.app.name.clone()),
        keep: KeepTrees {
            enabled: true,
            rewalk_after,
            rewalk_every: 1_000,
        },
        ..ObserveOptions::default()
    };
    let a11y = t.desktop.accessibility().clone();
    // Walked whole now, so the time to the next whole walk starts here.
    let now = ObserveOptions {
        keep: KeepTrees {
            rewalk_after: Duration::ZERO,
            ..options.keep
        },
        ..options.clone()
    };
    let o = t.desktop.observe(&now).await.expect("observe");
    assert!(matches!(read_of(&o), TreeRead::Walked { .. }));
    let kept_since = Instant::now();
    say(&mut stdin, "# After");
    // The app shows the new label (a whole walk, which keeps nothing, says so) ...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tree = a11y
            .snapshot(&t.app, WalkLimits::default())
            .await
            .expect("walk");
        if tree.elements().iter().any(|e| e.name == "After") {
            break;
        }
        assert!(Instant::now() < deadline, "the label never changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and its events are lost.
    a11y.lose_events(&t.app).await;
    let o = t.desktop.observe(&options).await.expect("observe");
    assert!(
        kept_since.elapsed() < rewalk_after,
        "the test ran too slowly"
    );
    assert!(matches!(read_of(&o), TreeRead::Kept { .. }));
    assert!(
        has_label(&o, "Before") && !has_label(&o, "After"),
        "without its event the kept tree cannot know the label: {}",
        tree_text(&o)
    );
    tokio::time::sleep(rewalk_after.saturating_sub(kept_since.elapsed())).await;
    let o = t.desktop.observe(&options).await.expect("observe");
    assert_eq!(
        read_of(&o),
        TreeRead::Walked {
            why: WalkReason::Aged
        }
    );
    assert!(has_label(&o, "After"), "{}", tree_text(&o));

    // Counted in steps: lost again, the label is out of date for `rewalk_every` refreshes.
    let counted = ObserveOptions {
        keep: KeepTrees {
            rewalk_after: Duration::from_secs(1_000),
            rewalk_every: 2,
            ..options.keep
        },
        ..options.clone()
    };
    say(&mut stdin, "# Again");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a11y
        .snapshot(&t.app, WalkLimits::default())
        .await
        .expect("walk")
        .elements()
        .iter()
        .any(|e| e.name == "Again")
    {
        assert!(Instant::now() < deadline, "the label never changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a11y.lose_events(&t.app).await;
    for _ in 0..2 {
        let o = t.desktop.observe(&counted).await.expect("observe");
        assert!(matches!(read_of(&o), TreeRead::Kept { .. }));
        assert!(has_label(&o, "After"), "{}", tree_text(&o));
    }
    let o = t.desktop.observe(&counted).await.expect("observe");
    assert_eq!(
        read_of(&o),
        TreeRead::Walked {
            why: WalkReason::Aged
        }
    );
    assert!(has_label(&o, "Again"), "{}", tree_text(&o));
}

/// Moving a tree view's selection with the keyboard (gtk3-demo's list of demos): GTK 3
/// announces it on the view, not on each cell (inside container cells) that loses or gains it,
/// yet the kept tree must read as a whole walk does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tree_views_selection_follows_the_keyboard() {
    let t = start_app(&["gtk3-demo"], "gtk3-demo", any_app()).await;
    let selected = |o: &clawdesk_desktop::Observation| -> Vec<String> {
        let tree = o.tree.as_ref().expect("a tree");
        tree.walk()
            .into_iter()
            .filter(|(id, _)| {
                tree.node(*id)
                    .is_some_and(|n| n.is_selected() == Some(true))
            })
            .filter_map(|(id, _)| tree.element(id).map(|e| e.name))
            .collect()
    };
    let mut before = selected(&t.observe().await);
    assert!(!before.is_empty(), "a demo is selected at start");
    // A refresh can meet a node the app has just destroyed, and then walks whole instead;
    // the kept tree must be right whenever it is read.
    let mut kept_reads = 0;
    for _ in 0..3 {
        t.run_in_sandbox(&["xdotool", "key", "Down"]);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let o = t.observe().await;
        let now = selected(&o);
        assert_ne!(now, before, "the selection moved: {}", tree_text(&o));
        before = now;
        if !matches!(read_of(&o), TreeRead::Kept { .. }) {
            continue;
        }
        kept_reads += 1;
        assert_kept_is_whole(&t, &o).await;
    }
    assert!(kept_reads > 0, "no refresh was kept");
}

/// Reads the app's tree whole and asserts the kept tree of `o` is the same, bounds included.
async fn assert_kept_is_whole(t: &AppUnderTest, o: &clawdesk_desktop::Observation) {
    assert!(
        matches!(read_of(o), TreeRead::Kept { .. }),
        "{:?}",
        read_of(o)
    );
    let whole = t
        .desktop
        .accessibility()
        .snapshot(&t.app, WalkLimits::default())
        .await
        .expect("a whole walk");
    let kept = o.tree.as_ref().expect("a tree");
    assert_eq!(kept.linearise(), whole.linearise());
    assert_eq!(kept.update.focus, whole.update.focus, "focus differs");
    assert_eq!(kept.update.nodes, whole.update.nodes);
}

/// A window that moves sends no event for its widgets, yet every extent in a kept tree must
/// follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tree_follows_its_window_when_it_moves() {
    kept_tree_follows_its_window("Moving", &["windowmove", "--sync", "{}", "37", "53"]).await;
}

/// GTK 3 announces every widget's size allocation, most of them to the same place: a refresh
/// reads again only below what is no longer where it was, and must still follow widgets that
/// a resized window lays out anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tree_follows_its_widgets_when_the_window_is_resized() {
    kept_tree_follows_its_window("Resized", &["windowsize", "--sync", "{}", "640", "360"]).await;
}

/// Observes a zenity entry twice (the second from the kept tree), runs `xdotool` with
/// `args` (`{}` is the window), and asserts the tree changed and its kept form is the whole.
async fn kept_tree_follows_its_window(text: &str, args: &[&str]) {
    let text = format!("--text={text}");
    let t = start_app(&["zenity", "--entry", &text], "zenity", any_app()).await;
    t.observe().await;
    let before = t.observe().await;
    let window = before
        .active_window
        .as_ref()
        .expect("a window")
        .id
        .to_string();
    let mut argv = vec!["xdotool"];
    argv.extend(
        args.iter()
            .map(|a| if *a == "{}" { window.as_str() } else { *a }),
    );
    t.run_in_sandbox(&argv);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = t.observe().await;
    assert_ne!(
        tree_text(&o),
        tree_text(&before),
        "the window's widgets moved"
    );
    assert_kept_is_whole(&t, &o).await;
}

/// A view that scrolls moves every row in it with no event per row (GTK 3's tree view says
/// which rows came and went; a scroll bar's new value covers other views).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tree_follows_a_view_that_scrolls() {
    let mut argv = vec!["zenity", "--list", "--column=Item", "--height=400"];
    let items: Vec<String> = (0..80).map(|i| format!("row {i}")).collect();
    argv.extend(items.iter().map(String::as_str));
    let t = start_app(&argv, "zenity", any_app()).await;
    t.observe().await;
    let before = t.observe().await;
    // The wheel over the list scrolls it without moving the selection.
    let list = before
        .tree
        .as_ref()
        .and_then(|tr| tr.find(Some(Role::Cell), "row 3").into_iter().next())
        .expect("a row on screen");
    let (x, y) = list.center().expect("on screen");
    let (x, y) = (x.round().to_string(), y.round().to_string());
    t.run_in_sandbox(&["xdotool", "mousemove", &x, &y]);
    for _ in 0..3 {
        t.run_in_sandbox(&["xdotool", "click", "5"]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = t.observe().await;
    assert_ne!(tree_text(&o), tree_text(&before), "the list scrolled");
    assert_kept_is_whole(&t, &o).await;
}
