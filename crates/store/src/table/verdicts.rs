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

/// Version 2: the votes' mean beside the majority, a person's corrected action, and one verdict
/// set per (step, judge) so a judge loop that restarts mid-batch cannot judge a step twice.
pub(crate) const SCHEMA_V2: &str = "
ALTER TABLE verdicts ADD COLUMN mean REAL;
ALTER TABLE verdicts ADD COLUMN correction TEXT;
CREATE UNIQUE INDEX verdicts_one_per_judge ON verdicts (step_id, judge) WHERE source = 'judge';
";

/// Who gave the verdict. A person's verdict overrides any judge's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictSource {
    /// A model judge, named in the verdict's `judge`.
    Judge,
    /// A person reviewing the step; all people count as one judge.
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
    /// The step judged.
    pub step: StepId,
    /// Who gives it.
    pub source: VerdictSource,
    /// +1 (the step helped), -1 (it did not), 0 (undecided).
    pub score: i8,
    /// The individual votes behind a majority, as JSON.
    pub votes: Option<serde_json::Value>,
    /// The hindsight hint, when one was written.
    pub hint: Option<String>,
    /// Which judge (endpoint and model) gave it.
    pub judge: Option<String>,
    /// The mean of the valid votes (the majority's sign is `score`); `None` when no vote counted.
    pub mean: Option<f64>,
    /// A person's corrected action, in the internal action form, when they gave one.
    pub correction: Option<serde_json::Value>,
}

/// A verdict as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Its row id.
    pub id: VerdictId,
    /// The step judged.
    pub step: StepId,
    /// Who gave it.
    pub source: VerdictSource,
    /// +1 (the step helped), -1 (it did not), 0 (undecided).
    pub score: i8,
    /// The individual votes behind a majority, as JSON.
    pub votes: Option<serde_json::Value>,
    /// The hindsight hint, when one was written.
    pub hint: Option<String>,
    /// Which judge (endpoint and model) gave it; always set for a judge's verdict.
    pub judge: Option<String>,
    /// The mean of the valid votes (the majority's sign is `score`); `None` when no vote counted.
    pub mean: Option<f64>,
    /// A person's corrected action, in the internal action form, when they gave one.
    pub correction: Option<serde_json::Value>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Inserts a verdict; `None` when the judge already has a verdict on the step (the first stays).
pub(crate) fn insert(
    conn: &Connection,
    v: &NewVerdict,
    now: i64,
) -> rusqlite::Result<Option<VerdictId>> {
    let changed = conn.execute(
        "INSERT INTO verdicts (step_id, source, score, votes, hint, judge, mean, correction,
                               created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT DO NOTHING",
        params![
            v.step.0,
            v.source.as_str(),
            v.score,
            v.votes.as_ref().map(ToString::to_string),
            v.hint,
            v.judge,
            v.mean,
            v.correction.as_ref().map(ToString::to_string),
            now,
        ],
    )?;
    Ok((changed == 1).then(|| VerdictId(conn.last_insert_rowid())))
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
        mean: row.get(7)?,
        correction: json_column(row.get(8)?)?,
        created_at_ms: row.get(9)?,
    })
}

const COLUMNS: &str =
    "id, step_id, source, score, votes, hint, judge, mean, correction, created_at_ms";

/// The verdict that counts for a step: the newest person's, else the newest judge's.
pub(crate) fn effective(conn: &Connection, step: StepId) -> rusqlite::Result<Option<Verdict>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM verdicts WHERE step_id = ?1
             ORDER BY (source = 'person') DESC, created_at_ms DESC, id DESC LIMIT 1"
        ),
        [step.0],
        from_row,
    )
    .optional()
}

pub(crate) fn of_step(conn: &Connection, step: StepId) -> rusqlite::Result<Vec<Verdict>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM verdicts WHERE step_id = ?1 ORDER BY id"
    ))?;
    stmt.query_map([step.0], from_row)?.collect()
}

/// How often one judge agreed with the people who checked its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The judge's name (endpoint and model).
    pub judge: String,
    /// Steps with both this judge's verdict and a person's.
    pub compared: i64,
    /// Of those, where the judge's score equals the person's (newest person verdict).
    pub agreed: i64,
    /// Of those, where the judge had no valid vote (score 0) and so could not agree.
    pub undecided: i64,
}

impl Agreement {
    /// The share of compared steps where the judge agreed; `None` before any comparison.
    pub fn rate(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64)
    }
}

pub(crate) fn agreement(conn: &Connection) -> rusqlite::Result<Vec<Agreement>> {
    let mut stmt = conn.prepare_cached(
        "WITH person AS (
             SELECT step_id, score FROM (
                 SELECT step_id, score,
                        ROW_NUMBER() OVER (PARTITION BY step_id
                                           ORDER BY created_at_ms DESC, id DESC) AS n
                 FROM verdicts WHERE source = 'person')
             WHERE n = 1)
         SELECT j.judge, COUNT(*), SUM(j.score = p.score), SUM(j.score = 0)
         FROM verdicts j JOIN person p ON p.step_id = j.step_id
         WHERE j.source = 'judge' AND j.judge IS NOT NULL
         GROUP BY j.judge ORDER BY j.judge",
    )?;
    stmt.query_map([], |r| {
        Ok(Agreement {
            judge: r.get(0)?,
            compared: r.get(1)?,
            agreed: r.get(2)?,
            undecided: r.get(3)?,
        })
    })?
    .collect()
}

/// One step in the reward trend: the verdict that counts and the running mean up to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardPoint {
    /// The step's row id (steps are numbered in the order they were taken).
    pub step: i64,
    /// The adapter version that acted (none: the base).
    pub version: Option<i64>,
    /// The verdict that counts, +1 or -1 (a person's over any judge's).
    pub score: i8,
    /// The mean score of this step and the ones before it, up to the window's length.
    pub mean: f64,
}

/// The last `last` steps with a decided verdict, oldest first, each with the mean of the
/// `window` decided steps ending at it. Undecided (0) and unjudged steps are left out: they
/// say nothing of how the agent is doing.
pub(crate) fn reward_trend(
    conn: &Connection,
    last: usize,
    window: usize,
) -> rusqlite::Result<Vec<RewardPoint>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, policy_version, score FROM (
             SELECT s.id, s.policy_version,
                    (SELECT v.score FROM verdicts v WHERE v.step_id = s.id
                     ORDER BY (v.source = 'person') DESC, v.created_at_ms DESC, v.id DESC
                     LIMIT 1) AS score
             FROM steps s)
         WHERE score IN (-1, 1) ORDER BY id DESC LIMIT ?1",
    )?;
    // The window reaches back before the first point shown.
    let fetch = i64::try_from(last.saturating_add(window)).unwrap_or(i64::MAX);
    let mut rows: Vec<(i64, Option<i64>, i8)> = stmt
        .query_map([fetch], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.reverse();
    let window = window.max(1);
    let mut sum = 0.0;
    let mut points = Vec::with_capacity(rows.len());
    for (i, &(step, version, score)) in rows.iter().enumerate() {
        sum += f64::from(score);
        if i >= window {
            sum -= f64::from(rows[i - window].2);
        }
        points.push(RewardPoint {
            step,
            version,
            score,
            mean: sum / (i + 1).min(window) as f64,
        });
    }
    let skip = points.len().saturating_sub(last);
    Ok(points.split_off(skip))
}
