//! Errors of the model crate. Each names the file, tensor or limit at fault so that a person
//! can act on it without reading our code.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON for {what}: {source}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "unsupported architecture {found:?} in {path}: ClawDesk runs Qwen3-VL (model_type \"qwen3_vl\")"
    )]
    UnsupportedArchitecture { path: PathBuf, found: String },
    #[error("invalid config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path} is not a valid safetensors file: {reason}")]
    CorruptWeights { path: PathBuf, reason: String },
    #[error("tensor {name} is missing from {dir}")]
    MissingTensor { dir: PathBuf, name: String },
    #[error("{dir} holds tensors this architecture does not use: {names}")]
    UnexpectedTensors { dir: PathBuf, names: String },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("image of {width}x{height} pixels: {reason}")]
    Image {
        width: u32,
        height: u32,
        reason: String,
    },
    #[error("the prompt holds {tokens} tokens, more than the model's context of {limit}")]
    ContextOverflow { tokens: usize, limit: usize },
    #[error("the prompt has {placeholders} image placeholders but {images} images were given")]
    ImageCountMismatch { placeholders: usize, images: usize },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("adapter {path}: {reason}")]
    Adapter { path: PathBuf, reason: String },
    #[error("{0} needs Train mode; it was called on a Fast-mode result")]
    ModeMismatch(String),
    #[error(
        "model {repo} is neither a local directory nor in the Hugging Face cache ({cache}), and downloading failed: {reason}"
    )]
    NotFound {
        repo: String,
        cache: PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
