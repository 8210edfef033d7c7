//! Errors of the model crate. Each names the file, tensor or limit at fault so that a person
//! can act on it without reading our code.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory could not be read or written.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory at fault.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, adapter config, chat template) did not parse into what it should hold.
    #[error("{path} is not valid JSON for {what}: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// What the file should hold, e.g. "a model config".
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` names a `model_type` other than `qwen3_vl` or `qwen2_5_vl`.
    #[error(
        "unsupported architecture {found:?} in {path}: ClawDesk runs Qwen3-VL (model_type \"qwen3_vl\") and Qwen2.5-VL (\"qwen2_5_vl\")"
    )]
    UnsupportedArchitecture {
        /// The `config.json` read.
        path: PathBuf,
        /// The `model_type` it names (`<none>` when absent).
        found: String,
    },
    /// A config parsed but holds values that cannot work together.
    #[error("invalid config {path}: {reason}")]
    Config {
        /// The config file at fault.
        path: PathBuf,
        /// Which values are wrong.
        reason: String,
    },
    /// A safetensors file or its index could not be read, parsed or written.
    #[error("{path} is not a valid safetensors file: {reason}")]
    CorruptWeights {
        /// The weights file or index at fault.
        path: PathBuf,
        /// The safetensors library's message, or what the index lacks.
        reason: String,
    },
    /// A tensor the architecture needs is in none of the weight files.
    #[error("tensor {name} is missing from {dir}")]
    MissingTensor {
        /// The model directory searched.
        dir: PathBuf,
        /// The tensor's name, as in the checkpoint.
        name: String,
    },
    /// The weight files hold tensors the model never took, a sign of a different architecture.
    #[error("{dir} holds tensors this architecture does not use: {names}")]
    UnexpectedTensors {
        /// The model directory.
        dir: PathBuf,
        /// The first few unused names, comma-separated, with a count of the rest.
        names: String,
    },
    /// A tensor (base weight or LoRA factor) does not have the shape the config implies.
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        /// The tensor's name.
        name: String,
        /// The shape in the file.
        found: Vec<usize>,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// `tokenizer.json` did not load, or disagrees with `config.json` (vocabulary, vision tokens).
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The chat template is missing, did not compile or failed to render; the text says why.
    #[error("chat template: {0}")]
    Template(String),
    /// An image is too small, too large or too elongated to preprocess.
    #[error("image of {width}x{height} pixels: {reason}")]
    Image {
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// Which limit it breaks.
        reason: String,
    },
    /// The prompt (or prompt plus generated tokens) is longer than the model's context.
    #[error("the prompt holds {tokens} tokens, more than the model's context of {limit}")]
    ContextOverflow {
        /// Tokens the sequence would hold.
        tokens: usize,
        /// The model's context length in tokens.
        limit: usize,
    },
    /// The image placeholders in the prompt do not match the images supplied.
    #[error("the prompt has {placeholders} image placeholders but {images} images were given")]
    ImageCountMismatch {
        /// Image placeholder tokens found in the prompt.
        placeholders: usize,
        /// Images given; when the model checks a prepared input, the image tokens they need.
        images: usize,
    },
    /// A caller's input is unusable (empty prompt, token outside the vocabulary, bad image
    /// file); the text says which.
    #[error("invalid input: {0}")]
    Input(String),
    /// A PEFT adapter could not be exported or does not fit this model.
    #[error("adapter {path}: {reason}")]
    Adapter {
        /// The adapter directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A gradient was asked of a result computed in Fast mode; the text names what was asked.
    #[error("{0} needs Train mode; it was called on a Fast-mode result")]
    ModeMismatch(String),
    /// The model is neither a local directory nor cached, and could not be downloaded.
    #[error(
        "model {repo} is neither a local directory nor in the Hugging Face cache ({cache}), and downloading failed: {reason}"
    )]
    NotFound {
        /// The model as given: a local path or a hub repository id.
        repo: String,
        /// The Hugging Face cache directory looked in.
        cache: PathBuf,
        /// Why the download failed.
        reason: String,
    },
    /// A device or precision was named wrongly, or the device named cannot be opened.
    #[error("{0}")]
    Device(String),
    /// A tensor operation failed in candle.
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

/// The crate's result type, with [`ModelError`] as the error.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
