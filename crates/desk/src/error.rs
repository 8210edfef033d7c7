/// What can go wrong behind the window: the runtime's and the libraries' errors, and the
/// window's own (a settings file, a session that cannot do what was asked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeskError {
    #[error(transparent)]
    Runtime(#[from] clawdesk_runtime::RuntimeError),
    #[error(transparent)]
    Desktop(#[from] clawdesk_desktop::DesktopError),
    #[error(transparent)]
    Store(#[from] clawdesk_store::StoreError),
    #[error(transparent)]
    Trainer(#[from] clawdesk_trainer::TrainerError),
    #[error(transparent)]
    Agent(#[from] clawdesk_agent::AgentError),
    #[error(transparent)]
    Judge(#[from] clawdesk_judge::JudgeError),
    #[error(transparent)]
    Model(#[from] clawdesk_model::ModelError),
    /// The app's settings file cannot be read, or settings are not valid.
    #[error("settings {path}: {detail}")]
    Settings { path: String, detail: String },
    /// A live session cannot do what was asked (none running, one already running).
    #[error("live session: {0}")]
    Session(String),
    /// A helper program or a file of the window's own failed.
    #[error("{program}: {detail}")]
    External { program: String, detail: String },
}
