//! The practice window in a sandbox display, operated as the agent operates it: through the
//! pointer and keyboard, read through AT-SPI. Its widgets carry the gym's names where the
//! gym's grid puts them, and its status line reports the gym verifier's verdicts.

use std::process::Child;
use std::time::{Duration, Instant};

use clawdesk_desktop::{
    Action, Desktop, DesktopConfig, MouseButton, NormPoint, Observation, ObserveOptions, Sandbox,
    SandboxOptions,
};
use clawdesk_gym::status::{Mark, parse_status};
use clawdesk_gym::{GymAction, Task, TaskKind};

struct Window {
    desktop: Desktop,
    child: Child,
    _sandbox: Sandbox,
}

impl Drop for Window {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Window {
    async fn open(kind: TaskKind, seed: u64) -> Window {
        let sandbox = Sandbox::start(&SandboxOptions::default()).expect("sandbox starts");
        let child = sandbox
            .command(env!("CARGO_BIN_EXE_clawdesk-practice"))
            .args(["--kind", kind.name(), "--seed", &seed.to_string()])
            .spawn()
            .expect("the practice window starts");
        let desktop = Desktop::connect(DesktopConfig::for_sandbox(&sandbox))
            .await
            .expect("desktop connects");
        desktop
            .accessibility()
            .wait_for_application("clawdesk-practice", Duration::from_secs(20))
            .await
            .expect("the window appears on the accessibility bus");
        Window {
            desktop,
            child,
            _sandbox: sandbox,
        }
    }

    async fn observe(&self) -> Observation {
        self.desktop
            .observe(&ObserveOptions {
                app: Some("clawdesk-practice".into()),
                ..ObserveOptions::default()
            })
            .await
            .expect("observe")
    }

    /// Observes until the status line reads `actions` and `mark`.
    async fn wait_status(&self, actions: usize, mark: Option<Mark>) -> Observation {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let o = self.observe().await;
            let status = status(&o);
            if status == Some((actions, mark)) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "status {status:?}, waited for {:?}; names {:?}",
                (actions, mark),
                names(&o)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn act(&self, action: &GymAction, o: &Observation) {
        let action = match action {
            GymAction::Click { x, y } => Action::Click {
                at: NormPoint::new(f64::from(*x) / 1000.0, f64::from(*y) / 1000.0),
                button: MouseButton::Left,
                count: 1,
            },
            GymAction::Type { text } => Action::Type {
                text: text.clone(),
                paste: false,
            },
        };
        self.desktop.act(&action, o).await.expect("the action runs");
    }
}

fn status(o: &Observation) -> Option<(usize, Option<Mark>)> {
    o.tree
        .as_ref()?
        .elements()
        .iter()
        .find_map(|e| parse_status(&e.name))
}

/// The names of the window's controls (the status line left out).
fn names(o: &Observation) -> Vec<String> {
    let mut names: Vec<String> = o
        .tree
        .as_ref()
        .map(|t| t.elements())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| matches!(e.role, accesskit::Role::Button | accesskit::Role::TextInput))
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

fn widget_names(task: &Task) -> Vec<String> {
    let mut names: Vec<String> = task.screen().widgets.iter().map(|w| w.name()).collect();
    names.sort();
    names
}

/// Each control's centre, on the 0-999 grid of the screen, is where the gym puts it.
fn assert_layout(task: &Task, o: &Observation) {
    let tree = o.tree.as_ref().expect("a tree");
    let (w, h) = (
        f64::from(o.screenshot.surface.width),
        f64::from(o.screenshot.surface.height),
    );
    for widget in &task.screen().widgets {
        let found = tree
            .elements()
            .into_iter()
            .find(|e| e.name == widget.name())
            .unwrap_or_else(|| panic!("{} is in the tree", widget.name()));
        let (cx, cy) = found.center().expect("on screen");
        let grid = clawdesk_gym::Cell::at_grid((cx / w * 1000.0) as u32, (cy / h * 1000.0) as u32);
        assert_eq!(grid, Some(widget.cell), "{}", widget.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_task_is_judged_by_the_gym_and_starts_again() {
    let task = Task::generate(TaskKind::Click, 7);
    let window = Window::open(TaskKind::Click, 7).await;
    let o = window.wait_status(0, None).await;
    assert_eq!(names(&o), widget_names(&task));
    assert_layout(&task, &o);

    let wrong = task.mistakes().remove(0);
    window.act(&wrong, &o).await;
    let o = window.wait_status(1, Some(Mark::Wrong)).await;
    // Started again: the same controls, ready for another try.
    assert_eq!(names(&o), widget_names(&task));

    let right = task.expert().expect("a right action");
    window.act(&right, &o).await;
    window.wait_status(2, Some(Mark::Done)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_word_typed_into_the_focused_field_is_judged() {
    let task = Task::generate(TaskKind::Type, 3);
    let window = Window::open(TaskKind::Type, 3).await;
    let o = window.wait_status(0, None).await;
    assert_eq!(names(&o), widget_names(&task));
    let focused = o.tree.as_ref().and_then(|t| t.focused()).expect("focus");
    assert!(focused.editable, "the field has the focus: {focused:?}");

    window.act(&GymAction::Type { text: "!".into() }, &o).await;
    let o = window.wait_status(1, Some(Mark::Wrong)).await;
    let right = task.expert().expect("a right action");
    window.act(&right, &o).await;
    window.wait_status(2, Some(Mark::Done)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_opens_then_its_entry_finishes_the_task() {
    let mut task = Task::generate(TaskKind::Menu, 5);
    let window = Window::open(TaskKind::Menu, 5).await;
    let o = window.wait_status(0, None).await;
    let first = task.expert().expect("a first step");
    window.act(&first, &o).await;
    let o = window.wait_status(1, Some(Mark::Right)).await;
    task.step(Some(&first));
    // The open menu's entries are real controls now, where the gym puts them.
    assert_eq!(names(&o), widget_names(&task));
    assert_layout(&task, &o);
    let second = task.expert().expect("a second step");
    window.act(&second, &o).await;
    window.wait_status(2, Some(Mark::Done)).await;
}
