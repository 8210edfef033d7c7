/// What stops a loss from being computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainerError {
    /// Inputs that do not fit together (lengths, spans, settings).
    #[error("invalid training input: {0}")]
    Input(String),
    /// A NaN or infinity where a number must be finite; the update is skipped, not applied.
    #[error("non-finite {what} ({detail}); the update was skipped and the adapter left as it was")]
    NonFinite { what: &'static str, detail: String },
    /// The batch has no sample the method can learn from (Binary RL without decided rewards,
    /// OPD without hints); nothing was changed.
    #[error("none of the {samples} samples is trainable under this method; nothing was changed")]
    NothingToTrain { samples: usize },
    /// A checkpoint could not be written or read, or belongs to another model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gym(#[from] clawdesk_gym::GymError),
    #[error(transparent)]
    Model(#[from] clawdesk_model::ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

impl TrainerError {
    /// Wraps an I/O error with the path it concerns: `.map_err(TrainerError::io(&path))`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| TrainerError::Io { path, source }
    }
}
