use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop a step from being judged. Problems with what a judge *said* are not
/// errors: they are invalid votes, recorded with the raw text (see [`crate::Vote`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// A prompt template could not be read, parsed or rendered.
    #[error("prompt template {origin}: {reason}")]
    Prompt {
        /// Where the template came from (a file, or the built-in copy's name).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint could not be reached (refused, reset, DNS); worth retrying.
    #[error("cannot reach the judge endpoint {endpoint}: {reason}")]
    Network {
        /// The endpoint's URL, without credentials or query.
        endpoint: String,
        /// The connection error, cause by cause.
        reason: String,
    },
    /// The endpoint did not answer in time; worth retrying.
    #[error("the judge endpoint {endpoint} did not answer within {timeout:?}")]
    Timeout {
        /// The endpoint's URL, without credentials or query.
        endpoint: String,
        /// The time allowed for the whole request.
        timeout: Duration,
    },
    /// The endpoint answered with an HTTP error status.
    #[error("the judge endpoint {endpoint} answered HTTP {status}: {body}")]
    Status {
        /// The endpoint's URL, without credentials or query.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body, for the log and the UI.
        body: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The endpoint answered 200 with something that is not a chat completion (an HTML page from
    /// a proxy, broken JSON, no choices, a body over the size limit).
    #[error("the judge endpoint {endpoint} sent no usable chat completion: {reason}")]
    Protocol {
        /// The endpoint's URL, without credentials or query.
        endpoint: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// No API key where the settings say one is.
    #[error("no API key for the judge: {0}")]
    Secret(String),
    /// A screenshot could not be decoded or encoded.
    #[error("screenshot of step {step}: {reason}")]
    Image {
        /// The step whose screenshot it is.
        step: i64,
        /// What failed: the decoding or the encoding, and why.
        reason: String,
    },
    /// The settings make no sense (zero votes, a URL that is not one).
    #[error("judge settings: {0}")]
    Config(String),
    /// The store failed (SQLite or a blob).
    #[error(transparent)]
    Store(#[from] clawdesk_store::StoreError),
    /// The local judge model failed: preparing its input, generating or decoding.
    #[error("the local judge model failed: {0}")]
    Model(#[from] clawdesk_model::ModelError),
    /// A person-judge's question went unanswered (the asking side went away).
    #[error("no answer from the person: {0}")]
    Person(String),
    /// A blocking task (image work, the local model) panicked or was cancelled.
    #[error("judging task stopped: {0}")]
    Task(String),
    /// The file a template was to be written to, or read from.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl JudgeError {
    /// Whether trying the same request again may succeed: network trouble, timeouts, rate
    /// limits, server errors and garbled answers (a proxy in a bad moment).
    pub fn is_transient(&self) -> bool {
        match self {
            JudgeError::Network { .. } | JudgeError::Timeout { .. } => true,
            JudgeError::Protocol { .. } => true,
            JudgeError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether the failure belongs to the step itself and will not change by trying again:
    /// its screenshot is missing or damaged, or the endpoint refuses the request as it is
    /// (400, 413, 422). A missing key, a wrong model name or a broken template is the
    /// judge's problem, not the step's, and is not counted against it.
    pub fn is_the_steps_own(&self) -> bool {
        use clawdesk_store::StoreError;
        match self {
            JudgeError::Store(StoreError::CorruptBlob { .. } | StoreError::MissingBlob { .. }) => {
                true
            }
            JudgeError::Image { .. } => true,
            JudgeError::Status { status, .. } => matches!(status, 400 | 413 | 422),
            _ => false,
        }
    }

    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            JudgeError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The judge's result, failing with a [`JudgeError`].
pub type Result<T, E = JudgeError> = std::result::Result<T, E>;
