//! What the practice window and the runtime agree on: the window's status line, which says
//! how many actions it has taken and how the last one went, and which state of a task a screen
//! shows. The window (a real GTK program, `clawdesk-practice`) writes the line; the runtime's
//! rule judge reads it from the accessibility tree before and after a step.

use crate::task::Task;

/// How the window's last action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The right action, and the task goes on (a menu's first step).
    Right,
    /// The right action finished the task; the window starts it again.
    Done,
    /// A wrong action; the window starts the task again.
    Wrong,
}

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Mark::Right => "right",
            Mark::Done => "done",
            Mark::Wrong => "wrong",
        }
    }
}

const PREFIX: &str = "Practice step ";

/// The status line after `actions` actions, the last of which went as `last`.
pub fn status_line(actions: usize, last: Option<Mark>) -> String {
    match last {
        Some(mark) => format!("{PREFIX}{actions}: {}", mark.word()),
        None => format!("{PREFIX}{actions}: ready"),
    }
}

/// Reads a status line back; `None` for any other text.
pub fn parse_status(text: &str) -> Option<(usize, Option<Mark>)> {
    let (count, word) = text.trim().strip_prefix(PREFIX)?.split_once(": ")?;
    let count = count.parse().ok()?;
    let mark = match word {
        "ready" => None,
        "right" => Some(Mark::Right),
        "done" => Some(Mark::Done),
        "wrong" => Some(Mark::Wrong),
        _ => return None,
    };
    Some((count, mark))
}

/// The state of `start` that a screen listing the elements `names` shows: the task as it
/// starts, or advanced by its right actions while the screen shows their result (an open menu).
pub fn task_shown(start: &Task, names: &[String]) -> Task {
    let mut shown: Vec<&str> = names.iter().map(|n| n.trim()).collect();
    shown.sort_unstable();
    let mut task = start.clone();
    let mut candidate = start.clone();
    while let Some(right) = candidate.expert() {
        candidate.step(Some(&right));
        if candidate.is_done() {
            break;
        }
        let mut listed: Vec<String> = candidate
            .screen()
            .widgets
            .iter()
            .map(|w| w.name())
            .collect();
        listed.sort_unstable();
        if listed == shown {
            task = candidate.clone();
        }
    }
    task
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskKind;

    #[test]
    fn status_lines_read_back() {
        for (n, mark) in [
            (0, None),
            (1, Some(Mark::Right)),
            (12, Some(Mark::Done)),
            (3, Some(Mark::Wrong)),
        ] {
            assert_eq!(parse_status(&status_line(n, mark)), Some((n, mark)));
        }
        for other in [
            "",
            "Practice step x: right",
            "Practice step 1: maybe",
            "red button",
        ] {
            assert_eq!(parse_status(other), None, "{other:?}");
        }
    }

    #[test]
    fn an_open_menu_is_the_second_step() {
        for seed in 0..40 {
            let start = Task::generate(TaskKind::Menu, seed);
            let names =
                |t: &Task| -> Vec<String> { t.screen().widgets.iter().map(|w| w.name()).collect() };
            assert_eq!(task_shown(&start, &names(&start)), start);
            let mut open = start.clone();
            let first = open.expert().expect("a first step");
            open.step(Some(&first));
            assert_eq!(task_shown(&start, &names(&open)), open, "seed {seed}");
            assert_ne!(open.hint(), start.hint());
        }
    }
}
