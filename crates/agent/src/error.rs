//! The agent's errors: a reply that is not an action, and failures of the prompt and policy.

use std::path::PathBuf;

use thiserror::Error;

/// Why a model's reply is not an action, or why an action cannot be written in a format.
/// A reply that fails to parse becomes a step with an invalid action (the judge scores it -1);
/// it never stops the agent.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FormatError {
    /// The reply holds no action in the format at all.
    #[error("no {format} action in the reply")]
    NoAction {
        /// The format's name, as [`crate::ActionFormat::name`] gives it.
        format: &'static str,
    },
    /// The reply holds something action-like that does not parse.
    #[error("{format}: {detail}")]
    Malformed {
        /// The format's name, as [`crate::ActionFormat::name`] gives it.
        format: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The action exists in the format but not in the internal form (or the other way round).
    #[error("{format} cannot express {what}")]
    Unsupported {
        /// The format's name, as [`crate::ActionFormat::name`] gives it.
        format: &'static str,
        /// What could not be carried across, e.g. an action.
        what: String,
    },
}

/// What can go wrong in the agent's prompt and policy.
#[derive(Debug, Error)]
pub enum AgentError {
    /// A prompt template could not be found or read.
    #[error(transparent)]
    Prompt(#[from] clawdesk_prompts::PromptError),
    /// A prompt template did not compile, or failed the check render it gets when loaded.
    #[error("prompt template {}: {reason}", path.display())]
    Template {
        /// Where the template came from (a file, or "built-in NAME").
        path: PathBuf,
        /// The template engine's message.
        reason: String,
    },
    /// A loaded template failed to render a prompt; the text is the template engine's message.
    #[error("rendering the agent prompt: {0}")]
    Render(String),
    /// The model failed (rendering the chat, preprocessing images, loading an adapter,
    /// generation).
    #[error(transparent)]
    Model(#[from] clawdesk_model::ModelError),
    /// The policy's thread ended (it panicked or was shut down); nothing more can be served.
    #[error("the policy is not running")]
    PolicyGone,
    /// A remote policy's endpoint failed or answered something unreadable.
    #[error("remote policy: {0}")]
    Remote(String),
    /// A step's stored policy turn that does not read back (bad JSON, tokens without their
    /// log-probabilities).
    #[error("a stored policy turn: {0}")]
    StoredTurn(String),
}
