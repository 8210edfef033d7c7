/// What can go wrong behind the window: the runtime's and the libraries' errors, and the
/// window's own (a settings file, a session that cannot do what was asked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeskError {
    /// A headless loop failed (recording, the agent, the live loop, an export).
    #[error(transparent)]
    Runtime(#[from] clawdesk_runtime::RuntimeError),
    /// The desktop could not be observed or acted on.
    #[error(transparent)]
    Desktop(#[from] clawdesk_desktop::DesktopError),
    /// The store failed (SQLite or a blob).
    #[error(transparent)]
    Store(#[from] clawdesk_store::StoreError),
    /// Training failed (bad input, a non-finite loss, a checkpoint).
    #[error(transparent)]
    Trainer(#[from] clawdesk_trainer::TrainerError),
    /// The agent's prompt or policy failed.
    #[error(transparent)]
    Agent(#[from] clawdesk_agent::AgentError),
    /// A step could not be judged.
    #[error(transparent)]
    Judge(#[from] clawdesk_judge::JudgeError),
    /// The model could not be loaded, run or saved.
    #[error(transparent)]
    Model(#[from] clawdesk_model::ModelError),
    /// The app's settings file cannot be read, or settings are not valid.
    #[error("settings {path}: {detail}")]
    Settings {
        /// The settings file.
        path: String,
        /// What is wrong: the read or parse error, or each bad field.
        detail: String,
    },
    /// A live session cannot do what was asked (none running, one already running).
    #[error("live session: {0}")]
    Session(String),
    /// A helper program or a file of the window's own failed.
    #[error("{program}: {detail}")]
    External {
        /// The program or part of the window that failed (`screenshot`, `thumbnail`).
        program: String,
        /// What went wrong, usually the underlying error's message.
        detail: String,
    },
}
