//! The gym's error type.

use std::path::PathBuf;

/// What can go wrong in the gym.
#[derive(Debug, thiserror::Error)]
pub enum GymError {
    /// The task template did not compile or render.
    #[error("prompt template {path}: {reason}")]
    Template {
        /// Where the template came from (a file, or the built-in copy's name).
        path: PathBuf,
        /// The template engine's message.
        reason: String,
    },
    /// The task template could not be found or read.
    #[error(transparent)]
    Prompt(#[from] clawdesk_prompts::PromptError),
}

/// The gym's result, failing with a [`GymError`].
pub type Result<T> = std::result::Result<T, GymError>;
