use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::json_column;

/// An adapter's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdapterId(pub i64);

pub(crate) const SCHEMA: &str = "
CREATE TABLE adapters (
    id            INTEGER PRIMARY KEY,
    version       INTEGER NOT NULL UNIQUE,
    base_model    TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    metrics       TEXT,
    created_at_ms INTEGER NOT NULL
);
";

/// A trained LoRA adapter to record: its policy version and where its PEFT folder lies.
#[derive(Debug, Clone)]
pub struct NewAdapter {
    pub version: i64,
    pub base_model: String,
    pub path: String,
    /// Training figures at the time it was saved, as JSON.
    pub metrics: Option<serde_json::Value>,
}

/// An adapter as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    pub id: AdapterId,
    pub version: i64,
    pub base_model: String,
    pub path: String,
    pub metrics: Option<serde_json::Value>,
    pub created_at_ms: i64,
}

pub(crate) fn insert(conn: &Connection, a: &NewAdapter, now: i64) -> rusqlite::Result<AdapterId> {
    conn.execute(
        "INSERT INTO adapters (version, base_model, path, metrics, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            a.version,
            a.base_model,
            a.path,
            a.metrics.as_ref().map(ToString::to_string),
            now
        ],
    )?;
    Ok(AdapterId(conn.last_insert_rowid()))
}

pub(crate) fn list(conn: &Connection) -> rusqlite::Result<Vec<Adapter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, version, base_model, path, metrics, created_at_ms FROM adapters ORDER BY version",
    )?;
    stmt.query_map([], |row| {
        Ok(Adapter {
            id: AdapterId(row.get(0)?),
            version: row.get(1)?,
            base_model: row.get(2)?,
            path: row.get(3)?,
            metrics: json_column(row.get(4)?)?,
            created_at_ms: row.get(5)?,
        })
    })?
    .collect()
}
