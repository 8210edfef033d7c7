//! The agent's prompt: the instruction's user turn from `prompts/agent/task.md`, and the
//! conversation the policy sees at each step — the last few screenshots with the replies the
//! model gave to them, then the current screenshot. Older steps appear as one line each.

use std::path::{Path, PathBuf};

use accesskit::Role as NodeRole;
use clawdesk_desktop::AccessTree;
use clawdesk_desktop::observe::tree::Element;
use clawdesk_model::chat::{Message, Part, Role};
use clawdesk_prompts::Template;
use minijinja::{Environment, UndefinedBehavior, context};

use crate::error::AgentError;
use crate::format::ActionFormat;

const TASK_FILE: &str = "agent/task.md";
/// UI-TARS's models were trained with their own computer-use prompt (its action space, thought
/// then action); they are asked in those words.
const UI_TARS_FILE: &str = "agent/ui_tars.md";
/// OpenCUA's models were trained with a system prompt (L2: thought, action, code) and a user
/// turn that ends with the instruction; both are theirs.
const OPENCUA_SYSTEM_FILE: &str = "agent/opencua_system.md";
const OPENCUA_FILE: &str = "agent/opencua.md";
/// The practice format's prompt is the gym's, so that the practice base sees in a real window
/// the words it was warm-started on.
const PRACTICE_FILE: &str = "gym/task.md";

/// The compiled agent prompt.
#[derive(Debug)]
pub struct AgentPrompts {
    env: Environment<'static>,
}

impl AgentPrompts {
    /// The built-in template.
    pub fn built_in() -> Result<Self, AgentError> {
        Self::load(&[])
    }

    /// `agent/task.md` from the first of `dirs` that has it, else the built-in template.
    /// A template that does not render is refused here, naming the file.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, AgentError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut origins = Vec::new();
        for (name, file) in [
            ("task", TASK_FILE),
            ("practice", PRACTICE_FILE),
            ("ui_tars", UI_TARS_FILE),
            ("opencua_system", OPENCUA_SYSTEM_FILE),
            ("opencua", OPENCUA_FILE),
        ] {
            let Template { text, origin } = clawdesk_prompts::find(dirs, file)?;
            env.add_template_owned(name, text)
                .map_err(|e| template_error(&origin, e.to_string()))?;
            origins.push(origin);
        }
        let prompts = Self { env };
        prompts
            .task("check", &["one".into()], 2)
            .map_err(|e| template_error(&origins[0], e.to_string()))?;
        prompts
            .practice("check", &["red button (125,250)".into()])
            .map_err(|e| template_error(&origins[1], e.to_string()))?;
        prompts
            .task_for(ActionFormat::UiTarsPixels, "check", &["one".into()], 2)
            .map_err(|e| template_error(&origins[2], e.to_string()))?;
        prompts
            .opencua_system()
            .map_err(|e| template_error(&origins[3], e.to_string()))?;
        prompts
            .task_for(ActionFormat::OpenCua, "check", &[], 1)
            .map_err(|e| template_error(&origins[4], e.to_string()))?;
        Ok(prompts)
    }

    /// The practice format's user text: the instruction and the screen's elements.
    pub fn practice(&self, instruction: &str, elements: &[String]) -> Result<String, AgentError> {
        let render = || -> Result<String, minijinja::Error> {
            self.env
                .get_template("practice")?
                .render(context! { instruction, elements, format_line => true })
        };
        render().map_err(|e| AgentError::Render(e.to_string()))
    }

    /// The instruction's user text.
    pub fn task(
        &self,
        instruction: &str,
        previous_actions: &[String],
        step_number: usize,
    ) -> Result<String, AgentError> {
        self.task_for(
            ActionFormat::Qwen3Vl,
            instruction,
            previous_actions,
            step_number,
        )
    }

    /// The instruction's user text in the words a model of `format` was trained on: UI-TARS's
    /// computer-use prompt for the UI-TARS formats, `agent/task.md` for the others.
    pub fn task_for(
        &self,
        format: ActionFormat,
        instruction: &str,
        previous_actions: &[String],
        step_number: usize,
    ) -> Result<String, AgentError> {
        let name = match format {
            ActionFormat::UiTars1000 | ActionFormat::UiTarsPixels => "ui_tars",
            ActionFormat::OpenCua => "opencua",
            _ => "task",
        };
        let render = || {
            self.env.get_template(name)?.render(context! {
                instruction,
                previous_actions,
                step_number,
            })
        };
        render().map_err(|e| AgentError::Render(e.to_string()))
    }
}

impl AgentPrompts {
    /// OpenCUA's system prompt.
    pub fn opencua_system(&self) -> Result<String, AgentError> {
        let render = || self.env.get_template("opencua_system")?.render(context! {});
        render().map_err(|e| AgentError::Render(e.to_string()))
    }
}

fn template_error(origin: &str, reason: String) -> AgentError {
    AgentError::Template {
        path: Path::new(origin).into(),
        reason,
    }
}

/// The practice format's messages: one user turn, the screenshot then the text. The practice
/// base was warm-started on single screens, so no past steps are shown.
pub fn practice_conversation(
    prompts: &AgentPrompts,
    instruction: &str,
    elements: &[String],
) -> Result<Vec<Message>, AgentError> {
    let text = prompts.practice(instruction, elements)?;
    Ok(vec![Message::images_then_text(Role::User, 1, text)])
}

/// The elements the practice prompt lists, read from the accessibility tree: every visible,
/// named control with bounds on the screen, in reading order (top to bottom, then left to
/// right), as "name (x,y)" with the centre on the 0-999 grid of a `width`×`height` screen —
/// the words the gym writes for its own screens.
pub fn practice_elements(tree: &AccessTree, width: u32, height: u32) -> Vec<String> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let mut listed: Vec<(u32, u32, String)> = tree
        .elements()
        .into_iter()
        .filter(is_listed_control)
        .filter_map(|e| {
            let (cx, cy) = e.center()?;
            let grid = |v: f64, extent: u32| (v / f64::from(extent) * 1000.0).floor();
            let (x, y) = (grid(cx, width), grid(cy, height));
            ((0.0..1000.0).contains(&x) && (0.0..1000.0).contains(&y))
                .then(|| (y as u32, x as u32, e.name.trim().to_owned()))
        })
        .collect();
    listed.sort();
    listed
        .into_iter()
        .map(|(y, x, name)| format!("{name} ({x},{y})"))
        .collect()
}

/// Whether the practice prompt lists an element: a named control (not a label or a panel).
pub fn is_listed_control(e: &Element) -> bool {
    matches!(
        e.role,
        NodeRole::Button
            | NodeRole::TextInput
            | NodeRole::MenuItem
            | NodeRole::CheckBox
            | NodeRole::Link
    ) && !e.name.trim().is_empty()
}

/// An earlier step as the next prompt remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastStep {
    /// The model's whole reply to that step's screenshot.
    pub reply: String,
    /// One line for the list of earlier steps, once its screenshot has left the window.
    pub summary: String,
}

/// The messages for the next step and how many of the past steps' screenshots they use (the
/// last ones; the current screenshot comes after them). `window` is how many past screenshots
/// to keep, with their replies; `listed` how many of the older steps to list in words (the
/// latest ones; a line says how many earlier ones were left out).
pub fn conversation(
    prompts: &AgentPrompts,
    format: ActionFormat,
    instruction: &str,
    past: &[PastStep],
    window: usize,
    listed: usize,
) -> Result<(Vec<Message>, usize), AgentError> {
    if format == ActionFormat::OpenCua {
        return opencua_conversation(prompts, instruction, past, window);
    }
    let kept = past.len().min(window);
    let (older, recent) = past.split_at(past.len() - kept);
    let shown = older.len().min(listed);
    let left_out = older.len() - shown;
    let mut summaries = Vec::with_capacity(shown + 1);
    if left_out > 0 {
        summaries.push(format!("({left_out} earlier steps not shown)"));
    }
    summaries.extend(older[left_out..].iter().map(|s| s.summary.clone()));
    let text = prompts.task_for(format, instruction, &summaries, past.len() + 1)?;
    let mut messages = vec![Message::images_then_text(Role::User, 1, text)];
    for step in recent {
        messages.push(Message::text(Role::Assistant, step.reply.clone()));
        let mut next = Message::text(Role::User, String::new());
        next.content = vec![Part::Image];
        messages.push(next);
    }
    Ok((messages, kept))
}

/// OpenCUA's layout (its OSWorld agent's): the system prompt; the steps older than the
/// screenshots kept, as one assistant turn of `# Step n:` and each step's `## Action:` text;
/// each kept step as its screenshot and its action text; then the current screenshot with the
/// instruction. Past code is never shown, as in OpenCUA's training.
fn opencua_conversation(
    prompts: &AgentPrompts,
    instruction: &str,
    past: &[PastStep],
    window: usize,
) -> Result<(Vec<Message>, usize), AgentError> {
    let kept = past.len().min(window);
    let step = |n: usize, s: &PastStep| format!("# Step {n}:\n## Action:\n{}\n", action_words(s));
    let mut messages = vec![Message::text(Role::System, prompts.opencua_system()?)];
    let older = past.len() - kept;
    if older > 0 {
        let text: Vec<String> = past[..older]
            .iter()
            .enumerate()
            .map(|(i, s)| step(i + 1, s))
            .collect();
        messages.push(Message::text(Role::Assistant, text.join("\n")));
    }
    for (i, s) in past.iter().enumerate().skip(older) {
        let mut shot = Message::text(Role::User, String::new());
        shot.content = vec![Part::Image];
        messages.push(shot);
        messages.push(Message::text(Role::Assistant, step(i + 1, s)));
    }
    let text = prompts.task_for(ActionFormat::OpenCua, instruction, &[], past.len() + 1)?;
    messages.push(Message::images_then_text(Role::User, 1, text));
    Ok((messages, kept))
}

/// The `## Action:` section of an OpenCUA reply: the step in words. A reply without one (a
/// person's correction, another format's reply) is remembered by its summary line.
fn action_words(step: &PastStep) -> String {
    let mut lines = step.reply.lines().skip_while(|l| {
        let l = l.trim();
        !(l.starts_with("##") && l.trim_start_matches('#').trim().starts_with("Action"))
    });
    if lines.next().is_none() {
        return step.summary.clone();
    }
    let words: Vec<&str> = lines
        .take_while(|l| !l.trim_start().starts_with("##"))
        .collect();
    let words = words.join("\n").trim().to_string();
    if words.is_empty() {
        step.summary.clone()
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize) -> PastStep {
        PastStep {
            reply: format!("reply {n}"),
            summary: format!("did {n}"),
        }
    }

    /// OpenCUA is asked in its own layout: system prompt, older steps in one assistant turn,
    /// each kept screenshot with its step's action words, the instruction last.
    #[test]
    fn opencua_is_asked_in_its_own_layout() {
        let p = AgentPrompts::built_in().expect("prompts");
        let past: Vec<PastStep> = (1..=4)
            .map(|n| PastStep {
                reply: format!(
                    "## Thought:\nthinking {n}\n\n## Action:\nClick button {n}.\n\n## Code:\n```python\npyautogui.click(x=1, y=2)\n```"
                ),
                summary: format!("did {n}"),
            })
            .collect();
        let (messages, kept) =
            conversation(&p, ActionFormat::OpenCua, "Save the note", &past, 2, 10).expect("builds");
        assert_eq!(kept, 2);
        let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(
            roles,
            vec![System, Assistant, User, Assistant, User, Assistant, User]
        );
        let text = |m: &Message| -> String {
            m.content
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text } => Some(text.clone()),
                    Part::Image => None,
                })
                .collect()
        };
        assert!(text(&messages[0]).starts_with("You are a GUI agent."));
        assert!(text(&messages[0]).contains("computer.terminate"));
        assert_eq!(
            text(&messages[1]),
            "# Step 1:\n## Action:\nClick button 1.\n\n# Step 2:\n## Action:\nClick button 2.\n"
        );
        assert_eq!(messages[2].content, vec![Part::Image]);
        assert_eq!(
            text(&messages[3]),
            "# Step 3:\n## Action:\nClick button 3.\n"
        );
        assert_eq!(
            text(&messages[5]),
            "# Step 4:\n## Action:\nClick button 4.\n"
        );
        let last = &messages[6];
        assert_eq!(last.content.first(), Some(&Part::Image));
        assert!(text(last).starts_with("# Task Instruction:\nSave the note\n\n"));
        // No code from earlier steps reaches the prompt.
        assert!(messages[1..].iter().all(|m| !text(m).contains("pyautogui")));
        // A reply without an action section is remembered by its summary.
        let plain = PastStep {
            reply: "```python\npyautogui.click(x=1, y=2)\n```".into(),
            summary: "clicked".into(),
        };
        assert_eq!(action_words(&plain), "clicked");
    }

    /// A UI-TARS model is asked in its own computer-use prompt, and every action that prompt
    /// offers reads back through the UI-TARS parser.
    #[test]
    fn ui_tars_is_asked_in_its_own_words_and_every_action_it_is_offered_parses() {
        let p = AgentPrompts::built_in().expect("prompts");
        let (messages, _) = conversation(
            &p,
            ActionFormat::UiTarsPixels,
            "Save the note",
            &[step(1)],
            0,
            10,
        )
        .expect("builds");
        let text = match &messages[0].content[..] {
            [Part::Image, Part::Text { text }] => text.clone(),
            other => panic!("{other:?}"),
        };
        assert!(text.starts_with("You are a GUI agent."), "{text}");
        assert!(
            text.contains("## User Instruction\nSave the note"),
            "{text}"
        );
        assert!(text.contains("1. did 1"), "{text}");
        assert!(!text.contains("computer_use"), "{text}");
        let space = text
            .split("## Action Space")
            .nth(1)
            .and_then(|t| t.split("## Note").next())
            .expect("an action space");
        let frame = crate::Frame {
            image: (1000, 1000),
            screen: (1000, 1000),
            pointer: None,
        };
        let mut offered = 0;
        for line in space.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let call = line.split(" #").next().unwrap_or(line).trim();
            let call = call
                .replace("x1 y1", "100 200")
                .replace("x2 y2", "300 400")
                .replace("down or up or right or left", "down");
            let reply = format!("Thought: t\nAction: {call}");
            ActionFormat::UiTars1000
                .parse(&reply, &frame)
                .unwrap_or_else(|e| panic!("{call}: {e}"));
            offered += 1;
        }
        assert_eq!(offered, 9, "{space}");
        let qwen = p.task("Save the note", &[], 1).expect("renders");
        assert!(qwen.contains("computer_use"), "{qwen}");
    }

    #[test]
    fn practice_elements_read_from_a_tree_are_the_gyms_own_words() {
        use clawdesk_gym::screen::{HEIGHT, WIDTH};
        use clawdesk_gym::{Task, TaskKind};
        let prompts = AgentPrompts::built_in().expect("built-in");
        let gym = clawdesk_gym::GymPrompts::built_in().expect("gym prompts");
        for kind in TaskKind::ALL {
            for seed in 0..50 {
                let mut task = Task::generate(kind, seed);
                loop {
                    let read = practice_elements(&task.screen().tree(), WIDTH, HEIGHT);
                    assert_eq!(read, task.elements(), "{kind:?} {seed}");
                    assert_eq!(
                        prompts
                            .practice(task.instruction(), &read)
                            .expect("renders"),
                        gym.task(task.instruction(), &task.elements())
                            .expect("renders")
                    );
                    let Some(right) = task.expert() else { break };
                    task.step(Some(&right));
                }
            }
        }
    }

    #[test]
    fn the_window_keeps_the_last_screens_and_lists_the_rest() {
        let p = AgentPrompts::built_in().expect("built-in");
        let past: Vec<_> = (1..=4).map(step).collect();
        let (messages, kept) =
            conversation(&p, ActionFormat::Qwen3Vl, "compute 12+7", &past, 2, 10).expect("builds");
        assert_eq!(kept, 2);
        // user(image, task) · assistant · user(image) · assistant · user(image)
        assert_eq!(messages.len(), 5);
        let images: usize = messages
            .iter()
            .map(|m| {
                m.content
                    .iter()
                    .filter(|p| matches!(p, Part::Image))
                    .count()
            })
            .sum();
        assert_eq!(images, kept + 1);
        let Part::Text { text } = &messages[0].content[1] else {
            panic!("{:?}", messages[0])
        };
        assert!(text.starts_with("compute 12+7"), "{text}");
        assert!(text.contains("1. did 1\n2. did 2"), "{text}");
        assert!(!text.contains("did 3"), "{text}");
        assert!(matches!(&messages[1].content[0], Part::Text { text } if text == "reply 3"));
        let (first, kept) =
            conversation(&p, ActionFormat::Qwen3Vl, "x", &[], 2, 10).expect("builds");
        assert_eq!((first.len(), kept), (1, 0));
        // Listing only the latest older step says how many were left out.
        let (messages, _) =
            conversation(&p, ActionFormat::Qwen3Vl, "x", &past, 2, 1).expect("builds");
        let Part::Text { text } = &messages[0].content[1] else {
            panic!("{:?}", messages[0])
        };
        assert!(
            text.contains("(1 earlier steps not shown)\n2. did 2"),
            "{text}"
        );
    }

    #[test]
    fn a_template_with_an_unknown_variable_is_refused_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("agent")).expect("mkdir");
        std::fs::write(dir.path().join("agent/task.md"), "{{ instructions }}").expect("write");
        let err = AgentPrompts::load(&[dir.path().to_path_buf()]).expect_err("misspelt");
        assert!(err.to_string().contains("task.md"), "{err}");
    }
}
