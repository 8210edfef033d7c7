//! The OPD teacher's context: the student's prompt with the hindsight hint appended to the last
//! user turn, worded by `prompts/trainer/hint.md` (found on the prompt search path).

use std::path::PathBuf;

use minijinja::{Environment, UndefinedBehavior, context};

use crate::error::{Result, TrainerError};

const HINT_FILE: &str = "trainer/hint.md";

/// The compiled hint template.
#[derive(Debug)]
pub struct HintTemplate {
    env: Environment<'static>,
}

impl HintTemplate {
    /// The template built into the binary, ignoring any on the prompt search path.
    pub fn built_in() -> Result<Self> {
        Self::load(&[])
    }

    /// `trainer/hint.md` from the first of `dirs` that has it, else the built-in template.
    pub fn load(dirs: &[PathBuf]) -> Result<Self> {
        let template = clawdesk_prompts::find(dirs, HINT_FILE).map_err(|e| match e {
            clawdesk_prompts::PromptError::Io { path, source } => TrainerError::Io { path, source },
            other => TrainerError::Input(other.to_string()),
        })?;
        Self::from_source(template.text, &template.origin)
    }

    fn from_source(source: String, name: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        env.add_template_owned("hint", source)
            .map_err(|e| TrainerError::Input(format!("prompt template {name}: {e}")))?;
        let template = Self { env };
        let probe = template
            .suffix("probe")
            .map_err(|e| TrainerError::Input(format!("prompt template {name}: {e}")))?;
        if !probe.contains("probe") {
            return Err(TrainerError::Input(format!(
                "prompt template {name} does not place {{{{ hint }}}}"
            )));
        }
        Ok(template)
    }

    /// The text appended to the last user turn.
    pub fn suffix(&self, hint: &str) -> Result<String> {
        self.env
            .get_template("hint")
            .and_then(|t| t.render(context! { hint }))
            .map_err(|e| TrainerError::Input(format!("rendering {HINT_FILE}: {e}")))
    }

    /// The user text with the hint appended.
    pub fn append(&self, user_text: &str, hint: &str) -> Result<String> {
        Ok(format!("{user_text}{}", self.suffix(hint)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_hint_and_refuses_a_template_without_it() {
        let t = HintTemplate::built_in().expect("built-in");
        let text = t
            .append("Click red.", "It was click(1,2).")
            .expect("renders");
        assert_eq!(text, "Click red.\n\nHint: It was click(1,2).");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("trainer")).expect("mkdir");
        std::fs::write(dir.path().join("trainer/hint.md"), "Hint follows").expect("write");
        let err = HintTemplate::load(&[dir.path().to_path_buf()]).expect_err("no hint placed");
        assert!(err.to_string().contains("does not place"), "{err}");
    }
}
