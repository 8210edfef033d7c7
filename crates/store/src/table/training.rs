//! The trainer's figures per update (loss terms, reward, OPD gap, clip fraction, KL, gradient
//! norm, tokens/s), for the training curves. An update redone after a crash replaces its row.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::json_column;

pub(crate) const SCHEMA: &str = "
CREATE TABLE train_updates (
    id            INTEGER PRIMARY KEY,
    run           TEXT    NOT NULL,
    step          INTEGER NOT NULL,
    metrics       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (run, step)
);
";

/// One update's figures as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainUpdate {
    /// The training run (one adapter lineage).
    pub run: String,
    /// The optimiser step the figures belong to, from 1.
    pub step: i64,
    /// The figures by name (loss, reward, KL, gradient norm, tokens/s and so on), as JSON.
    pub metrics: serde_json::Value,
    /// When they were recorded (or last replaced), in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

pub(crate) fn record(
    conn: &Connection,
    run: &str,
    step: i64,
    metrics: &serde_json::Value,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO train_updates (run, step, metrics, created_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run, step) DO UPDATE SET metrics = excluded.metrics,
                                               created_at_ms = excluded.created_at_ms",
        params![run, step, metrics.to_string(), now],
    )?;
    Ok(())
}

pub(crate) fn list(conn: &Connection, run: &str, after: i64) -> rusqlite::Result<Vec<TrainUpdate>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run, step, metrics, created_at_ms FROM train_updates
         WHERE run = ?1 AND step > ?2 ORDER BY step",
    )?;
    stmt.query_map(params![run, after], |row| {
        Ok(TrainUpdate {
            run: row.get(0)?,
            step: row.get(1)?,
            metrics: json_column(row.get(2)?)?.unwrap_or(serde_json::Value::Null),
            created_at_ms: row.get(3)?,
        })
    })?
    .collect()
}

/// The runs with figures, the most recently updated first.
pub(crate) fn runs(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT run FROM train_updates GROUP BY run ORDER BY MAX(created_at_ms) DESC, run",
    )?;
    stmt.query_map([], |row| row.get(0))?.collect()
}
