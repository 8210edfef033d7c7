//! Practice mode on a real window: a gym task opened as `clawdesk-practice` in the sandbox
//! display, the agent acting in it in the practice format, and a rule judge that reads the
//! window's verdict from its status line in the accessibility tree, with the gym's hint.

use std::path::PathBuf;

use clawdesk_desktop::AccessTree;
use clawdesk_gym::status::{Mark, parse_status, task_shown};
use clawdesk_gym::{Task, TaskKind};
use clawdesk_judge::{RuleVerdict, StepCase};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The window's program name; found beside the running program first, then on the PATH.
pub const WINDOW_PROGRAM: &str = "clawdesk-practice";

/// Which gym task a practice session opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PracticeTask {
    /// click, type or menu.
    #[serde(with = "kind_name")]
    pub kind: TaskKind,
    /// The seed that lays the task out; the same seed gives the same task.
    pub seed: u64,
}

impl PracticeTask {
    /// The task as it starts.
    pub fn task(&self) -> Task {
        Task::generate(self.kind, self.seed)
    }

    /// What the task asks the agent to do, e.g. "Click the red button.".
    pub fn instruction(&self) -> String {
        self.task().instruction().to_owned()
    }

    /// The window's arguments.
    pub fn window_args(&self) -> Vec<String> {
        vec![
            "--kind".into(),
            self.kind.name().into(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }
}

mod kind_name {
    use clawdesk_gym::TaskKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &TaskKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TaskKind, D::Error> {
        let name = String::deserialize(d)?;
        TaskKind::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown task kind {name:?}: click, type or menu"))
        })
    }
}

/// The practice display's size: the gym's 4×2 grid of square cells, so that the window's
/// cells are square like the gym's.
pub const DISPLAY_SIZE: (u32, u32) = (1024, 512);

/// The screen as the practice base reads it: scaled to the gym's screenshots, the only size
/// its warm start showed it.
pub fn practice_image(screen: &image::DynamicImage) -> image::DynamicImage {
    use clawdesk_gym::screen::{HEIGHT, WIDTH};
    screen.resize_exact(WIDTH, HEIGHT, image::imageops::FilterType::Triangle)
}

/// Where `clawdesk-practice` is: `CLAWDESK_PRACTICE` when set, else beside this program (a
/// cargo build and an installed package put them together), else on the PATH.
pub fn window_program() -> Result<PathBuf, RuntimeError> {
    if let Some(path) = std::env::var_os("CLAWDESK_PRACTICE") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(WINDOW_PROGRAM)))
        .filter(|p| p.is_file());
    if let Some(path) = beside {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(WINDOW_PROGRAM))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| RuntimeError::External {
        program: WINDOW_PROGRAM.into(),
        detail: format!(
            "not found beside {} nor on the PATH; build it with `cargo build -p clawdesk-practice` \
             or set CLAWDESK_PRACTICE",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "this program".into())
        ),
    })
}

/// The rule judge's rule for a practice window: +1 when the window counted one more action
/// and called it right, else −1 with the gym's hint for the state the step started from.
pub fn practice_rule(practice: PracticeTask) -> impl Fn(&StepCase) -> RuleVerdict + Send + Sync {
    let start = practice.task();
    move |case: &StepCase| {
        let before = read_tree(case.before_tree.as_ref());
        let after = read_tree(case.after_tree.as_ref());
        let counted = |tree: &Option<AccessTree>| tree.as_ref().and_then(status);
        let (before_status, after_status) = (counted(&before), counted(&after));
        let shown = task_shown(
            &start,
            &before.as_ref().map(control_names).unwrap_or_default(),
        );
        let hint = shown.hint().unwrap_or_default();
        let (score, reason) = match (before_status, after_status) {
            (_, None) => (
                -1,
                "the practice window's status is not on the screen".to_owned(),
            ),
            (Some((b, _)), Some((a, _))) if a <= b => (
                -1,
                "the practice window counted no action in this step".to_owned(),
            ),
            (_, Some((n, Some(Mark::Right | Mark::Done)))) => {
                (1, format!("the practice window called action {n} right"))
            }
            (_, Some((n, _))) => (-1, format!("the practice window called action {n} wrong")),
        };
        RuleVerdict {
            score,
            hint: (score < 0 && !hint.is_empty()).then_some(hint),
            reason,
        }
    }
}

fn read_tree(value: Option<&serde_json::Value>) -> Option<AccessTree> {
    let mut tree = serde_json::from_value::<AccessTree>(value?.clone()).ok()?;
    tree.reindex();
    Some(tree)
}

fn status(tree: &AccessTree) -> Option<(usize, Option<Mark>)> {
    tree.elements().iter().find_map(|e| parse_status(&e.name))
}

/// The names of the window's controls (those the practice prompt lists), as `task_shown`
/// compares them.
fn control_names(tree: &AccessTree) -> Vec<String> {
    tree.elements()
        .into_iter()
        .filter(clawdesk_agent::is_listed_control)
        .map(|e| e.name)
        .collect()
}

/// The practice window's full command line for `practice`.
pub fn window_command(practice: &PracticeTask) -> Result<(PathBuf, Vec<String>), RuntimeError> {
    Ok((window_program()?, practice.window_args()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(before: &Task, before_status: &str, after: &Task, after_status: &str) -> StepCase {
        let tree = |task: &Task, status: &str| {
            let mut tree = task.screen().tree();
            // The window's status line, as a label in the tree.
            let mut label = accesskit::Node::new(accesskit::Role::Label);
            label.set_label(status);
            let id = accesskit::NodeId(999);
            if let Some((_, root)) = tree.update.nodes.first_mut() {
                root.push_child(id);
            }
            tree.update.nodes.push((id, label));
            tree.reindex();
            serde_json::to_value(&tree).ok()
        };
        StepCase {
            step: clawdesk_store::StepId(1),
            objective: before.instruction().to_owned(),
            app: Some(WINDOW_PROGRAM.into()),
            previous_actions: Vec::new(),
            step_number: 1,
            response: String::new(),
            action: serde_json::Value::Null,
            outcome: clawdesk_store::StepOutcome::Executed,
            error: None,
            before_png: Vec::new(),
            after_png: Vec::new(),
            before_tree: tree(before, before_status),
            after_tree: tree(after, after_status),
            conversation: None,
        }
    }

    #[test]
    fn the_window_status_decides_and_the_hint_fits_the_state() {
        let practice = PracticeTask {
            kind: TaskKind::Menu,
            seed: 4,
        };
        let rule = practice_rule(practice);
        let start = practice.task();
        let mut open = start.clone();
        let first = open.expert().expect("first step");
        open.step(Some(&first));

        let right = rule(&case(
            &start,
            "Practice step 0: ready",
            &open,
            "Practice step 1: right",
        ));
        assert_eq!((right.score, right.hint), (1, None));

        let wrong = rule(&case(
            &open,
            "Practice step 1: right",
            &start,
            "Practice step 2: wrong",
        ));
        assert_eq!(wrong.score, -1);
        // The hint is the second step's: the menu was open when the step began.
        assert_eq!(wrong.hint, open.hint());
        assert_ne!(wrong.hint, start.hint());

        let nothing = rule(&case(
            &start,
            "Practice step 2: wrong",
            &start,
            "Practice step 2: wrong",
        ));
        assert_eq!(nothing.score, -1, "{}", nothing.reason);
        assert_eq!(nothing.hint, start.hint());

        let json = serde_json::to_string(&practice).expect("serialises");
        assert_eq!(json, r#"{"kind":"menu","seed":4}"#);
        assert!(serde_json::from_str::<PracticeTask>(r#"{"kind":"drag","seed":1}"#).is_err());
    }
}
