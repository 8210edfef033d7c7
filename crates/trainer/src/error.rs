/// What stops a loss from being computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainerError {
    /// Inputs that do not fit together (lengths, spans, settings).
    #[error("invalid training input: {0}")]
    Input(String),
    /// A NaN or infinity where a number must be finite; the update is skipped, not applied.
    #[error("non-finite {what} ({detail}); the update was skipped and the adapter left as it was")]
    NonFinite {
        /// Which quantity was not finite (a reward, a gradient, a loss).
        what: &'static str,
        /// The offending value, or where it appeared.
        detail: String,
    },
    /// The batch has no sample the method can learn from (Binary RL without decided rewards,
    /// OPD without hints); nothing was changed.
    #[error("none of the {samples} samples is trainable under this method; nothing was changed")]
    NothingToTrain {
        /// Samples in the batch.
        samples: usize,
    },
    /// A checkpoint could not be written or read, or belongs to another model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path the operation concerned.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The gym's task prompt template could not be found, compiled or rendered.
    #[error(transparent)]
    Gym(#[from] clawdesk_gym::GymError),
    /// The model could not be loaded, or failed to encode a prompt, score or generate.
    #[error(transparent)]
    Model(#[from] clawdesk_model::ModelError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// The trainer's result, with [`TrainerError`] as the default error.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

impl TrainerError {
    /// Wraps an I/O error with the path it concerns: `.map_err(TrainerError::io(&path))`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| TrainerError::Io { path, source }
    }
}
