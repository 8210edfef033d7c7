use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use crate::blobs::{BlobId, BlobKind, Blobs};
use crate::error::{Result, StoreError};
use crate::table::{adapters, episodes, steps, verdicts};
use crate::{
    Adapter, AdapterId, Episode, EpisodeId, EpisodeStatus, NewAdapter, NewEpisode, NewStep,
    NewVerdict, Step, StepId, Verdict, VerdictId, migrate, now_ms,
};

/// A data directory: `clawdesk.sqlite3` plus `blobs/`.
///
/// Cheap to share behind an `Arc`; one connection serialised by a mutex, which is plenty for
/// an agent writing a step every few hundred milliseconds and a UI reading its timeline.
#[derive(Debug)]
pub struct Store {
    db_path: PathBuf,
    root: PathBuf,
    conn: Mutex<Connection>,
    blobs: Blobs,
}

/// The database file's name inside a data directory.
const DB_FILE: &str = "clawdesk.sqlite3";

impl Store {
    /// Opens (creating and migrating as needed) the store in `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let db_path = root.join(DB_FILE);
        let mut conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::sql(&db_path, e))?;
        configure(&conn).map_err(|e| StoreError::sql(&db_path, e))?;
        migrate::migrate(&mut conn, &db_path)?;
        let blobs = Blobs::open(root.join("blobs"))?;
        tracing::debug!(path = %db_path.display(), "opened store");
        Ok(Store {
            db_path,
            root,
            conn: Mutex::new(conn),
            blobs,
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite file, for tools that want to look inside.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (every write is a
        // transaction), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sql<T>(&self, r: rusqlite::Result<T>) -> Result<T> {
        r.map_err(|e| StoreError::sql(&self.db_path, e))
    }

    /// Stores bytes as a content-addressed blob and returns its id.
    pub fn put_blob(&self, bytes: &[u8], kind: BlobKind) -> Result<BlobId> {
        self.blobs.put(bytes, kind)
    }

    /// Reads a blob back.
    pub fn blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        self.blobs.get(id)
    }

    /// Where a blob lives on disk (for a UI that shows the file directly).
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.blobs.path(id)
    }

    pub fn begin_episode(&self, new: &NewEpisode) -> Result<EpisodeId> {
        let conn = self.conn();
        self.sql(episodes::insert(&conn, new, now_ms()))
    }

    pub fn finish_episode(
        &self,
        id: EpisodeId,
        status: EpisodeStatus,
        note: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn();
        match self.sql(episodes::finish(&conn, id, status, note, now_ms()))? {
            0 => Err(StoreError::NotFound {
                what: "episode",
                id: id.0,
            }),
            _ => Ok(()),
        }
    }

    pub fn episode(&self, id: EpisodeId) -> Result<Episode> {
        let conn = self.conn();
        self.sql(episodes::get(&conn, id))?
            .ok_or(StoreError::NotFound {
                what: "episode",
                id: id.0,
            })
    }

    /// The newest episodes first.
    pub fn episodes(&self, limit: usize) -> Result<Vec<Episode>> {
        let conn = self.conn();
        self.sql(episodes::list(&conn, limit))
    }

    /// Records a step in one transaction; its blobs must already be stored.
    pub fn insert_step(&self, step: &NewStep) -> Result<StepId> {
        for blob in [Some(&step.before_image), step.after_image.as_ref()]
            .into_iter()
            .chain([step.before_tree.as_ref(), step.after_tree.as_ref()])
            .flatten()
        {
            if !self.blobs.path(blob).exists() {
                return Err(StoreError::MissingBlob {
                    id: blob.to_string(),
                    path: self.blobs.path(blob),
                });
            }
        }
        let mut conn = self.conn();
        let tx = self.sql(conn.transaction())?;
        let id = self.sql(steps::insert(&tx, step))?;
        self.sql(tx.commit())?;
        Ok(id)
    }

    pub fn step(&self, id: StepId) -> Result<Step> {
        let conn = self.conn();
        self.sql(steps::get(&conn, id))?
            .ok_or(StoreError::NotFound {
                what: "step",
                id: id.0,
            })
    }

    /// An episode's steps in order.
    pub fn steps(&self, episode: EpisodeId) -> Result<Vec<Step>> {
        let conn = self.conn();
        self.sql(steps::of_episode(&conn, episode))
    }

    pub fn step_count(&self) -> Result<i64> {
        let conn = self.conn();
        self.sql(steps::count(&conn))
    }

    pub fn add_verdict(&self, verdict: &NewVerdict) -> Result<VerdictId> {
        if !(-1..=1).contains(&verdict.score) {
            return Err(StoreError::Invalid(format!(
                "a verdict's score is -1, 0 or +1, not {}",
                verdict.score
            )));
        }
        let conn = self.conn();
        if self.sql(steps::get(&conn, verdict.step))?.is_none() {
            return Err(StoreError::NotFound {
                what: "step",
                id: verdict.step.0,
            });
        }
        self.sql(verdicts::insert(&conn, verdict, now_ms()))
    }

    /// The verdict that counts: a person's over any judge's, the newest of each.
    pub fn effective_verdict(&self, step: StepId) -> Result<Option<Verdict>> {
        let conn = self.conn();
        self.sql(verdicts::effective(&conn, step))
    }

    /// Every verdict given on a step, oldest first.
    pub fn verdicts(&self, step: StepId) -> Result<Vec<Verdict>> {
        let conn = self.conn();
        self.sql(verdicts::of_step(&conn, step))
    }

    pub fn add_adapter(&self, adapter: &NewAdapter) -> Result<AdapterId> {
        let conn = self.conn();
        self.sql(adapters::insert(&conn, adapter, now_ms()))
    }

    pub fn adapters(&self) -> Result<Vec<Adapter>> {
        let conn = self.conn();
        self.sql(adapters::list(&conn))
    }

    /// SQLite's own consistency check; `Ok(())` when it answers "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let conn = self.conn();
        let answer: String =
            self.sql(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)))?;
        if answer == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.db_path.clone(),
                detail: answer,
            })
        }
    }
}

/// WAL so readers (the UI) never block the writer (the agent); NORMAL sync is durable across
/// a killed process, and across power loss keeps the database consistent, at most losing the
/// last commits. Foreign keys on, and a busy timeout for a second process on the same file.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StepOutcome, VerdictSource};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("data")).unwrap();
        (dir, store)
    }

    fn new_step(store: &Store, episode: EpisodeId, index: u32) -> NewStep {
        let png = store
            .put_blob(format!("png {index}").as_bytes(), BlobKind::Png)
            .unwrap();
        NewStep {
            episode,
            index,
            before_image: png.clone(),
            after_image: Some(png),
            before_tree: None,
            after_tree: None,
            surface: serde_json::json!({"width": 100, "height": 50}),
            action: serde_json::json!({"kind": "click", "x": 0.5, "y": 0.5}),
            response: None,
            policy_version: Some(3),
            outcome: StepOutcome::Executed,
            error: None,
            started_at_ms: 1,
            ended_at_ms: 2,
        }
    }

    #[test]
    fn steps_round_trip_in_order() {
        let (_d, store) = store();
        let ep = store
            .begin_episode(&NewEpisode {
                task: "add 2+2".into(),
                app: Some("calc".into()),
            })
            .unwrap();
        for i in [1, 0, 2] {
            store.insert_step(&new_step(&store, ep, i)).unwrap();
        }
        let steps = store.steps(ep).unwrap();
        assert_eq!(steps.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(steps[1].action["kind"], "click");
        assert_eq!(steps[1].policy_version, Some(3));
        store.finish_episode(ep, EpisodeStatus::Done, None).unwrap();
        assert_eq!(store.episode(ep).unwrap().status, EpisodeStatus::Done);
    }

    #[test]
    fn duplicate_step_index_is_rejected_and_keeps_the_first() {
        let (_d, store) = store();
        let ep = store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap();
        store.insert_step(&new_step(&store, ep, 0)).unwrap();
        assert!(store.insert_step(&new_step(&store, ep, 0)).is_err());
        assert_eq!(store.step_count().unwrap(), 1);
    }

    #[test]
    fn step_naming_a_missing_blob_is_refused() {
        let (_d, store) = store();
        let ep = store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap();
        let mut step = new_step(&store, ep, 0);
        step.after_image = Some(BlobId::of(b"not stored", BlobKind::Png));
        let err = store.insert_step(&step).unwrap_err();
        assert!(matches!(err, StoreError::MissingBlob { .. }), "{err}");
    }

    #[test]
    fn a_person_overrides_the_judge() {
        let (_d, store) = store();
        let ep = store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap();
        let step = store.insert_step(&new_step(&store, ep, 0)).unwrap();
        let judge = |score| NewVerdict {
            step,
            source: VerdictSource::Judge,
            score,
            votes: Some(serde_json::json!([1, 1, -1])),
            hint: Some("open the menu first".into()),
            judge: Some("test".into()),
        };
        store.add_verdict(&judge(1)).unwrap();
        assert_eq!(store.effective_verdict(step).unwrap().unwrap().score, 1);
        store
            .add_verdict(&NewVerdict {
                source: VerdictSource::Person,
                hint: None,
                votes: None,
                ..judge(-1)
            })
            .unwrap();
        // A later judge verdict does not take the person's place.
        store.add_verdict(&judge(1)).unwrap();
        let v = store.effective_verdict(step).unwrap().unwrap();
        assert_eq!((v.source, v.score), (VerdictSource::Person, -1));
        assert_eq!(store.verdicts(step).unwrap().len(), 3);
        assert!(store.add_verdict(&judge(2)).is_err());
    }

    #[test]
    fn newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        drop(Store::open(&root).unwrap());
        let db = root.join(DB_FILE);
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", migrate::SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&root).unwrap_err();
        assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains("upgrade ClawDesk"));
        let conn = Connection::open(&db).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, migrate::SCHEMA_VERSION + 1);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42; 4096]).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let ep = {
            let store = Store::open(dir.path()).unwrap();
            let ep = store
                .begin_episode(&NewEpisode {
                    task: "t".into(),
                    app: None,
                })
                .unwrap();
            store.insert_step(&new_step(&store, ep, 0)).unwrap();
            store
                .add_adapter(&NewAdapter {
                    version: 1,
                    base_model: "tiny".into(),
                    path: "/x".into(),
                    metrics: None,
                })
                .unwrap();
            ep
        };
        let store = Store::open(dir.path()).unwrap();
        store.integrity_check().unwrap();
        assert_eq!(store.steps(ep).unwrap().len(), 1);
        assert_eq!(store.adapters().unwrap()[0].version, 1);
    }
}
