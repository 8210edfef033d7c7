use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::json_column;
use crate::blobs::BlobId;
use crate::table::episodes::EpisodeId;

/// A step's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub i64);

pub(crate) const SCHEMA: &str = "
CREATE TABLE steps (
    id             INTEGER PRIMARY KEY,
    episode_id     INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    before_image   TEXT    NOT NULL,
    after_image    TEXT,
    before_tree    TEXT,
    after_tree     TEXT,
    surface        TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    response       TEXT,
    policy_version INTEGER,
    outcome        TEXT    NOT NULL,
    error          TEXT,
    started_at_ms  INTEGER NOT NULL,
    ended_at_ms    INTEGER NOT NULL,
    UNIQUE (episode_id, idx)
);
CREATE INDEX steps_by_episode ON steps (episode_id, idx);
";

/// What became of the step's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The action ran.
    Executed,
    /// The guard (allowlist, password field, a person) refused it; nothing was sent to the app.
    Refused,
    /// The action was sent but failed part-way.
    Failed,
    /// The stop key or a person halted it.
    Stopped,
    /// The model's reply held no action that could run (unparseable, off the screen, an
    /// unknown key); nothing was sent. A judge scores it -1.
    Invalid,
}

impl StepOutcome {
    fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Executed => "executed",
            StepOutcome::Refused => "refused",
            StepOutcome::Failed => "failed",
            StepOutcome::Stopped => "stopped",
            StepOutcome::Invalid => "invalid",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "executed" => StepOutcome::Executed,
            "refused" => StepOutcome::Refused,
            "stopped" => StepOutcome::Stopped,
            "invalid" => StepOutcome::Invalid,
            _ => StepOutcome::Failed,
        }
    }
}

/// What a caller supplies to record a step. Images and trees are stored as blobs first
/// ([`crate::Store::put_blob`]); the row names them.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub episode: EpisodeId,
    /// The step's place in its episode, from 0.
    pub index: u32,
    pub before_image: BlobId,
    pub after_image: Option<BlobId>,
    pub before_tree: Option<BlobId>,
    pub after_tree: Option<BlobId>,
    /// The observed surface's geometry (pixel size, origin, scale), as JSON.
    pub surface: serde_json::Value,
    /// The action in its internal form, as JSON.
    pub action: serde_json::Value,
    /// The model's response (text, token ids, log-probabilities) when a model chose the action.
    pub response: Option<serde_json::Value>,
    /// The adapter version of the policy that produced the response.
    pub policy_version: Option<i64>,
    pub outcome: StepOutcome,
    /// Why the action was refused or failed.
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    pub episode: EpisodeId,
    pub index: u32,
    pub before_image: BlobId,
    pub after_image: Option<BlobId>,
    pub before_tree: Option<BlobId>,
    pub after_tree: Option<BlobId>,
    pub surface: serde_json::Value,
    pub action: serde_json::Value,
    pub response: Option<serde_json::Value>,
    pub policy_version: Option<i64>,
    pub outcome: StepOutcome,
    pub error: Option<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

pub(crate) fn insert(conn: &Connection, s: &NewStep) -> rusqlite::Result<StepId> {
    conn.execute(
        "INSERT INTO steps (episode_id, idx, before_image, after_image, before_tree, after_tree,
                            surface, action, response, policy_version, outcome, error,
                            started_at_ms, ended_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            s.episode.0,
            s.index,
            s.before_image.to_string(),
            s.after_image.as_ref().map(ToString::to_string),
            s.before_tree.as_ref().map(ToString::to_string),
            s.after_tree.as_ref().map(ToString::to_string),
            s.surface.to_string(),
            s.action.to_string(),
            s.response.as_ref().map(ToString::to_string),
            s.policy_version,
            s.outcome.as_str(),
            s.error,
            s.started_at_ms,
            s.ended_at_ms,
        ],
    )?;
    Ok(StepId(conn.last_insert_rowid()))
}

/// Steps with an id above `after`, in id order: the trainer's data stream.
pub(crate) fn after(conn: &Connection, after: StepId, limit: usize) -> rusqlite::Result<Vec<Step>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM steps WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    stmt.query_map(params![after.0, limit as i64], from_row)?
        .collect()
}

const COLUMNS: &str = "id, episode_id, idx, before_image, after_image, before_tree, after_tree,
    surface, action, response, policy_version, outcome, error, started_at_ms, ended_at_ms";

fn blob(text: Option<String>) -> rusqlite::Result<Option<BlobId>> {
    text.map(|t| {
        t.parse().map_err(|e: crate::StoreError| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Step> {
    let required = |v: Option<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    Ok(Step {
        id: StepId(row.get(0)?),
        episode: EpisodeId(row.get(1)?),
        index: row.get(2)?,
        before_image: blob(row.get(3)?)?.ok_or(rusqlite::Error::InvalidColumnType(
            3,
            "before_image".into(),
            rusqlite::types::Type::Null,
        ))?,
        after_image: blob(row.get(4)?)?,
        before_tree: blob(row.get(5)?)?,
        after_tree: blob(row.get(6)?)?,
        surface: required(json_column(row.get(7)?)?),
        action: required(json_column(row.get(8)?)?),
        response: json_column(row.get(9)?)?,
        policy_version: row.get(10)?,
        outcome: StepOutcome::parse(&row.get::<_, String>(11)?),
        error: row.get(12)?,
        started_at_ms: row.get(13)?,
        ended_at_ms: row.get(14)?,
    })
}

pub(crate) fn get(conn: &Connection, id: StepId) -> rusqlite::Result<Option<Step>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM steps WHERE id = ?1"),
        [id.0],
        from_row,
    )
    .optional()
}

pub(crate) fn of_episode(conn: &Connection, episode: EpisodeId) -> rusqlite::Result<Vec<Step>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM steps WHERE episode_id = ?1 ORDER BY idx"
    ))?;
    stmt.query_map([episode.0], from_row)?.collect()
}

pub(crate) fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM steps", [], |r| r.get(0))
}
