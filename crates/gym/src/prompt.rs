//! The gym's prompt: the user turn's text under the screenshot, from `prompts/gym/task.md`
//! (found on the prompt search path, else the built-in copy).

use std::path::{Path, PathBuf};

use clawdesk_prompts::Template;

use minijinja::{Environment, UndefinedBehavior, context};

use crate::error::{GymError, Result};

const TASK_FILE: &str = "gym/task.md";

/// The compiled gym prompt.
#[derive(Debug)]
pub struct GymPrompts {
    env: Environment<'static>,
}

impl GymPrompts {
    /// The built-in template.
    pub fn built_in() -> Result<Self> {
        Self::load(&[])
    }

    /// `gym/task.md` from the first of `dirs` that has it, else the built-in template.
    pub fn load(dirs: &[PathBuf]) -> Result<Self> {
        let Template { text, origin } = clawdesk_prompts::find(dirs, TASK_FILE)?;
        Self::from_source(text, Path::new(&origin))
    }

    fn from_source(source: String, path: &Path) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        env.add_template_owned("task", source)
            .map_err(|e| GymError::Template {
                path: path.into(),
                reason: e.to_string(),
            })?;
        let prompts = Self { env };
        prompts
            .task("check", &["red button (125,250)".into()])
            .map_err(|e| GymError::Template {
                path: path.into(),
                reason: e.to_string(),
            })?;
        Ok(prompts)
    }

    /// The user text for an instruction and the screen's elements (name and grid centre).
    pub fn task(&self, instruction: &str, elements: &[String]) -> Result<String> {
        self.render(instruction, elements, true)
    }

    /// [`Self::task`] without the line that states the action format: the warm start's
    /// shortest prompt, before its curriculum lengthens it.
    pub fn task_without_format(&self, instruction: &str, elements: &[String]) -> Result<String> {
        self.render(instruction, elements, false)
    }

    fn render(&self, instruction: &str, elements: &[String], format_line: bool) -> Result<String> {
        let template = self
            .env
            .get_template("task")
            .map_err(|e| template_error(&e))?;
        template
            .render(context! { instruction, elements, format_line })
            .map_err(|e| template_error(&e))
    }
}

fn template_error(e: &minijinja::Error) -> GymError {
    GymError::Template {
        path: TASK_FILE.into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_instruction_and_refuses_unknown_variables() {
        let p = GymPrompts::built_in().expect("built-in prompt");
        let text = p
            .task("Click the red button.", &["red button (125,250)".into()])
            .expect("renders");
        assert!(text.starts_with("Act: "), "{text:?}");
        assert!(
            text.ends_with("\n- red button (125,250)\nClick the red button."),
            "{text:?}"
        );
        let lean = p
            .task_without_format("Click the red button.", &["red button (125,250)".into()])
            .expect("renders");
        assert_eq!(lean, "- red button (125,250)\nClick the red button.");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("gym")).expect("mkdir");
        std::fs::write(dir.path().join("gym/task.md"), "{{ instrucion }}").expect("write");
        let err = GymPrompts::load(&[dir.path().to_path_buf()]).expect_err("a misspelt variable");
        assert!(err.to_string().contains("task.md"), "{err}");
    }
}
