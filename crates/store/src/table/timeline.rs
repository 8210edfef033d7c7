//! The timeline: every step in one list, one short row each, with the verdicts that matter
//! for review (the newest judge's and the newest person's), filtered and paged in SQL so a
//! store of many thousands of steps opens at once.

use rusqlite::{Connection, params_from_iter, types::Value};
use serde::{Deserialize, Serialize};

use super::json_column;
use crate::table::episodes::EpisodeId;
use crate::table::steps::{StepId, StepKind, StepOutcome};

/// Which steps the timeline shows. Every field narrows; the default shows all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TimelineFilter {
    /// Steps with no verdict at all.
    pub unjudged: bool,
    /// Steps where a judge and a person both gave a verdict and they differ.
    pub disagreement: bool,
    /// Steps that count as failed: the verdict that counts is -1, or the action failed.
    pub failed: bool,
    /// Only the steps of the episode with this row id.
    pub episode: Option<i64>,
    /// Only the steps of episodes in this app.
    pub app: Option<String>,
    /// The adapter version that produced the step (0: the base model).
    pub adapter: Option<i64>,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineRow {
    /// The step's row id.
    pub step: StepId,
    /// The episode it belongs to.
    pub episode: EpisodeId,
    /// Its place in its episode, from 0.
    pub index: u32,
    /// A screen action or a conversation turn.
    pub kind: StepKind,
    /// Its episode's task.
    pub task: String,
    /// Its episode's app, when known.
    pub app: Option<String>,
    /// The action in its internal form, as JSON.
    pub action: serde_json::Value,
    /// What became of the action.
    pub outcome: StepOutcome,
    /// The adapter version that produced it; `None` for the base model or a step no model
    /// chose.
    pub policy_version: Option<i64>,
    /// The newest judge verdict's score.
    pub judge_score: Option<i8>,
    /// The newest person verdict's score.
    pub person_score: Option<i8>,
    /// Whether any verdict carries a hindsight hint.
    pub has_hint: bool,
    /// When the step began, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// The after screen (else the before screen), for a thumbnail.
    pub screen: Option<String>,
    /// Why a judge gave up on the step (`judge: error`), when one did: it has no judge verdict
    /// and never will, and the trainer passes over it.
    #[serde(default)]
    pub unjudgeable: Option<String>,
}

/// The WHERE clause and its parameters for `filter`.
fn where_clause(filter: &TimelineFilter) -> (String, Vec<Value>) {
    let mut terms = vec!["1 = 1".to_owned()];
    let mut params = Vec::new();
    if filter.unjudged {
        terms.push("NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.step_id = s.id)".into());
    }
    if filter.disagreement {
        terms.push(
            "judge_score IS NOT NULL AND person_score IS NOT NULL AND judge_score != person_score"
                .into(),
        );
    }
    if filter.failed {
        terms.push(
            "(COALESCE(person_score, judge_score) = -1 OR s.outcome IN ('failed', 'invalid'))"
                .into(),
        );
    }
    if let Some(episode) = filter.episode {
        terms.push("s.episode_id = ?".into());
        params.push(Value::Integer(episode));
    }
    if let Some(app) = &filter.app {
        terms.push("s.app = ?".into());
        params.push(Value::Text(app.clone()));
    }
    if let Some(version) = filter.adapter {
        terms.push("COALESCE(s.policy_version, 0) = ?".into());
        params.push(Value::Integer(version));
    }
    (terms.join(" AND "), params)
}

/// The rows with their newest verdict scores, as a subquery the filters can name.
const ROWS: &str = "
SELECT s.id, s.episode_id, s.idx, s.kind, e.task, e.app, s.action, s.outcome,
       s.policy_version, s.started_at_ms,
       (SELECT score FROM verdicts v WHERE v.step_id = s.id AND v.source = 'judge'
        ORDER BY v.created_at_ms DESC, v.id DESC LIMIT 1) AS judge_score,
       (SELECT score FROM verdicts v WHERE v.step_id = s.id AND v.source = 'person'
        ORDER BY v.created_at_ms DESC, v.id DESC LIMIT 1) AS person_score,
       EXISTS (SELECT 1 FROM verdicts v WHERE v.step_id = s.id AND v.hint IS NOT NULL)
           AS has_hint,
       COALESCE(s.after_image, s.before_image) AS screen,
       (SELECT f.judge || ': ' || f.last_error FROM judge_failures f
        WHERE f.step_id = s.id AND f.given_up = 1 ORDER BY f.judge LIMIT 1) AS unjudgeable
FROM steps s JOIN episodes e ON e.id = s.episode_id";

/// Up to `limit` rows from `offset`, newest step first.
pub(crate) fn page(
    conn: &Connection,
    filter: &TimelineFilter,
    offset: usize,
    limit: usize,
) -> rusqlite::Result<Vec<TimelineRow>> {
    let (clause, mut params) = where_clause(filter);
    params.push(Value::Integer(limit as i64));
    params.push(Value::Integer(offset as i64));
    let sql = format!(
        "SELECT * FROM ({ROWS}) AS s
         WHERE {clause} ORDER BY s.id DESC LIMIT ? OFFSET ?"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map(params_from_iter(params), |row| {
        Ok(TimelineRow {
            step: StepId(row.get(0)?),
            episode: EpisodeId(row.get(1)?),
            index: row.get(2)?,
            kind: StepKind::parse(&row.get::<_, String>(3)?),
            task: row.get(4)?,
            app: row.get(5)?,
            action: json_column(row.get(6)?)?.unwrap_or(serde_json::Value::Null),
            outcome: StepOutcome::parse(&row.get::<_, String>(7)?),
            policy_version: row.get(8)?,
            started_at_ms: row.get(9)?,
            judge_score: row.get(10)?,
            person_score: row.get(11)?,
            has_hint: row.get(12)?,
            screen: row.get(13)?,
            unjudgeable: row.get(14)?,
        })
    })?
    .collect()
}

/// How many steps `filter` lets through.
pub(crate) fn count(conn: &Connection, filter: &TimelineFilter) -> rusqlite::Result<i64> {
    let (clause, params) = where_clause(filter);
    let sql = format!(
        "SELECT COUNT(*) FROM ({ROWS}) AS s
         WHERE {clause}"
    );
    conn.query_row(&sql, params_from_iter(params), |r| r.get(0))
}
