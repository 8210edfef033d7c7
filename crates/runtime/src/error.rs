/// What can go wrong in the headless loops, wrapping the libraries' own errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
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
    /// The model server could not start, or stopped.
    #[error(transparent)]
    Server(#[from] clawdesk_server::ServerError),
    /// A script file that cannot be read or understood.
    #[error("script {path}: {detail}")]
    Script {
        /// The script file, as given.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A scripted step names an element the tree does not have.
    #[error("step {step}: no visible element matches {query}; visible elements:\n{available}")]
    NoSuchElement {
        /// The step's index in the script, from 0.
        step: usize,
        /// The element query, as JSON.
        query: String,
        /// The visible elements, linearised, so the script can be fixed.
        available: String,
    },
    /// A file or folder of the runtime's own could not be written or read (an adapter being
    /// published, say).
    #[error("{0}")]
    Io(String),
    /// A baseline or helper program failed.
    #[error("{program}: {detail}")]
    External {
        /// The program or part of the runtime that failed (`export`, `trainer thread`).
        program: String,
        /// What went wrong, usually the underlying error's message.
        detail: String,
    },
}
