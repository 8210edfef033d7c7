use std::path::PathBuf;

/// What can go wrong in the gym.
#[derive(Debug, thiserror::Error)]
pub enum GymError {
    #[error("prompt template {path}: {reason}")]
    Template { path: PathBuf, reason: String },
    #[error(transparent)]
    Prompt(#[from] clawdesk_prompts::PromptError),
}

pub type Result<T> = std::result::Result<T, GymError>;
