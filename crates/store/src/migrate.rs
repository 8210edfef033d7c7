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
        tx.pragma_update(None, "user_version", version)
            .map_err(|e| StoreError::sql(path, e))?;
        tx.commit().map_err(|e| StoreError::sql(path, e))?;
        tracing::info!(version, path = %path.display(), "migrated database");
    }
    Ok(())
}
