use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// An episode's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpisodeId(pub i64);

pub(crate) const SCHEMA: &str = "
CREATE TABLE episodes (
    id            INTEGER PRIMARY KEY,
    task          TEXT    NOT NULL,
    app           TEXT,
    status        TEXT    NOT NULL DEFAULT 'running',
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    note          TEXT
);
";

/// 5: an episode may be a conversation session of the API, found again by its id.
pub(crate) const SCHEMA_V5: &str = "
ALTER TABLE episodes ADD COLUMN session TEXT;
CREATE UNIQUE INDEX episodes_by_session ON episodes (session) WHERE session IS NOT NULL;
";

/// How an episode ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeStatus {
    /// Still under way, or its process ended without recording how it finished.
    Running,
    /// The task was carried out to its end.
    Done,
    /// An action failed or was refused and the run could not go on.
    Failed,
    /// A person (or the stop key) halted it.
    Stopped,
}

impl EpisodeStatus {
    fn as_str(self) -> &'static str {
        match self {
            EpisodeStatus::Running => "running",
            EpisodeStatus::Done => "done",
            EpisodeStatus::Failed => "failed",
            EpisodeStatus::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => EpisodeStatus::Done,
            "failed" => EpisodeStatus::Failed,
            "stopped" => EpisodeStatus::Stopped,
            _ => EpisodeStatus::Running,
        }
    }
}

/// What a caller supplies to start an episode.
#[derive(Debug, Clone)]
pub struct NewEpisode {
    /// The instruction the agent was given.
    pub task: String,
    /// The app it works in, when known.
    pub app: Option<String>,
}

/// An episode as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Its row id.
    pub id: EpisodeId,
    /// The instruction the agent was given (for a conversation, the task it was opened with).
    pub task: String,
    /// The app it works in, when known (`api` for a conversation).
    pub app: Option<String>,
    /// How it ended, or `Running` while it has not.
    pub status: EpisodeStatus,
    /// When it began, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When it ended, in milliseconds since the Unix epoch; `None` until it does.
    pub ended_at_ms: Option<i64>,
    /// A remark recorded when it ended: why it stopped or failed, say.
    pub note: Option<String>,
    /// How many steps it has recorded so far.
    pub steps: i64,
    /// The API session it records, for a conversation.
    pub session: Option<String>,
}

pub(crate) fn insert(conn: &Connection, new: &NewEpisode, now: i64) -> rusqlite::Result<EpisodeId> {
    conn.execute(
        "INSERT INTO episodes (task, app, started_at_ms) VALUES (?1, ?2, ?3)",
        params![new.task, new.app, now],
    )?;
    Ok(EpisodeId(conn.last_insert_rowid()))
}

pub(crate) fn finish(
    conn: &Connection,
    id: EpisodeId,
    status: EpisodeStatus,
    note: Option<&str>,
    now: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE episodes SET status = ?2, ended_at_ms = ?3, note = ?4 WHERE id = ?1",
        params![id.0, status.as_str(), now, note],
    )
}

const COLUMNS: &str = "id, task, app, status, started_at_ms, ended_at_ms, note,
    (SELECT COUNT(*) FROM steps WHERE steps.episode_id = episodes.id), session";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Episode> {
    Ok(Episode {
        id: EpisodeId(row.get(0)?),
        task: row.get(1)?,
        app: row.get(2)?,
        status: EpisodeStatus::parse(&row.get::<_, String>(3)?),
        started_at_ms: row.get(4)?,
        ended_at_ms: row.get(5)?,
        note: row.get(6)?,
        steps: row.get(7)?,
        session: row.get(8)?,
    })
}

pub(crate) fn get(conn: &Connection, id: EpisodeId) -> rusqlite::Result<Option<Episode>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM episodes WHERE id = ?1"),
        [id.0],
        from_row,
    )
    .optional()
}

/// The episode of API session `session`, started (running, with `task`) if it has none.
pub(crate) fn of_session(
    conn: &Connection,
    session: &str,
    task: &str,
    now: i64,
) -> rusqlite::Result<Episode> {
    conn.execute(
        "INSERT INTO episodes (task, app, started_at_ms, session) VALUES (?1, 'api', ?2, ?3)
         ON CONFLICT (session) WHERE session IS NOT NULL DO NOTHING",
        params![task, now, session],
    )?;
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM episodes WHERE session = ?1"),
        [session],
        from_row,
    )
}

pub(crate) fn list(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Episode>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM episodes ORDER BY id DESC LIMIT ?1"
    ))?;
    stmt.query_map([limit as i64], from_row)?.collect()
}
