use thiserror::Error;

/// Why a model's reply is not an action, or why an action cannot be written in a format.
/// A reply that fails to parse becomes a step with an invalid action (the judge scores it -1);
/// it never stops the agent.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FormatError {
    /// The reply holds no action in the format at all.
    #[error("no {format} action in the reply")]
    NoAction { format: &'static str },
    /// The reply holds something action-like that does not parse.
    #[error("{format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// The action exists in the format but not in the internal form (or the other way round).
    #[error("{format} cannot express {what}")]
    Unsupported { format: &'static str, what: String },
}
