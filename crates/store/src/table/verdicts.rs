use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::json_column;
use crate::table::steps::StepId;

/// A verdict's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VerdictId(pub i64);

pub(crate) const SCHEMA: &str = "
CREATE TABLE verdicts (
    id            INTEGER PRIMARY KEY,
    step_id       INTEGER NOT NULL REFERENCES steps(id) ON DELETE CASCADE,
    source        TEXT    NOT NULL CHECK (source IN ('judge', 'person')),
    score         INTEGER NOT NULL CHECK (score IN (-1, 0, 1)),
    votes         TEXT,
    hint          TEXT,
    judge         TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX verdicts_by_step ON verdicts (step_id, created_at_ms);
";

/// Who gave the verdict. A person's verdict overrides any judge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictSource {
    Judge,
    Person,
}

impl VerdictSource {
    fn as_str(self) -> &'static str {
        match self {
            VerdictSource::Judge => "judge",
            VerdictSource::Person => "person",
        }
    }
}

/// What a judge or a person says of a step.
#[derive(Debug, Clone)]
pub struct NewVerdict {
    pub step: StepId,
    pub source: VerdictSource,
    /// +1 (the step helped), -1 (it did not), 0 (undecided).
    pub score: i8,
    /// The individual votes behind a majority, as JSON.
    pub votes: Option<serde_json::Value>,
    /// The hindsight hint, when one was written.
    pub hint: Option<String>,
    /// Which judge (endpoint and model) gave it.
    pub judge: Option<String>,
}

/// A verdict as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub id: VerdictId,
    pub step: StepId,
    pub source: VerdictSource,
    pub score: i8,
    pub votes: Option<serde_json::Value>,
    pub hint: Option<String>,
    pub judge: Option<String>,
    pub created_at_ms: i64,
}

pub(crate) fn insert(conn: &Connection, v: &NewVerdict, now: i64) -> rusqlite::Result<VerdictId> {
    conn.execute(
        "INSERT INTO verdicts (step_id, source, score, votes, hint, judge, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            v.step.0,
            v.source.as_str(),
            v.score,
            v.votes.as_ref().map(ToString::to_string),
            v.hint,
            v.judge,
            now,
        ],
    )?;
    Ok(VerdictId(conn.last_insert_rowid()))
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Verdict> {
    Ok(Verdict {
        id: VerdictId(row.get(0)?),
        step: StepId(row.get(1)?),
        source: if row.get::<_, String>(2)? == "person" {
            VerdictSource::Person
        } else {
            VerdictSource::Judge
        },
        score: row.get(3)?,
        votes: json_column(row.get(4)?)?,
        hint: row.get(5)?,
        judge: row.get(6)?,
        created_at_ms: row.get(7)?,
    })
}

/// The verdict that counts for a step: the newest person's, else the newest judge's.
pub(crate) fn effective(conn: &Connection, step: StepId) -> rusqlite::Result<Option<Verdict>> {
    conn.query_row(
        "SELECT id, step_id, source, score, votes, hint, judge, created_at_ms FROM verdicts
         WHERE step_id = ?1
         ORDER BY (source = 'person') DESC, created_at_ms DESC, id DESC
         LIMIT 1",
        [step.0],
        from_row,
    )
    .optional()
}

pub(crate) fn of_step(conn: &Connection, step: StepId) -> rusqlite::Result<Vec<Verdict>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, step_id, source, score, votes, hint, judge, created_at_ms FROM verdicts
         WHERE step_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([step.0], from_row)?.collect()
}
