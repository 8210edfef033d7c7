//! The types that cross the IPC boundary, in camelCase, built from domain types with `From`.
//! `ui/src` mirrors each one by name.

use serde::Serialize;

/// What went wrong, as the window shows it: a stable code to branch on and a sentence.
#[derive(Debug, Serialize)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

/// The kinds of failure the window can tell apart.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    Storage,
    DiskFull,
    /// An export could not be written (a folder that is not empty, a file that failed).
    Export,
    /// Settings that cannot be read or are not valid.
    Settings,
    /// No session, or one already running.
    Session,
    /// The model could not be loaded.
    Model,
    Internal,
}

impl From<clawdesk_store::StoreError> for WireError {
    fn from(e: clawdesk_store::StoreError) -> Self {
        use clawdesk_store::StoreError as E;
        let code = match &e {
            E::NotFound { .. } => ErrorCode::NotFound,
            E::DiskFull { .. } => ErrorCode::DiskFull,
            _ => ErrorCode::Storage,
        };
        WireError {
            code,
            message: e.to_string(),
        }
    }
}

impl From<clawdesk_desk::DeskError> for WireError {
    fn from(e: clawdesk_desk::DeskError) -> Self {
        use clawdesk_desk::DeskError as E;
        match e {
            E::Store(e) => e.into(),
            E::Runtime(e) => e.into(),
            e => WireError {
                code: match &e {
                    E::Settings { .. } => ErrorCode::Settings,
                    E::Session(_) => ErrorCode::Session,
                    E::Model(_) => ErrorCode::Model,
                    _ => ErrorCode::Export,
                },
                message: e.to_string(),
            },
        }
    }
}

impl From<clawdesk_runtime::RuntimeError> for WireError {
    fn from(e: clawdesk_runtime::RuntimeError) -> Self {
        use clawdesk_runtime::RuntimeError as E;
        match e {
            E::Store(e) => e.into(),
            e => WireError {
                code: match &e {
                    E::Model(_) => ErrorCode::Model,
                    _ => ErrorCode::Export,
                },
                message: e.to_string(),
            },
        }
    }
}

impl WireError {
    /// A failure of the shell itself (a task that panicked, a poisoned lock).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        WireError {
            code: ErrorCode::Internal,
            message: e.to_string(),
        }
    }

    pub fn session(message: &str) -> Self {
        WireError {
            code: ErrorCode::Session,
            message: message.to_owned(),
        }
    }
}

/// What an export wrote, for the status line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportDone {
    pub episodes: usize,
    pub steps: usize,
    pub images: usize,
    pub folder: String,
}

/// Facts about the running app for the header.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub version: String,
    pub data_dir: String,
    /// No settings were ever saved here: the window greets the person and asks for a model.
    pub first_run: bool,
    /// The hub model offered first (the smallest Qwen3-VL instruct model).
    pub default_hub_model: String,
}

/// One line of the episode list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeRow {
    pub id: i64,
    pub task: String,
    pub app: Option<String>,
    pub status: clawdesk_store::EpisodeStatus,
    pub steps: i64,
    pub started_at_ms: i64,
}

impl From<clawdesk_store::Episode> for EpisodeRow {
    fn from(e: clawdesk_store::Episode) -> Self {
        EpisodeRow {
            id: e.id.0,
            task: e.task,
            app: e.app,
            status: e.status,
            steps: e.steps,
            started_at_ms: e.started_at_ms,
        }
    }
}

/// One step of an episode, with the files of its screenshots.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRow {
    pub id: i64,
    pub index: u32,
    pub action: serde_json::Value,
    pub outcome: clawdesk_store::StepOutcome,
    pub error: Option<String>,
    /// `None` for a conversation turn (no screens).
    pub before_image: Option<String>,
    pub after_image: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

/// A page of the timeline and how many steps the filter lets through.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePage {
    pub rows: Vec<clawdesk_store::TimelineRow>,
    pub total: i64,
}

/// A training run's figures for the curves.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainSeries {
    pub run: Option<String>,
    pub runs: Vec<String>,
    pub updates: Vec<clawdesk_store::TrainUpdate>,
}

/// One adapter version in the adapters list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterRow {
    pub version: i64,
    pub base_model: String,
    pub path: String,
    pub created_at_ms: i64,
    pub gym_score: Option<f64>,
    pub loss: Option<f64>,
    pub mean_reward: Option<f64>,
    pub active: bool,
}

impl AdapterRow {
    pub fn new(a: clawdesk_store::Adapter, active: Option<i64>) -> Self {
        let metric = |name: &str| {
            a.metrics
                .as_ref()
                .and_then(|m| m.get(name))
                .and_then(serde_json::Value::as_f64)
        };
        AdapterRow {
            loss: metric("loss"),
            mean_reward: metric("mean_reward"),
            active: active == Some(a.version),
            version: a.version,
            base_model: a.base_model,
            path: a.path,
            created_at_ms: a.created_at_ms,
            gym_score: a.gym_score,
        }
    }
}

/// Bytes copied of an adapter export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportProgress {
    pub done: u64,
    pub total: u64,
}

/// The answer to saving settings: saved, or the fields to mend.
#[derive(Debug, Serialize)]
pub struct SettingsAnswer {
    pub saved: bool,
    pub errors: Vec<clawdesk_desk::settings::FieldError>,
    /// What a changed data folder means at the next start, in words.
    pub notice: Option<String>,
}
