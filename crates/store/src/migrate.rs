//! Schema migrations, tracked in SQLite's `user_version`.
//!
//! Each migration is a list of SQL batches (a table module's `SCHEMA`, or an `ALTER` beside it)
//! applied in one transaction, so a database is always at a whole version.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::table;

/// The schema version this build writes. Bump it by appending to [`MIGRATIONS`].
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&[&str]] = &[
    // 1: the first schema.
    &[
        table::episodes::SCHEMA,
        table::steps::SCHEMA,
        table::verdicts::SCHEMA,
        table::adapters::SCHEMA,
    ],
    // 2: judging: vote means, corrections, one verdict per judge, failures to retry.
    &[table::verdicts::SCHEMA_V2, table::judging::SCHEMA],
    // 3: the trainer's figures per update.
    &[table::training::SCHEMA],
    // 4: adapters' gym scores and activations (rollback).
    &[table::adapters::SCHEMA_V4],
    // 5: conversation turns from the API as steps without screens, sessions as episodes.
    &[table::steps::SCHEMA_V5, table::episodes::SCHEMA_V5],
    // 6: steps a judge gave up on (unjudgeable), which the trainer passes over; adapters
    // exported (kept) and pruned.
    &[table::judging::SCHEMA_V6, table::adapters::SCHEMA_V6],
];

/// Brings the database up to [`SCHEMA_VERSION`]; refuses one from a newer build untouched.
///
/// Each step re-reads the version inside an immediate (write-locked) transaction, so two
/// processes opening a new database at once do not both apply the same migration.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let version_of = |conn: &Connection| -> Result<i64> {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| StoreError::sql(path, e))
    };
    let newer = |found: i64| StoreError::NewerSchema {
        path: path.to_path_buf(),
        found,
        supported: SCHEMA_VERSION,
    };
    let found = version_of(conn)?;
    if found > SCHEMA_VERSION {
        return Err(newer(found));
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    // A migration may rebuild a table (SQLite's way to change a column); with foreign keys
    // on, dropping the old table would cascade into the rows that reference it. They are
    // checked instead before each migration commits, and turned back on after.
    let set_keys = |conn: &Connection, on: bool| {
        conn.pragma_update(None, "foreign_keys", if on { "ON" } else { "OFF" })
            .map_err(|e| StoreError::sql(path, e))
    };
    set_keys(conn, false)?;
    let result = apply(conn, path, &version_of, &newer);
    set_keys(conn, true)?;
    result
}

fn apply(
    conn: &mut Connection,
    path: &Path,
    version_of: &dyn Fn(&Connection) -> Result<i64>,
    newer: &dyn Fn(i64) -> StoreError,
) -> Result<()> {
    for (index, batches) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::sql(path, e))?;
        let current = version_of(&tx)?;
        if current > SCHEMA_VERSION {
            return Err(newer(current));
        }
        if current >= version {
            continue;
        }
        for sql in *batches {
            tx.execute_batch(sql)
                .map_err(|e| StoreError::sql(path, e))?;
        }
        let broken: i64 = tx
            .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| StoreError::sql(path, e))?;
        if broken > 0 {
            return Err(StoreError::Invalid(format!(
                "migration {version} of {} would leave {broken} rows pointing at nothing; \
                 nothing was changed",
                path.display()
            )));
        }
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| StoreError::sql(path, e))?;
        tx.commit().map_err(|e| StoreError::sql(path, e))?;
        tracing::info!(version, path = %path.display(), "migrated database");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewTurn, StepKind, Store};

    /// A database written by the build before version 5 keeps every step and verdict (the
    /// rebuild of `steps` must not cascade into `verdicts`), and then takes turns.
    #[test]
    fn version_5_keeps_older_steps_and_their_verdicts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).expect("mkdir");
        {
            let conn = Connection::open(root.join("clawdesk.sqlite3")).expect("open");
            conn.pragma_update(None, "foreign_keys", "ON").expect("fk");
            for batches in &MIGRATIONS[..4] {
                for sql in *batches {
                    conn.execute_batch(sql).expect("old schema");
                }
            }
            conn.pragma_update(None, "user_version", 4)
                .expect("version");
            conn.execute_batch(
                "INSERT INTO episodes (id, task, started_at_ms) VALUES (1, 'old task', 1);
                 INSERT INTO steps (id, episode_id, idx, before_image, surface, action, outcome,
                                    started_at_ms, ended_at_ms)
                     VALUES (7, 1, 0, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png', '{}', '{\"kind\":\"wait\"}', 'executed', 1, 2);
                 INSERT INTO verdicts (step_id, source, score, created_at_ms)
                     VALUES (7, 'person', 1, 3);",
            )
            .expect("old rows");
        }
        let store = Store::open(&root).expect("migrates");
        let step = store.step(crate::StepId(7)).expect("step kept");
        assert_eq!(step.kind, StepKind::Gui);
        assert_eq!(
            step.before_image.map(|b| b.to_string()),
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png".into())
        );
        assert_eq!(step.next_state, None);
        let verdict = store.effective_verdict(step.id).expect("read");
        assert_eq!(verdict.map(|v| v.score), Some(1));
        store.integrity_check().expect("consistent");

        let episode = store.session_episode("s-1", "chat").expect("session");
        assert_eq!(episode.session.as_deref(), Some("s-1"));
        let again = store.session_episode("s-1", "other").expect("same session");
        assert_eq!(again.id, episode.id);
        let turn = |n: i64| NewTurn {
            episode: episode.id,
            response: serde_json::json!({"text": format!("reply {n}")}),
            action: serde_json::json!({"content": format!("reply {n}")}),
            policy_version: None,
            started_at_ms: n,
            ended_at_ms: n,
        };
        let first = store.insert_turn(&turn(1)).expect("turn");
        let second = store.insert_turn(&turn(2)).expect("turn");
        let steps = store.steps(episode.id).expect("steps");
        assert_eq!(steps.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
        assert!(
            steps
                .iter()
                .all(|s| s.kind == StepKind::Turn && s.before_image.is_none())
        );
        let next = serde_json::json!({"role": "user", "content": "no, shorter"});
        assert!(store.set_next_state(first, &next).expect("set"));
        assert!(
            !store
                .set_next_state(first, &serde_json::json!("later"))
                .expect("kept")
        );
        assert!(!store.set_next_state(step.id, &next).expect("not a turn"));
        assert_eq!(store.step(first).expect("read").next_state, Some(next));
        assert_eq!(
            store.last_turn(episode.id).expect("read").map(|s| s.id),
            Some(second)
        );
        // A turn is owed a verdict once its next state came (the old step has no after-screen).
        let owed = store
            .owed_steps("judge-a", crate::VerdictSource::Judge, &[], 10)
            .expect("owed");
        assert_eq!(owed, vec![first]);
    }
}
