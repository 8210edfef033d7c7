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

/// 6: a step the judge gave up on (it can never be judged: a damaged screenshot, a request
/// the endpoint refuses for good, or too many failed attempts). It is owed no longer and the
/// trainer passes over it.
pub(crate) const SCHEMA_V6: &str = "
ALTER TABLE judge_failures ADD COLUMN given_up INTEGER NOT NULL DEFAULT 0;
";

/// A step a judge tried and failed to judge; it stays owed and is tried again at `retry_at_ms`,
/// unless the judge gave up on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeFailure {
    /// The step that could not be judged.
    pub step: StepId,
    /// The judge that failed on it (endpoint and model).
    pub judge: String,
    /// How many attempts have failed so far.
    pub attempts: i64,
    /// The newest failure's message.
    pub last_error: String,
    /// When the step is owed again, in milliseconds since the Unix epoch; `i64::MAX` once the
    /// judge gave up.
    pub retry_at_ms: i64,
    /// The step is unjudgeable for this judge: it is not tried again.
    #[serde(default)]
    pub given_up: bool,
}

/// When a failed attempt is the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure is the step's own and will not change (its screenshot is damaged, the
    /// endpoint refuses the request as it is).
    Now,
    /// After this many attempts in all.
    After(i64),
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
            "SELECT COUNT(*) FROM steps s WHERE {JUDGEABLE} AND {}
               AND NOT EXISTS (SELECT 1 FROM judge_failures f
                               WHERE f.step_id = s.id AND f.judge = ?1 AND f.given_up = 1)",
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
    give_up: GiveUp,
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
    let given_up = match give_up {
        GiveUp::Now => true,
        GiveUp::After(limit) => attempts >= limit,
    };
    let retry_at_ms = if given_up {
        i64::MAX
    } else {
        now.saturating_add(delay_ms(attempts).max(0))
    };
    conn.execute(
        "INSERT INTO judge_failures (step_id, judge, attempts, last_error, retry_at_ms, given_up)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (step_id, judge) DO UPDATE
             SET attempts = ?3, last_error = ?4, retry_at_ms = ?5, given_up = ?6",
        params![step.0, judge, attempts, error, retry_at_ms, given_up],
    )?;
    Ok(JudgeFailure {
        step,
        judge: judge.to_owned(),
        attempts,
        last_error: error.to_owned(),
        retry_at_ms,
        given_up,
    })
}

/// Why a judge gave up on `step`, if one did.
pub(crate) fn unjudgeable(conn: &Connection, step: StepId) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT judge || ': ' || last_error FROM judge_failures
         WHERE step_id = ?1 AND given_up = 1 ORDER BY judge LIMIT 1",
        [step.0],
        |r| r.get(0),
    )
    .optional()
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
        "SELECT step_id, judge, attempts, last_error, retry_at_ms, given_up FROM judge_failures
         WHERE judge = ?1 ORDER BY step_id",
    )?;
    stmt.query_map([judge], |r| {
        Ok(JudgeFailure {
            step: StepId(r.get(0)?),
            judge: r.get(1)?,
            attempts: r.get(2)?,
            last_error: r.get(3)?,
            retry_at_ms: r.get(4)?,
            given_up: r.get(5)?,
        })
    })?
    .collect()
}
