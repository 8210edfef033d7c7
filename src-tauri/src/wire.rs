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

impl From<clawdesk_engine::EngineError> for WireError {
    fn from(e: clawdesk_engine::EngineError) -> Self {
        match e {
            clawdesk_engine::EngineError::Store(e) => e.into(),
            other => WireError {
                code: ErrorCode::Export,
                message: other.to_string(),
            },
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
