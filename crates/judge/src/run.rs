//! The judge loop: works through the steps a judge owes, a bounded number at a time, writing
//! each verdict set in one transaction and marking failures for a later retry.
//!
//! It keeps no state of its own that matters: what is owed, failed and done lives in the store,
//! so the loop can be killed at any moment and a new one carries on. A step being judged when
//! the loop dies is simply still owed; a verdict that was written is never written twice.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use clawdesk_store::{GiveUp, StepId, Store};

use crate::case::StepCase;
use crate::error::{JudgeError, Result};
use crate::judge::{Judge, Judgement};

/// How the loop paces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopOptions {
    /// Steps judged at once (each with its own parallel votes).
    pub concurrency: usize,
    /// How often the store is asked for new steps when nobody wakes the loop.
    #[serde(with = "crate::millis")]
    pub poll: Duration,
    /// The wait after a step's first failed judging; doubles with each further failure.
    #[serde(with = "crate::millis")]
    pub failure_backoff: Duration,
    /// The longest wait between tries, however many failures.
    #[serde(with = "crate::millis")]
    pub failure_backoff_max: Duration,
    /// Return once nothing is owed that can be judged now (for batch runs and tests); otherwise
    /// run until shut down.
    pub until_idle: bool,
    /// After this many failed attempts a step is given up on (unjudgeable), so that one step
    /// never holds up the trainer for good.
    pub max_attempts: i64,
}

impl Default for LoopOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll: Duration::from_millis(500),
            failure_backoff: Duration::from_secs(30),
            failure_backoff_max: Duration::from_secs(3600),
            until_idle: false,
            max_attempts: 8,
        }
    }
}

/// What the loop reports as it goes, for progress in the UI and the CLI.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeEvent {
    /// The step's verdict was written.
    Judged {
        /// The step judged.
        step: StepId,
        /// +1, -1, or 0 when the votes tied or none counted.
        score: i8,
        /// The mean of the valid votes; `None` when none counted.
        mean: Option<f64>,
        /// Whether the verdict carries a hindsight hint.
        hint: bool,
    },
    /// The step could not be judged now; it will be tried again.
    Failed {
        /// The step that failed.
        step: StepId,
        /// How many attempts have failed so far, this one included.
        attempts: i64,
        /// Why, as the error reads.
        error: String,
        /// How long until the step is owed again.
        retry_in: Duration,
    },
    /// The step can never be judged by this judge (a failure of its own, or too many
    /// attempts); it is not tried again and the trainer passes over it.
    GaveUp {
        /// The step given up on.
        step: StepId,
        /// How many attempts failed, this one included.
        attempts: i64,
        /// Why the last attempt failed, as the error reads.
        error: String,
    },
}

/// What one run of the loop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Verdicts this run wrote.
    pub judged: u64,
    /// Judged again after a restart or by a second loop; the first verdict was kept.
    pub already_judged: u64,
    /// Failed judgings, whether the step will be retried or was given up on.
    pub failures: u64,
}

/// The loop for one judge over one store.
pub struct JudgeLoop {
    store: Arc<Store>,
    judge: Arc<dyn Judge>,
    options: LoopOptions,
    events: Option<mpsc::UnboundedSender<JudgeEvent>>,
    wake: Arc<Notify>,
}

impl JudgeLoop {
    /// A loop for `judge` over `store`; a concurrency of 0 is refused.
    pub fn new(store: Arc<Store>, judge: Arc<dyn Judge>, options: LoopOptions) -> Result<Self> {
        if options.concurrency == 0 {
            return Err(JudgeError::Config(
                "judge concurrency must be at least 1".into(),
            ));
        }
        Ok(Self {
            store,
            judge,
            options,
            events: None,
            wake: Arc::new(Notify::new()),
        })
    }

    /// A stream of what the loop does.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<JudgeEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        rx
    }

    /// Notify this after storing a step to have it judged without waiting for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` resolves (or, with `until_idle`, until nothing can be judged now).
    /// Steps in flight at shutdown are abandoned and stay owed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<LoopStats> {
        let name: Arc<str> = self.judge.name().into();
        let source = self.judge.source();
        tracing::info!(judge = %name, concurrency = self.options.concurrency, "judge loop started");
        let mut stats = LoopStats::default();
        // Each task judges a step and records what came of it, so a slow write never holds up
        // the loop; the loop only counts, reports, and hands out more steps.
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut busy: Vec<(tokio::task::Id, StepId)> = Vec::new();
        let backoff = Backoff {
            base_ms: self.options.failure_backoff.as_millis() as i64,
            max_ms: self.options.failure_backoff_max.as_millis() as i64,
            max_attempts: self.options.max_attempts.max(1),
        };
        tokio::pin!(shutdown);
        loop {
            if busy.len() < self.options.concurrency {
                let want = self.options.concurrency - busy.len();
                let store = self.store.clone();
                let judge_name = name.clone();
                let skip: Vec<StepId> = busy.iter().map(|(_, s)| *s).collect();
                let owed = tokio::task::spawn_blocking(move || {
                    store.owed_steps(&judge_name, source, &skip, want)
                })
                .await
                .map_err(|e| JudgeError::Task(e.to_string()))??;
                for step in owed {
                    let (store, judge, name) =
                        (self.store.clone(), self.judge.clone(), name.clone());
                    let task = tasks.spawn(judge_and_record(store, judge, name, step, backoff));
                    busy.push((task.id(), step));
                }
            }
            if tasks.is_empty() && self.options.until_idle {
                break;
            }
            tokio::select! {
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    // Settle everything that finished together before asking the store for
                    // more, so a burst of completions costs one query, not one each.
                    let mut finished = vec![done];
                    while let Some(done) = tasks.try_join_next_with_id() {
                        finished.push(done);
                    }
                    for done in finished {
                        self.finish(done, &mut busy, &name, backoff, &mut stats).await;
                    }
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.options.poll) => {}
                () = &mut shutdown => {
                    tracing::info!(judge = %name, in_flight = busy.len(), "judge loop stopping");
                    break;
                }
            }
        }
        tasks.abort_all();
        Ok(stats)
    }

    async fn finish(
        &self,
        done: std::result::Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
        busy: &mut Vec<(tokio::task::Id, StepId)>,
        name: &str,
        backoff: Backoff,
        stats: &mut LoopStats,
    ) {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, Some(outcome)),
            Err(e) => {
                tracing::error!(error = %e, "a judging task panicked");
                (e.id(), None)
            }
        };
        let Some(at) = busy.iter().position(|(task, _)| *task == id) else {
            return;
        };
        let (_, step) = busy.swap_remove(at);
        let outcome = match outcome {
            Some(outcome) => outcome,
            // A judge that panicked: marked like any failure, retried later.
            None => {
                record_failure(
                    &self.store,
                    name,
                    step,
                    "the judge panicked".into(),
                    backoff,
                    GiveUp::After(backoff.max_attempts),
                )
                .await
            }
        };
        self.count(outcome, stats);
    }

    fn count(&self, outcome: Outcome, stats: &mut LoopStats) {
        match outcome {
            Outcome::Judged(event) => {
                stats.judged += 1;
                self.emit(event);
            }
            Outcome::AlreadyJudged => stats.already_judged += 1,
            Outcome::Failed(event) => {
                stats.failures += 1;
                self.emit(event);
            }
            Outcome::Unmarked => stats.failures += 1,
        }
    }

    fn emit(&self, event: JudgeEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

/// What became of one step.
enum Outcome {
    Judged(JudgeEvent),
    AlreadyJudged,
    Failed(JudgeEvent),
    /// It failed, and so did marking it (the store is failing); it stays owed regardless.
    Unmarked,
}

/// Exponential wait before a failed step is tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    base_ms: i64,
    max_ms: i64,
    max_attempts: i64,
}

impl Backoff {
    fn delay_ms(self, attempts: i64) -> i64 {
        self.base_ms
            .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
            .min(self.max_ms)
    }
}

async fn judge_and_record(
    store: Arc<Store>,
    judge: Arc<dyn Judge>,
    name: Arc<str>,
    step: StepId,
    backoff: Backoff,
) -> Outcome {
    let judgement = match judge_one(store.clone(), judge, step).await {
        Ok(judgement) => judgement,
        Err(e) => {
            let give_up = if e.is_the_steps_own() {
                GiveUp::Now
            } else {
                GiveUp::After(backoff.max_attempts)
            };
            return record_failure(&store, &name, step, e.to_string(), backoff, give_up).await;
        }
    };
    let verdict = judgement.verdict(step, &name);
    let writer = store.clone();
    let written = tokio::task::spawn_blocking(move || writer.add_verdict(&verdict))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match written {
        Ok(Some(_)) => {
            tracing::debug!(step = step.0, score = judgement.score, "judged");
            Outcome::Judged(JudgeEvent::Judged {
                step,
                score: judgement.score,
                mean: judgement.mean,
                hint: judgement.hint.is_some(),
            })
        }
        Ok(None) => Outcome::AlreadyJudged,
        Err(e) => {
            let give_up = GiveUp::After(backoff.max_attempts);
            record_failure(&store, &name, step, e, backoff, give_up).await
        }
    }
}

async fn record_failure(
    store: &Arc<Store>,
    name: &str,
    step: StepId,
    error: String,
    backoff: Backoff,
    give_up: GiveUp,
) -> Outcome {
    let (store, name_owned, message) = (store.clone(), name.to_owned(), error.clone());
    let marked = tokio::task::spawn_blocking(move || {
        store.record_judge_failure(
            step,
            &name_owned,
            &message,
            |a| backoff.delay_ms(a),
            give_up,
        )
    })
    .await;
    match marked {
        Ok(Ok(failure)) if failure.given_up => {
            tracing::warn!(step = step.0, attempts = failure.attempts, %error, "step given up on: it cannot be judged");
            Outcome::Failed(JudgeEvent::GaveUp {
                step,
                attempts: failure.attempts,
                error,
            })
        }
        Ok(Ok(failure)) => {
            let retry_in = Duration::from_millis(
                (failure.retry_at_ms - clawdesk_store::now_ms()).max(0) as u64,
            );
            tracing::warn!(step = step.0, attempts = failure.attempts, ?retry_in, %error, "could not judge step; will retry");
            Outcome::Failed(JudgeEvent::Failed {
                step,
                attempts: failure.attempts,
                error,
                retry_in,
            })
        }
        // The store itself is failing: the step stays owed and is tried on the next pass.
        Ok(Err(e)) => {
            tracing::error!(step = step.0, error = %e, judging = %error, "cannot mark the failed step");
            Outcome::Unmarked
        }
        Err(e) => {
            tracing::error!(step = step.0, error = %e, judging = %error, "cannot mark the failed step");
            Outcome::Unmarked
        }
    }
}

async fn judge_one(store: Arc<Store>, judge: Arc<dyn Judge>, step: StepId) -> Result<Judgement> {
    let case = tokio::task::spawn_blocking(move || StepCase::load(&store, step))
        .await
        .map_err(|e| JudgeError::Task(e.to_string()))??;
    judge.judge(&case).await
}
