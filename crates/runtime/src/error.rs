/// What can go wrong in the headless loops, wrapping the libraries' own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
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
    #[error(transparent)]
    Server(#[from] clawdesk_server::ServerError),
    /// A script file that cannot be read or understood.
    #[error("script {path}: {detail}")]
    Script { path: String, detail: String },
    /// A scripted step names an element the tree does not have.
    #[error("step {step}: no visible element matches {query}; visible elements:\n{available}")]
    NoSuchElement {
        step: usize,
        query: String,
        available: String,
    },
    /// A file or folder of the runtime's own could not be written or read (an adapter being
    /// published, say).
    #[error("{0}")]
    Io(String),
    /// A baseline or helper program failed.
    #[error("{program}: {detail}")]
    External { program: String, detail: String },
}
