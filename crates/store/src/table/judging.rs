//! The judge loop's bookkeeping: which steps a judge still owes a verdict, and which ones it
//! failed to judge (endpoint down, garbage answers) with when to try them again.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::table::steps::StepId;
use crate::table::verdicts::VerdictSource;

/// The steps a judge has given no verdict on: for a model judge, no verdict under its name;
/// for a person, no person's verdict at all (a person is one judge whoever clicks).
fn unjudged(source: VerdictSource) -> &'static str {
    match source {
        VerdictSource::Judge => {
            "NOT EXISTS (SELECT 1 FROM verdicts v
                         WHERE v.step_id = s.id AND v.source = 'judge' AND v.judge = ?1)"
        }
        VerdictSource::Person => {
            "NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.step_id = s.id AND v.source = 'person')
             AND ?1 IS NOT NULL"
        }
    }
}

/// Steps that can be judged: a screen step once it has its after-screen, a conversation turn
/// once its session's next message came.
const JUDGEABLE: &str = "(s.after_image IS NOT NULL OR s.next_state IS NOT NULL)";

pub(crate) const SCHEMA: &str = "
CREATE TABLE judge_failures (
    step_id     INTEGER NOT NULL REFERENCES steps(id) ON DELETE CASCADE,
    judge       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT    NOT NULL,
    retry_at_ms INTEGER NOT NULL,
    PRIMARY KEY (step_id, judge)
);
";

/// A step a judge tried and failed to judge; it stays owed and is tried again at `retry_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeFailure {
    pub step: StepId,
    pub judge: String,
    pub attempts: i64,
    pub last_error: String,
    pub retry_at_ms: i64,
}

/// Judgeable steps that `judge` has not judged and is not waiting to retry, oldest
/// first, skipping the ids in `busy` (those already being judged).
pub(crate) fn owed(
    conn: &Connection,
    judge: &str,
    source: VerdictSource,
    now: i64,
    busy: &[StepId],
    limit: usize,
) -> rusqlite::Result<Vec<StepId>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT s.id FROM steps s
         WHERE {JUDGEABLE} AND {}
           AND NOT EXISTS (SELECT 1 FROM judge_failures f
                           WHERE f.step_id = s.id AND f.judge = ?1 AND f.retry_at_ms > ?2)
         ORDER BY s.id",
        unjudged(source)
    ))?;
    let mut out = Vec::with_capacity(limit);
    let mut rows = stmt.query(params![judge, now])?;
    while out.len() < limit {
        let Some(row) = rows.next()? else { break };
        let id = StepId(row.get(0)?);
        if !busy.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Counts the steps `judge` still owes, including those waiting to retry.
pub(crate) fn owed_count(
    conn: &Connection,
    judge: &str,
    source: VerdictSource,
) -> rusqlite::Result<i64> {
    conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM steps s WHERE {JUDGEABLE} AND {}",
            unjudged(source)
        ),
        [judge],
        |r| r.get(0),
    )
}

/// Records one more failed attempt; the retry comes `delay_ms(attempts)` from `now`.
pub(crate) fn record_failure(
    conn: &Connection,
    step: StepId,
    judge: &str,
    error: &str,
    now: i64,
    delay_ms: &dyn Fn(i64) -> i64,
) -> rusqlite::Result<JudgeFailure> {
    let before: i64 = conn
        .query_row(
            "SELECT attempts FROM judge_failures WHERE step_id = ?1 AND judge = ?2",
            params![step.0, judge],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let attempts = before + 1;
    let retry_at_ms = now.saturating_add(delay_ms(attempts).max(0));
    conn.execute(
        "INSERT INTO judge_failures (step_id, judge, attempts, last_error, retry_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (step_id, judge) DO UPDATE
             SET attempts = ?3, last_error = ?4, retry_at_ms = ?5",
        params![step.0, judge, attempts, error, retry_at_ms],
    )?;
    Ok(JudgeFailure {
        step,
        judge: judge.to_owned(),
        attempts,
        last_error: error.to_owned(),
        retry_at_ms,
    })
}

pub(crate) fn clear_failure(conn: &Connection, step: StepId, judge: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM judge_failures WHERE step_id = ?1 AND judge = ?2",
        params![step.0, judge],
    )?;
    Ok(())
}

pub(crate) fn failures(conn: &Connection, judge: &str) -> rusqlite::Result<Vec<JudgeFailure>> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, judge, attempts, last_error, retry_at_ms FROM judge_failures
         WHERE judge = ?1 ORDER BY step_id",
    )?;
    stmt.query_map([judge], |r| {
        Ok(JudgeFailure {
            step: StepId(r.get(0)?),
            judge: r.get(1)?,
            attempts: r.get(2)?,
            last_error: r.get(3)?,
            retry_at_ms: r.get(4)?,
        })
    })?
    .collect()
}
