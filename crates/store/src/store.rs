use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use crate::blobs::{BlobId, BlobKind, Blobs};
use crate::error::{Result, StoreError};
use crate::table::{adapters, episodes, judging, steps, timeline, training, verdicts};
use crate::{
    Adapter, AdapterId, Agreement, Episode, EpisodeId, EpisodeStatus, GiveUp, JudgeFailure,
    NewAdapter, NewEpisode, NewStep, NewTurn, NewVerdict, RewardPoint, Step, StepId, TrainUpdate,
    Verdict, VerdictId, VerdictSource, migrate, now_ms,
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
    /// Whether `root` already holds a store (its database file).
    pub fn exists_in(root: &Path) -> bool {
        root.join(DB_FILE).is_file()
    }

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
        // A second process setting up the same new file makes SQLite answer "busy" at once
        // (switching to WAL does not wait for the busy timeout): try again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let set_up = configure(&conn)
                .map_err(|e| StoreError::sql(&db_path, e))
                .and_then(|()| migrate::migrate(&mut conn, &db_path));
            match set_up {
                Err(StoreError::Sql { ref source, .. })
                    if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        }
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

    /// Starts an episode, running from now, and returns its id.
    pub fn begin_episode(&self, new: &NewEpisode) -> Result<EpisodeId> {
        let conn = self.conn();
        self.sql(episodes::insert(&conn, new, now_ms()))
    }

    /// Records how an episode ended, now, with an optional note (why it stopped, say);
    /// `NotFound` when there is no such episode.
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

    /// One episode by id; `NotFound` when there is none.
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

    /// The episode recording API session `session`, started with `task` on first use.
    pub fn session_episode(&self, session: &str, task: &str) -> Result<Episode> {
        let conn = self.conn();
        self.sql(episodes::of_session(&conn, session, task, now_ms()))
    }

    /// Records a conversation turn as the next step of its episode.
    pub fn insert_turn(&self, turn: &NewTurn) -> Result<StepId> {
        let mut conn = self.conn();
        let tx = self.sql(conn.transaction())?;
        let id = self.sql(steps::insert_turn(&tx, turn))?;
        self.sql(tx.commit())?;
        Ok(id)
    }

    /// Gives a turn the message that followed it; `false` when it had one already (the
    /// first next state stays) or `step` is not a turn.
    pub fn set_next_state(&self, step: StepId, next: &serde_json::Value) -> Result<bool> {
        let conn = self.conn();
        self.sql(steps::set_next_state(&conn, step, next))
    }

    /// The newest turn of a conversation's episode.
    pub fn last_turn(&self, episode: EpisodeId) -> Result<Option<Step>> {
        let conn = self.conn();
        self.sql(steps::last_turn(&conn, episode))
    }

    /// One step by id; `NotFound` when there is none.
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

    /// Up to `limit` steps with ids above `after`, oldest first (ids only grow, so a cursor
    /// over them never misses a step).
    pub fn steps_after(&self, after: StepId, limit: usize) -> Result<Vec<Step>> {
        let conn = self.conn();
        self.sql(steps::after(&conn, after, limit))
    }

    /// How many steps are stored, across all episodes.
    pub fn step_count(&self) -> Result<i64> {
        let conn = self.conn();
        self.sql(steps::count(&conn))
    }

    /// Records a verdict in one transaction, clearing its judge's failure mark on the step.
    ///
    /// `None` when this judge already has a verdict on the step: the first one stays, so a judge
    /// loop that restarts mid-batch and judges a step again changes nothing. People may give a
    /// step as many verdicts as they like; the newest counts.
    pub fn add_verdict(&self, verdict: &NewVerdict) -> Result<Option<VerdictId>> {
        if !(-1..=1).contains(&verdict.score) {
            return Err(StoreError::Invalid(format!(
                "a verdict's score is -1, 0 or +1, not {}",
                verdict.score
            )));
        }
        if verdict.mean.is_some_and(|m| !(-1.0..=1.0).contains(&m)) {
            return Err(StoreError::Invalid(format!(
                "a verdict's mean vote lies in [-1, 1], not {:?}",
                verdict.mean
            )));
        }
        if verdict.source == VerdictSource::Judge && verdict.judge.is_none() {
            return Err(StoreError::Invalid(
                "a judge's verdict must name its judge".into(),
            ));
        }
        let mut conn = self.conn();
        let tx = self.sql(conn.transaction())?;
        if self.sql(steps::get(&tx, verdict.step))?.is_none() {
            return Err(StoreError::NotFound {
                what: "step",
                id: verdict.step.0,
            });
        }
        let id = self.sql(verdicts::insert(&tx, verdict, now_ms()))?;
        if let Some(judge) = &verdict.judge {
            self.sql(judging::clear_failure(&tx, verdict.step, judge))?;
        }
        self.sql(tx.commit())?;
        Ok(id)
    }

    /// Steps with an after-screen that `judge` owes a verdict and may try now, oldest first,
    /// leaving out `busy` (steps it is judging already). A person owes every step no person
    /// has judged.
    pub fn owed_steps(
        &self,
        judge: &str,
        source: VerdictSource,
        busy: &[StepId],
        limit: usize,
    ) -> Result<Vec<StepId>> {
        let conn = self.conn();
        self.sql(judging::owed(&conn, judge, source, now_ms(), busy, limit))
    }

    /// How many steps `judge` still owes, counting those waiting for a retry.
    pub fn owed_count(&self, judge: &str, source: VerdictSource) -> Result<i64> {
        let conn = self.conn();
        self.sql(judging::owed_count(&conn, judge, source))
    }

    /// Marks a failed attempt to judge `step` (in one transaction); it is owed again after
    /// `delay_ms(attempts so far)` milliseconds.
    pub fn record_judge_failure(
        &self,
        step: StepId,
        judge: &str,
        error: &str,
        delay_ms: impl Fn(i64) -> i64,
        give_up: GiveUp,
    ) -> Result<JudgeFailure> {
        let mut conn = self.conn();
        let tx = self.sql(conn.transaction())?;
        let failure = self.sql(judging::record_failure(
            &tx,
            step,
            judge,
            error,
            now_ms(),
            &delay_ms,
            give_up,
        ))?;
        self.sql(tx.commit())?;
        Ok(failure)
    }

    /// Why a judge gave up on `step` (`judge: last error`), if one did: the step is never
    /// judged by it, and the trainer passes over it unless someone else gives a verdict.
    pub fn unjudgeable(&self, step: StepId) -> Result<Option<String>> {
        let conn = self.conn();
        self.sql(judging::unjudgeable(&conn, step))
    }

    /// The steps `judge` failed on and will retry.
    pub fn judge_failures(&self, judge: &str) -> Result<Vec<JudgeFailure>> {
        let conn = self.conn();
        self.sql(judging::failures(&conn, judge))
    }

    /// Judge-vs-person agreement per judge, so a user can see whether a judge can be trusted.
    pub fn agreement(&self) -> Result<Vec<Agreement>> {
        let conn = self.conn();
        self.sql(verdicts::agreement(&conn))
    }

    /// Is the agent getting better? The last `last` decided steps with the running mean of the
    /// `window` verdicts ending at each (see [`RewardPoint`]).
    pub fn reward_trend(&self, last: usize, window: usize) -> Result<Vec<RewardPoint>> {
        let conn = self.conn();
        self.sql(verdicts::reward_trend(&conn, last, window))
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

    /// Records a newly trained adapter, created now; a version already recorded is refused.
    pub fn add_adapter(&self, adapter: &NewAdapter) -> Result<AdapterId> {
        let conn = self.conn();
        self.sql(adapters::insert(&conn, adapter, now_ms()))
    }

    /// The adapter versions whose folders may be removed so that `keep` remain: never the
    /// newest `keep`, one a person exported, or one ever activated.
    pub fn prunable_adapters(&self, keep: usize) -> Result<Vec<i64>> {
        let conn = self.conn();
        self.sql(adapters::prunable(&conn, keep))
    }

    /// Records that a person exported `version` (it is kept from pruning from now on).
    pub fn mark_adapter_exported(&self, version: i64) -> Result<()> {
        let conn = self.conn();
        self.sql(adapters::mark(
            &conn,
            version,
            adapters::Mark::Exported,
            now_ms(),
        ))
        .map(|_| ())
    }

    /// Records that `version`'s folder was removed.
    pub fn mark_adapter_pruned(&self, version: i64) -> Result<()> {
        let conn = self.conn();
        self.sql(adapters::mark(
            &conn,
            version,
            adapters::Mark::Pruned,
            now_ms(),
        ))
        .map(|_| ())
    }

    /// One past the highest adapter version ever recorded (1 for none): versions only grow.
    pub fn next_adapter_version(&self) -> Result<i64> {
        Ok(self
            .adapters()?
            .iter()
            .map(|a| a.version)
            .max()
            .map_or(1, |v| v + 1))
    }

    /// Every adapter recorded, pruned ones included, oldest version first.
    pub fn adapters(&self) -> Result<Vec<Adapter>> {
        let conn = self.conn();
        self.sql(adapters::list(&conn))
    }

    /// Records an adapter's held-out gym success (the regression suite's figure).
    pub fn set_adapter_gym_score(&self, version: i64, score: f64) -> Result<()> {
        let conn = self.conn();
        if self.sql(adapters::set_gym_score(&conn, version, score))? {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                what: "adapter version",
                id: version,
            })
        }
    }

    /// Makes `version` the adapter to serve (`None`: the base alone). Earlier choices stay on
    /// record, so a rollback can itself be undone.
    pub fn activate_adapter(&self, version: Option<i64>) -> Result<()> {
        let conn = self.conn();
        if let Some(v) = version
            && !self
                .sql(adapters::list(&conn))?
                .iter()
                .any(|a| a.version == v)
        {
            return Err(StoreError::NotFound {
                what: "adapter version",
                id: v,
            });
        }
        self.sql(adapters::activate(&conn, version, now_ms()))
    }

    /// The adapter a person chose to serve: `None` when no choice was made or the base was
    /// chosen.
    pub fn active_adapter(&self) -> Result<Option<Adapter>> {
        let conn = self.conn();
        let Some(Some(version)) = self.sql(adapters::active(&conn))? else {
            return Ok(None);
        };
        Ok(self
            .sql(adapters::list(&conn))?
            .into_iter()
            .find(|a| a.version == version))
    }

    /// Records one update's figures under its run; a redone update replaces its row.
    pub fn record_train_update(
        &self,
        run: &str,
        step: i64,
        metrics: &serde_json::Value,
    ) -> Result<()> {
        let conn = self.conn();
        self.sql(training::record(&conn, run, step, metrics, now_ms()))
    }

    /// A run's updates after `after`, in order: what the curves plot (and poll for).
    pub fn train_updates(&self, run: &str, after: i64) -> Result<Vec<TrainUpdate>> {
        let conn = self.conn();
        self.sql(training::list(&conn, run, after))
    }

    /// The training runs that have figures, the most recently updated first.
    pub fn train_runs(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        self.sql(training::runs(&conn))
    }

    /// A page of the timeline (newest step first) and how many steps the filter lets through.
    pub fn timeline(
        &self,
        filter: &crate::TimelineFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<crate::TimelineRow>, i64)> {
        let conn = self.conn();
        let rows = self.sql(timeline::page(&conn, filter, offset, limit))?;
        let total = self.sql(timeline::count(&conn, filter))?;
        Ok((rows, total))
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
    use crate::{StepOutcome, TimelineFilter};

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

    fn episode(store: &Store) -> EpisodeId {
        store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap()
    }

    fn judge_verdict(step: StepId, judge: &str, score: i8) -> NewVerdict {
        NewVerdict {
            step,
            source: VerdictSource::Judge,
            score,
            votes: Some(serde_json::json!([1, 1, -1])),
            hint: Some("open the menu first".into()),
            judge: Some(judge.into()),
            mean: Some(f64::from(score) / 3.0),
            correction: None,
        }
    }

    fn person_verdict(step: StepId, score: i8) -> NewVerdict {
        NewVerdict {
            source: VerdictSource::Person,
            judge: None,
            votes: None,
            mean: None,
            correction: Some(serde_json::json!({"kind": "key", "combo": "Return"})),
            ..judge_verdict(step, "", score)
        }
    }

    #[test]
    fn a_person_overrides_the_judge() {
        let (_d, store) = store();
        let ep = episode(&store);
        let step = store.insert_step(&new_step(&store, ep, 0)).unwrap();
        store.add_verdict(&judge_verdict(step, "a", 1)).unwrap();
        assert_eq!(store.effective_verdict(step).unwrap().unwrap().score, 1);
        store.add_verdict(&person_verdict(step, -1)).unwrap();
        // A later judge verdict does not take the person's place.
        store.add_verdict(&judge_verdict(step, "b", 1)).unwrap();
        let v = store.effective_verdict(step).unwrap().unwrap();
        assert_eq!((v.source, v.score), (VerdictSource::Person, -1));
        assert_eq!(v.correction.unwrap()["combo"], "Return");
        assert_eq!(store.verdicts(step).unwrap().len(), 3);
        assert!(store.add_verdict(&judge_verdict(step, "c", 2)).is_err());
        let mut no_name = judge_verdict(step, "c", 1);
        no_name.judge = None;
        assert!(store.add_verdict(&no_name).is_err());
    }

    /// Issue 26: a step that can never be judged is given up on, after a bound or at once for
    /// a failure of its own, and is owed no longer.
    /// Issue 26: old adapter versions may be pruned past a limit, but never the newest, one
    /// a person exported, or one ever activated.
    #[test]
    fn pruning_keeps_the_newest_the_exported_and_the_activated() {
        let (_d, store) = store();
        for version in 1..=6 {
            store
                .add_adapter(&NewAdapter {
                    version,
                    base_model: "b".into(),
                    path: format!("/a/v{version}"),
                    metrics: None,
                })
                .unwrap();
        }
        store.mark_adapter_exported(2).unwrap();
        store.activate_adapter(Some(3)).unwrap();
        store.activate_adapter(None).unwrap();
        assert_eq!(store.prunable_adapters(2).unwrap(), [1, 4]);
        store.mark_adapter_pruned(1).unwrap();
        store.mark_adapter_pruned(4).unwrap();
        assert!(store.prunable_adapters(2).unwrap().is_empty());
        let pruned: Vec<i64> = store
            .adapters()
            .unwrap()
            .iter()
            .filter(|a| a.pruned)
            .map(|a| a.version)
            .collect();
        assert_eq!(pruned, [1, 4]);
        // Versions still only grow past pruned ones.
        assert_eq!(store.next_adapter_version().unwrap(), 7);
    }

    #[test]
    fn a_step_a_judge_gives_up_on_is_owed_no_longer() {
        let (_d, store) = store();
        let ep = episode(&store);
        let a = store.insert_step(&new_step(&store, ep, 0)).unwrap();
        let b = store.insert_step(&new_step(&store, ep, 1)).unwrap();
        const J: VerdictSource = VerdictSource::Judge;
        let now = |_: i64| -1000;
        for attempt in 1..=3 {
            let f = store
                .record_judge_failure(a, "j", "HTTP 503", now, GiveUp::After(3))
                .unwrap();
            assert_eq!(f.given_up, attempt == 3, "attempt {attempt}");
        }
        let f = store
            .record_judge_failure(b, "j", "damaged screenshot", now, GiveUp::Now)
            .unwrap();
        assert!(f.given_up);
        assert!(store.owed_steps("j", J, &[], 10).unwrap().is_empty());
        assert_eq!(store.owed_count("j", J).unwrap(), 0);
        assert_eq!(
            store.unjudgeable(b).unwrap().as_deref(),
            Some("j: damaged screenshot")
        );
        // Another judge may still try.
        assert_eq!(store.owed_steps("k", J, &[], 10).unwrap(), [a, b]);
    }

    #[test]
    fn a_judge_gives_one_verdict_per_step_and_its_failures_wait() {
        let (_d, store) = store();
        let ep = episode(&store);
        let a = store.insert_step(&new_step(&store, ep, 0)).unwrap();
        let b = store.insert_step(&new_step(&store, ep, 1)).unwrap();
        const J: VerdictSource = VerdictSource::Judge;
        let mut unfinished = new_step(&store, ep, 2);
        unfinished.after_image = None;
        store.insert_step(&unfinished).unwrap();

        assert_eq!(store.owed_steps("j", J, &[], 10).unwrap(), [a, b]);
        assert_eq!(store.owed_steps("j", J, &[a], 10).unwrap(), [b]);
        assert_eq!(store.owed_steps("j", J, &[], 1).unwrap(), [a]);

        // A failure hides the step until its retry time, but it stays owed.
        let backoff = |attempts: i64| 60_000 * attempts;
        let first = store
            .record_judge_failure(b, "j", "503", backoff, GiveUp::After(8))
            .unwrap();
        assert_eq!(first.attempts, 1);
        let second = store
            .record_judge_failure(b, "j", "timeout", backoff, GiveUp::After(8))
            .unwrap();
        assert_eq!(second.attempts, 2);
        assert!(second.retry_at_ms - first.retry_at_ms >= 60_000);
        assert_eq!(store.owed_steps("j", J, &[], 10).unwrap(), [a]);
        assert_eq!(store.owed_count("j", J).unwrap(), 2);
        assert_eq!(store.judge_failures("j").unwrap()[0].last_error, "timeout");
        store
            .record_judge_failure(b, "j", "timeout", |_| -1000, GiveUp::After(8))
            .unwrap();
        assert_eq!(store.owed_steps("j", J, &[], 10).unwrap(), [a, b]);

        // The first verdict stays; judging again changes nothing; the failure mark goes.
        assert!(
            store
                .add_verdict(&judge_verdict(b, "j", 1))
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .add_verdict(&judge_verdict(b, "j", -1))
                .unwrap()
                .is_none()
        );
        assert_eq!(store.verdicts(b).unwrap().len(), 1);
        assert_eq!(store.verdicts(b).unwrap()[0].score, 1);
        assert!(store.judge_failures("j").unwrap().is_empty());
        assert_eq!(store.owed_steps("j", J, &[], 10).unwrap(), [a]);
        // Another judge still owes both, and so does a person until one judges.
        assert_eq!(store.owed_steps("k", J, &[], 10).unwrap(), [a, b]);
        const P: VerdictSource = VerdictSource::Person;
        store.add_verdict(&person_verdict(a, 1)).unwrap();
        assert_eq!(store.owed_steps("person", P, &[], 10).unwrap(), [b]);
        assert_eq!(store.owed_count("person", P).unwrap(), 1);
    }

    #[test]
    fn the_reward_trend_counts_the_deciding_verdict_and_averages_over_the_window() {
        let (_d, store) = store();
        let ep = episode(&store);
        let steps: Vec<StepId> = (0..6)
            .map(|i| store.insert_step(&new_step(&store, ep, i)).unwrap())
            .collect();
        // Step 0: judge +1, the person says -1 (the person wins). Step 1: undecided. Step 2:
        // never judged. Steps 3-5: +1, -1, +1 from the judge.
        store.add_verdict(&judge_verdict(steps[0], "j", 1)).unwrap();
        store.add_verdict(&person_verdict(steps[0], -1)).unwrap();
        store.add_verdict(&judge_verdict(steps[1], "j", 0)).unwrap();
        for (i, score) in [(3, 1), (4, -1), (5, 1)] {
            store
                .add_verdict(&judge_verdict(steps[i], "j", score))
                .unwrap();
        }
        let trend = store.reward_trend(10, 2).unwrap();
        let got: Vec<(i64, i8, f64)> = trend.iter().map(|p| (p.step, p.score, p.mean)).collect();
        assert_eq!(
            got,
            vec![
                (steps[0].0, -1, -1.0),
                (steps[3].0, 1, 0.0),
                (steps[4].0, -1, 0.0),
                (steps[5].0, 1, 0.0),
            ]
        );
        // The last two shown; the first one's window still reaches back to step 3.
        let tail = store.reward_trend(2, 3).unwrap();
        let got: Vec<(i64, f64)> = tail.iter().map(|p| (p.step, p.mean)).collect();
        assert_eq!(got, vec![(steps[4].0, -1.0 / 3.0), (steps[5].0, 1.0 / 3.0)]);
    }

    #[test]
    fn agreement_compares_each_judge_with_the_newest_person_verdict() {
        let (_d, store) = store();
        let ep = episode(&store);
        let steps: Vec<StepId> = (0..4)
            .map(|i| store.insert_step(&new_step(&store, ep, i)).unwrap())
            .collect();
        for (step, j, p) in [(0, 1, 1), (1, 1, -1), (2, 0, -1)] {
            store
                .add_verdict(&judge_verdict(steps[step], "j", j))
                .unwrap();
            store.add_verdict(&person_verdict(steps[step], -p)).unwrap();
            store.add_verdict(&person_verdict(steps[step], p)).unwrap();
        }
        // Judged, never checked by a person: not compared.
        store.add_verdict(&judge_verdict(steps[3], "j", 1)).unwrap();
        store
            .add_verdict(&judge_verdict(steps[0], "k", -1))
            .unwrap();
        let a = store.agreement().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (
                a[0].judge.as_str(),
                a[0].compared,
                a[0].agreed,
                a[0].undecided
            ),
            ("j", 3, 1, 1)
        );
        assert_eq!(a[0].rate(), Some(1.0 / 3.0));
        assert_eq!(
            (a[1].judge.as_str(), a[1].compared, a[1].agreed),
            ("k", 1, 0)
        );
    }

    #[test]
    fn a_version_1_database_migrates_keeping_its_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for sql in [
            crate::table::episodes::SCHEMA,
            crate::table::steps::SCHEMA,
            crate::table::verdicts::SCHEMA,
            crate::table::adapters::SCHEMA,
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO episodes (id, task, started_at_ms) VALUES (1, 't', 0);
             INSERT INTO steps (id, episode_id, idx, before_image, surface, action, outcome,
                                started_at_ms, ended_at_ms)
                 VALUES (1, 1, 0, 'BLOB', '{}', '{}', 'executed', 0, 0);
             INSERT INTO verdicts (step_id, source, score, votes, judge, created_at_ms)
                 VALUES (1, 'judge', -1, '[-1]', 'old', 5);
             PRAGMA user_version = 1;"
                .replace("BLOB", &BlobId::of(b"x", BlobKind::Png).to_string())
                .as_str(),
        )
        .unwrap();
        drop(conn);
        let store = Store::open(dir.path()).unwrap();
        let v = store.effective_verdict(StepId(1)).unwrap().unwrap();
        assert_eq!(
            (v.score, v.judge.as_deref(), v.mean),
            (-1, Some("old"), None)
        );
        assert!(store.judge_failures("old").unwrap().is_empty());
        // The new one-per-judge rule holds for the old rows too.
        assert!(
            store
                .add_verdict(&judge_verdict(StepId(1), "old", 1))
                .unwrap()
                .is_none()
        );
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

    #[test]
    fn adapters_keep_gym_scores_and_every_activation() {
        let (_dir, store) = store();
        for version in [1, 2] {
            store
                .add_adapter(&NewAdapter {
                    version,
                    base_model: "tiny".into(),
                    path: format!("/a/v{version}"),
                    metrics: None,
                })
                .unwrap();
        }
        assert_eq!(store.active_adapter().unwrap(), None);
        store.set_adapter_gym_score(2, 0.75).unwrap();
        assert!(matches!(
            store.set_adapter_gym_score(9, 0.5),
            Err(StoreError::NotFound { id: 9, .. })
        ));
        let listed = store.adapters().unwrap();
        assert_eq!(listed[0].gym_score, None);
        assert_eq!(listed[1].gym_score, Some(0.75));

        store.activate_adapter(Some(2)).unwrap();
        assert_eq!(store.active_adapter().unwrap().unwrap().version, 2);
        // Rollback, then back to the base alone; an unknown version changes nothing.
        store.activate_adapter(Some(1)).unwrap();
        assert_eq!(store.active_adapter().unwrap().unwrap().version, 1);
        assert!(store.activate_adapter(Some(5)).is_err());
        assert_eq!(store.active_adapter().unwrap().unwrap().version, 1);
        store.activate_adapter(None).unwrap();
        assert_eq!(store.active_adapter().unwrap(), None);
    }

    #[test]
    fn train_updates_are_listed_in_order_and_a_redone_update_replaces_its_row() {
        let (_dir, store) = store();
        for step in [2, 1, 3] {
            store
                .record_train_update("main", step, &serde_json::json!({"loss": step}))
                .unwrap();
        }
        store
            .record_train_update("other", 1, &serde_json::json!({"loss": 9}))
            .unwrap();
        store
            .record_train_update("main", 2, &serde_json::json!({"loss": 20}))
            .unwrap();
        let main = store.train_updates("main", 0).unwrap();
        let losses: Vec<(i64, i64)> = main
            .iter()
            .map(|u| (u.step, u.metrics["loss"].as_i64().unwrap()))
            .collect();
        assert_eq!(losses, vec![(1, 1), (2, 20), (3, 3)]);
        assert_eq!(store.train_updates("main", 2).unwrap().len(), 1);
    }

    #[test]
    fn the_timeline_pages_newest_first_and_each_filter_narrows() {
        let (_d, store) = store();
        let calc = store
            .begin_episode(&NewEpisode {
                task: "add".into(),
                app: Some("calc".into()),
            })
            .unwrap();
        let edit = store
            .begin_episode(&NewEpisode {
                task: "write".into(),
                app: Some("editor".into()),
            })
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(store.insert_step(&new_step(&store, calc, i)).unwrap());
        }
        let mut failed = new_step(&store, edit, 0);
        failed.outcome = StepOutcome::Failed;
        failed.policy_version = None;
        ids.push(store.insert_step(&failed).unwrap());
        let judge = |step, score, hint: Option<&str>| NewVerdict {
            step,
            source: VerdictSource::Judge,
            score,
            votes: None,
            hint: hint.map(str::to_owned),
            judge: Some("j".into()),
            mean: None,
            correction: None,
        };
        let person = |step, score| NewVerdict {
            source: VerdictSource::Person,
            judge: None,
            ..judge(step, score, None)
        };
        // 0: judge +1, person -1 (disagree, failed); 1: judge +1 and person +1; 2: judge -1
        // with a hint (failed); 3: unjudged; 4: action failed, unjudged.
        store.add_verdict(&judge(ids[0], 1, None)).unwrap();
        store.add_verdict(&person(ids[0], -1)).unwrap();
        store.add_verdict(&judge(ids[1], 1, None)).unwrap();
        store.add_verdict(&person(ids[1], 1)).unwrap();
        store
            .add_verdict(&judge(ids[2], -1, Some("click OK")))
            .unwrap();

        let ids_of = |filter: TimelineFilter| {
            let (rows, total) = store.timeline(&filter, 0, 100).unwrap();
            assert_eq!(total as usize, rows.len());
            rows.iter().map(|r| r.step).collect::<Vec<_>>()
        };
        assert_eq!(
            ids_of(TimelineFilter::default()),
            ids.iter().rev().copied().collect::<Vec<_>>()
        );
        let (page, total) = store.timeline(&TimelineFilter::default(), 1, 2).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            page.iter().map(|r| r.step).collect::<Vec<_>>(),
            vec![ids[3], ids[2]]
        );
        assert_eq!(page[1].judge_score, Some(-1));
        assert_eq!(page[1].person_score, None);
        assert!(page[1].has_hint && !page[0].has_hint);
        assert_eq!(page[1].task, "add");
        let unjudged = TimelineFilter {
            unjudged: true,
            ..Default::default()
        };
        assert_eq!(ids_of(unjudged), vec![ids[4], ids[3]]);
        let disagreement = TimelineFilter {
            disagreement: true,
            ..Default::default()
        };
        assert_eq!(ids_of(disagreement), vec![ids[0]]);
        let failed = TimelineFilter {
            failed: true,
            ..Default::default()
        };
        assert_eq!(ids_of(failed), vec![ids[4], ids[2], ids[0]]);
        let by_app = TimelineFilter {
            app: Some("editor".into()),
            ..Default::default()
        };
        assert_eq!(ids_of(by_app), vec![ids[4]]);
        let by_episode_and_version = TimelineFilter {
            episode: Some(calc.0),
            adapter: Some(3),
            failed: true,
            ..Default::default()
        };
        assert_eq!(ids_of(by_episode_and_version), vec![ids[2], ids[0]]);
        let base_model = TimelineFilter {
            adapter: Some(0),
            ..Default::default()
        };
        assert_eq!(ids_of(base_model), vec![ids[4]]);
    }

    #[test]
    fn steps_after_a_cursor_come_in_id_order() {
        let (_dir, store) = store();
        let episode = store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap();
        let ids: Vec<StepId> = (0..5)
            .map(|i| store.insert_step(&new_step(&store, episode, i)).unwrap())
            .collect();
        let after: Vec<StepId> = store
            .steps_after(ids[1], 2)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(after, vec![ids[2], ids[3]]);
        assert!(store.steps_after(ids[4], 10).unwrap().is_empty());
    }
}
