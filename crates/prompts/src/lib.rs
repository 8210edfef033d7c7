//! Where every prompt template comes from, for every part that sends one (judge, gym, trainer):
//! the first of the user's folders that has the file, else the copy of `prompts/` built into
//! the binary. One search path, so a template edited in the data directory's `prompts/` is
//! found by whichever part uses it (see `prompts/README.md`).

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// The copies built into the binary, by their path under `prompts/`.
const BUILT_IN: [(&str, &str); 10] = [
    (
        "agent/task.md",
        include_str!("../../../prompts/agent/task.md"),
    ),
    (
        "agent/ui_tars.md",
        include_str!("../../../prompts/agent/ui_tars.md"),
    ),
    (
        "agent/opencua.md",
        include_str!("../../../prompts/agent/opencua.md"),
    ),
    (
        "agent/opencua_system.md",
        include_str!("../../../prompts/agent/opencua_system.md"),
    ),
    (
        "judge/step.md",
        include_str!("../../../prompts/judge/step.md"),
    ),
    (
        "judge/hint.md",
        include_str!("../../../prompts/judge/hint.md"),
    ),
    (
        "judge/turn.md",
        include_str!("../../../prompts/judge/turn.md"),
    ),
    (
        "judge/turn_hint.md",
        include_str!("../../../prompts/judge/turn_hint.md"),
    ),
    ("gym/task.md", include_str!("../../../prompts/gym/task.md")),
    (
        "trainer/hint.md",
        include_str!("../../../prompts/trainer/hint.md"),
    ),
];

/// A template's text and where it came from (a file, or "built-in NAME"), for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The template's full text, before any placeholder is filled in.
    pub text: String,
    /// The file it was read from, or "built-in NAME" for a copy built into the binary.
    pub origin: String,
}

/// Why a template could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// A template file exists in a searched folder but could not be read.
    #[error("reading the prompt template {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// No searched folder has the template and no copy of it is built in.
    #[error("no prompt template {name} is built in")]
    Unknown {
        /// The template asked for, a path under `prompts/`.
        name: String,
    },
}

/// The folders searched, first match wins: `explicit` (`--prompts`), `$CLAWDESK_PROMPTS`, then
/// the data directory's `prompts/`.
pub fn search_path(explicit: Option<&Path>, data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os("CLAWDESK_PROMPTS").filter(|v| !v.is_empty()) {
        dirs.push(env.into());
    }
    dirs.extend(data_dir.map(|d| d.join("prompts")));
    dirs
}

/// The template `name` (a path under `prompts/`, e.g. `judge/step.md`) from the first of `dirs`
/// that has it, else the built-in copy. A file that exists but cannot be read is an error, not
/// a silent fall back.
pub fn find(dirs: &[PathBuf], name: &str) -> Result<Template, PromptError> {
    for dir in dirs {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                tracing::debug!(path = %path.display(), "prompt template from file");
                return Ok(Template {
                    text,
                    origin: path.display().to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PromptError::Io { path, source }),
        }
    }
    BUILT_IN
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, text)| Template {
            text: (*text).to_owned(),
            origin: format!("built-in {name}"),
        })
        .ok_or_else(|| PromptError::Unknown { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_folder_with_the_file_wins_else_the_built_in_copy() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(b.path().join("gym")).unwrap();
        std::fs::write(b.path().join("gym/task.md"), "mine").unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        let found = find(&dirs, "gym/task.md").unwrap();
        assert_eq!(found.text, "mine");
        assert!(found.origin.ends_with("task.md"), "{}", found.origin);
        let built_in = find(&dirs, "trainer/hint.md").unwrap();
        assert_eq!(built_in.origin, "built-in trainer/hint.md");
        assert!(built_in.text.contains("{{ hint }}"));
        assert!(matches!(
            find(&dirs, "nope.md"),
            Err(PromptError::Unknown { .. })
        ));
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be cannot be read as text.
        std::fs::create_dir_all(dir.path().join("judge/step.md")).unwrap();
        let err = find(&[dir.path().to_path_buf()], "judge/step.md").unwrap_err();
        assert!(matches!(err, PromptError::Io { .. }), "{err}");
    }
}
