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

/// 5: steps of two kinds. A conversation turn served over the API has no screens: its
/// "after" is the next message of its session, which arrives later. SQLite cannot relax a
/// NOT NULL column in place, so the table is rebuilt (foreign keys are off while migrating).
pub(crate) const SCHEMA_V5: &str = "
CREATE TABLE steps_v5 (
    id             INTEGER PRIMARY KEY,
    episode_id     INTEGER NOT NULL REFERENCES episodes(id) ON DELETE CASCADE,
    idx            INTEGER NOT NULL,
    kind           TEXT    NOT NULL DEFAULT 'gui',
    before_image   TEXT,
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
    next_state     TEXT,
    UNIQUE (episode_id, idx)
);
INSERT INTO steps_v5 (id, episode_id, idx, before_image, after_image, before_tree, after_tree,
                      surface, action, response, policy_version, outcome, error,
                      started_at_ms, ended_at_ms)
    SELECT id, episode_id, idx, before_image, after_image, before_tree, after_tree,
           surface, action, response, policy_version, outcome, error,
           started_at_ms, ended_at_ms
    FROM steps;
DROP TABLE steps;
ALTER TABLE steps_v5 RENAME TO steps;
CREATE INDEX steps_by_episode ON steps (episode_id, idx);
";

/// What a step is: an action on a screen, or a reply in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// An action on a screen, chosen from a screenshot.
    Gui,
    /// A main turn served over the OpenAI-compatible API; judged from the session's next
    /// message.
    Turn,
}

impl StepKind {
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "turn" => StepKind::Turn,
            _ => StepKind::Gui,
        }
    }
}

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

    pub(crate) fn parse(s: &str) -> Self {
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
    /// The episode it belongs to.
    pub episode: EpisodeId,
    /// The step's place in its episode, from 0.
    pub index: u32,
    /// The screenshot the action was chosen on.
    pub before_image: BlobId,
    /// The screenshot after the action, when one was taken; a judge needs it.
    pub after_image: Option<BlobId>,
    /// The accessibility-tree snapshot the action was chosen on, when one was read.
    pub before_tree: Option<BlobId>,
    /// The accessibility-tree snapshot after the action, when one was read.
    pub after_tree: Option<BlobId>,
    /// The observed surface's geometry (pixel size, origin, scale), as JSON.
    pub surface: serde_json::Value,
    /// The action in its internal form, as JSON.
    pub action: serde_json::Value,
    /// The model's response (text, token ids, log-probabilities) when a model chose the action.
    pub response: Option<serde_json::Value>,
    /// The adapter version of the policy that produced the response.
    pub policy_version: Option<i64>,
    /// What became of the action.
    pub outcome: StepOutcome,
    /// Why the action was refused or failed.
    pub error: Option<String>,
    /// When the step began, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When the step ended, in milliseconds since the Unix epoch.
    pub ended_at_ms: i64,
}

/// What a caller supplies to record a conversation turn: the policy turn (prompt, tokens,
/// log-probabilities) as `response`, the reply as the client saw it as `action`.
#[derive(Debug, Clone)]
pub struct NewTurn {
    /// The conversation's episode (see [`crate::Store::session_episode`]).
    pub episode: EpisodeId,
    /// The policy turn (prompt, sampled text, token ids, log-probabilities), as JSON.
    pub response: serde_json::Value,
    /// The reply as the client received it (content, tool calls), as JSON.
    pub action: serde_json::Value,
    /// The adapter version that served the turn; `None` for the base model.
    pub policy_version: Option<i64>,
    /// When the request was taken up, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When the reply was done, in milliseconds since the Unix epoch.
    pub ended_at_ms: i64,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Its row id.
    pub id: StepId,
    /// The episode it belongs to.
    pub episode: EpisodeId,
    /// Its place in its episode, from 0.
    pub index: u32,
    /// A screen action or a conversation turn.
    pub kind: StepKind,
    /// The screen the action was chosen on; `None` for a conversation turn.
    pub before_image: Option<BlobId>,
    /// The screen after the action, when one was taken; `None` for a conversation turn.
    pub after_image: Option<BlobId>,
    /// The accessibility-tree snapshot the action was chosen on, when one was read.
    pub before_tree: Option<BlobId>,
    /// The accessibility-tree snapshot after the action, when one was read.
    pub after_tree: Option<BlobId>,
    /// The observed surface's geometry as JSON; `{}` for a conversation turn.
    pub surface: serde_json::Value,
    /// The action in its internal form (for a turn, the reply as the client saw it), as JSON.
    pub action: serde_json::Value,
    /// The model's response (for a turn, the policy turn) when a model chose the action.
    pub response: Option<serde_json::Value>,
    /// The adapter version of the policy that produced it; `None` for the base model or a
    /// step no model chose.
    pub policy_version: Option<i64>,
    /// What became of the action.
    pub outcome: StepOutcome,
    /// Why the action was refused or failed.
    pub error: Option<String>,
    /// When the step began, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When the step ended, in milliseconds since the Unix epoch.
    pub ended_at_ms: i64,
    /// For a conversation turn, the message that followed it (its next state), once it came.
    pub next_state: Option<serde_json::Value>,
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

/// Records a turn at the end of its episode.
pub(crate) fn insert_turn(conn: &Connection, t: &NewTurn) -> rusqlite::Result<StepId> {
    conn.execute(
        "INSERT INTO steps (episode_id, idx, kind, surface, action, response, policy_version,
                            outcome, started_at_ms, ended_at_ms)
         VALUES (?1, (SELECT COALESCE(MAX(idx) + 1, 0) FROM steps WHERE episode_id = ?1),
                 'turn', '{}', ?2, ?3, ?4, 'executed', ?5, ?6)",
        params![
            t.episode.0,
            t.action.to_string(),
            t.response.to_string(),
            t.policy_version,
            t.started_at_ms,
            t.ended_at_ms,
        ],
    )?;
    Ok(StepId(conn.last_insert_rowid()))
}

/// Sets a turn's next state once; `false` when there is no such turn or it has one already.
pub(crate) fn set_next_state(
    conn: &Connection,
    id: StepId,
    next: &serde_json::Value,
) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE steps SET next_state = ?2
         WHERE id = ?1 AND kind = 'turn' AND next_state IS NULL",
        params![id.0, next.to_string()],
    )?;
    Ok(changed == 1)
}

/// The newest turn of an episode.
pub(crate) fn last_turn(conn: &Connection, episode: EpisodeId) -> rusqlite::Result<Option<Step>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM steps WHERE episode_id = ?1 AND kind = 'turn'
             ORDER BY idx DESC LIMIT 1"
        ),
        [episode.0],
        from_row,
    )
    .optional()
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
    surface, action, response, policy_version, outcome, error, started_at_ms, ended_at_ms,
    kind, next_state";

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
        kind: StepKind::parse(&row.get::<_, String>(15)?),
        before_image: blob(row.get(3)?)?,
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
        next_state: json_column(row.get(16)?)?,
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
