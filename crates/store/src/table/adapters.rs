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

/// 4: each adapter's success on the gym's held-out tasks (the regression suite), and the
/// activations a person made, newest last, so a rollback is a row and not an overwrite.
pub(crate) const SCHEMA_V4: &str = "
ALTER TABLE adapters ADD COLUMN gym_score REAL;
CREATE TABLE adapter_activations (
    id       INTEGER PRIMARY KEY,
    version  INTEGER,
    at_ms    INTEGER NOT NULL
);
";

/// 6: adapters a person exported (kept from pruning) and adapters whose folders were pruned.
pub(crate) const SCHEMA_V6: &str = "
ALTER TABLE adapters ADD COLUMN exported_at_ms INTEGER;
ALTER TABLE adapters ADD COLUMN pruned_at_ms INTEGER;
";

/// A trained LoRA adapter to record: its policy version and where its PEFT folder lies.
#[derive(Debug, Clone)]
pub struct NewAdapter {
    /// The policy version it serves as, which steps it produces record; never reused.
    pub version: i64,
    /// The base model it was trained on, as the trainer names it.
    pub base_model: String,
    /// Its PEFT folder on disk.
    pub path: String,
    /// Training figures at the time it was saved, as JSON.
    pub metrics: Option<serde_json::Value>,
}

/// An adapter as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adapter {
    /// Its row id.
    pub id: AdapterId,
    /// The policy version it serves as, which steps it produced record.
    pub version: i64,
    /// The base model it was trained on, as the trainer names it.
    pub base_model: String,
    /// Its PEFT folder on disk (gone once `pruned`).
    pub path: String,
    /// Training figures at the time it was saved, as JSON.
    pub metrics: Option<serde_json::Value>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Held-out gym success with this adapter, once measured.
    pub gym_score: Option<f64>,
    /// A person exported it: it is never pruned.
    #[serde(default)]
    pub exported: bool,
    /// Its folder was removed to keep the number of versions bounded; the row stays, since
    /// steps name the version.
    #[serde(default)]
    pub pruned: bool,
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
        "SELECT id, version, base_model, path, metrics, created_at_ms, gym_score,
                exported_at_ms IS NOT NULL, pruned_at_ms IS NOT NULL
         FROM adapters ORDER BY version",
    )?;
    stmt.query_map([], |row| {
        Ok(Adapter {
            id: AdapterId(row.get(0)?),
            version: row.get(1)?,
            base_model: row.get(2)?,
            path: row.get(3)?,
            metrics: json_column(row.get(4)?)?,
            created_at_ms: row.get(5)?,
            gym_score: row.get(6)?,
            exported: row.get(7)?,
            pruned: row.get(8)?,
        })
    })?
    .collect()
}

/// The adapters whose folders may go when `keep` are to be kept: all but the newest `keep`
/// unpruned versions, never one a person exported or ever activated.
pub(crate) fn prunable(conn: &Connection, keep: usize) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT version FROM adapters a
         WHERE pruned_at_ms IS NULL AND exported_at_ms IS NULL
           AND NOT EXISTS (SELECT 1 FROM adapter_activations x WHERE x.version = a.version)
           AND version NOT IN (SELECT version FROM adapters WHERE pruned_at_ms IS NULL
                               ORDER BY version DESC LIMIT ?1)
         ORDER BY version",
    )?;
    stmt.query_map([keep as i64], |r| r.get(0))?.collect()
}

/// Marks `version` exported (`exported`) or pruned (`pruned`) now.
pub(crate) fn mark(
    conn: &Connection,
    version: i64,
    column: Mark,
    now: i64,
) -> rusqlite::Result<bool> {
    let sql = match column {
        Mark::Exported => "UPDATE adapters SET exported_at_ms = ?1 WHERE version = ?2",
        Mark::Pruned => "UPDATE adapters SET pruned_at_ms = ?1 WHERE version = ?2",
    };
    Ok(conn.execute(sql, params![now, version])? > 0)
}

/// What happened to an adapter's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Exported,
    Pruned,
}

/// Records `score` on the adapter of `version`; false when there is none.
pub(crate) fn set_gym_score(conn: &Connection, version: i64, score: f64) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE adapters SET gym_score = ?1 WHERE version = ?2",
        params![score, version],
    )?;
    Ok(changed > 0)
}

/// Appends an activation (`None`: the base model alone).
pub(crate) fn activate(conn: &Connection, version: Option<i64>, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO adapter_activations (version, at_ms) VALUES (?1, ?2)",
        params![version, now],
    )?;
    Ok(())
}

/// The latest activation: `None` when nothing was ever activated, `Some(None)` for the base.
pub(crate) fn active(conn: &Connection) -> rusqlite::Result<Option<Option<i64>>> {
    let mut stmt =
        conn.prepare_cached("SELECT version FROM adapter_activations ORDER BY id DESC LIMIT 1")?;
    let mut rows = stmt.query([])?;
    match rows.next()? {
        Some(row) => Ok(Some(row.get(0)?)),
        None => Ok(None),
    }
}
