//! The training loop over the store: judged steps become batches in step-id order (a cursor
//! that never skips a step still waiting for its verdict), one update per batch, the figures of
//! every update written to the store for the curves, and a checkpoint (adapter, optimiser
//! moments, step count, cursor) every K updates. Restarted, it resumes from the newest
//! checkpoint and makes the same updates an uninterrupted run makes.

use std::path::{Path, PathBuf};

use candle_core::Var;
use clawdesk_model::source::LoadedModel;
use clawdesk_store::{EpisodeStatus, Step, StepId, StepKind, Store};

use crate::advantage::Method;
use crate::checkpoint;
use crate::error::{Result, TrainerError};
use crate::optim::{AdamW, AdamWConfig, Schedule};
use crate::stored::training_sample;
use crate::teacher::HintTemplate;
use crate::update::{TrainSample, UpdateMetrics, UpdateSettings, update};
use clawdesk_agent::turn::PolicyTurn;

/// How the loop trains.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainLoopSettings {
    /// The run's name in the store's figures.
    pub run: String,
    /// Trainable samples per update.
    pub batch: usize,
    /// A checkpoint every this many updates.
    pub checkpoint_every: u64,
    /// Checkpoints kept.
    pub keep: usize,
    /// The learning rate over updates.
    pub schedule: Schedule,
    /// The optimiser's settings.
    pub optimizer: AdamWConfig,
    /// How each update is made.
    pub update: UpdateSettings,
    /// Pass over a step whose reply came from an adapter more than this many updates older
    /// than the one being trained (a step with no version counts as version 0, the base).
    /// `None`: learn from every step; its recorded log-probabilities keep the ratio right.
    pub max_staleness: Option<u64>,
    /// How long to wait for the next message of a conversation turn served over the API
    /// before passing over it (a session a client left open without ending it would
    /// otherwise hold training back for good).
    pub turn_patience: std::time::Duration,
}

impl Default for TrainLoopSettings {
    fn default() -> Self {
        Self {
            run: "main".into(),
            batch: 16,
            checkpoint_every: 10,
            keep: 3,
            schedule: Schedule::Constant { lr: 1e-5 },
            optimizer: AdamWConfig::default(),
            update: UpdateSettings::default(),
            max_staleness: None,
            turn_patience: std::time::Duration::from_secs(600),
        }
    }
}

/// What a person chooses about learning, the same in every front end (the command line's
/// `train run` and `agent live`, the window's settings, the benchmarks): each fills this in
/// from its own inputs and takes the loop's settings from [`LearningChoices::train_loop`], so
/// a default changes in one place.
#[derive(Debug, Clone, PartialEq)]
pub struct LearningChoices {
    /// The learning signal.
    pub method: Method,
    /// The weights of the Binary RL and OPD advantages in the combined method.
    pub w_rl: f32,
    /// The weight of the OPD advantage (teacher gap) in the combined method.
    pub w_opd: f32,
    /// What the teacher is compared on: the sampled token, or the student's top-k.
    pub opd_form: crate::advantage::OpdForm,
    /// The teacher gap's clip C; `None`: unclipped.
    pub opd_clip: Option<f32>,
    /// A constant learning rate.
    pub lr: f64,
    /// Trainable samples per update.
    pub batch: usize,
    /// A checkpoint every this many updates.
    pub checkpoint_every: u64,
    /// See [`TrainLoopSettings::max_staleness`]. The live loop learns only from recent
    /// adapters by default; training over a store afterwards (`train run`) sets `None`.
    pub max_staleness: Option<u64>,
}

impl Default for LearningChoices {
    fn default() -> Self {
        let loop_defaults = TrainLoopSettings::default();
        let advantages = crate::advantage::AdvantageSettings::default();
        Self {
            method: advantages.method,
            w_rl: advantages.w_rl,
            w_opd: advantages.w_opd,
            opd_form: advantages.opd_form,
            opd_clip: advantages.opd_clip,
            lr: 1e-5,
            batch: loop_defaults.batch,
            checkpoint_every: loop_defaults.checkpoint_every,
            max_staleness: Some(8),
        }
    }
}

impl LearningChoices {
    /// The training loop's settings for these choices, the run named `run` in the figures.
    pub fn train_loop(&self, run: &str) -> TrainLoopSettings {
        let mut update = UpdateSettings::default();
        update.advantages.method = self.method;
        update.advantages.w_rl = self.w_rl;
        update.advantages.w_opd = self.w_opd;
        update.advantages.opd_form = self.opd_form;
        update.advantages.opd_clip = self.opd_clip;
        TrainLoopSettings {
            run: run.to_owned(),
            batch: self.batch,
            checkpoint_every: self.checkpoint_every,
            schedule: Schedule::Constant { lr: self.lr },
            update,
            max_staleness: self.max_staleness,
            ..TrainLoopSettings::default()
        }
    }
}

/// What one turn of the loop did.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// An update was made.
    Updated {
        /// The update's number: updates made so far, this one included.
        step: u64,
        /// What the update did.
        metrics: UpdateMetrics,
    },
    /// A batch's update failed on non-finite numbers or had nothing the method learns from;
    /// the adapter is unchanged, the batch is passed over and the reason reported.
    Skipped {
        /// The number the update would have had; the next update takes it.
        step: u64,
        /// Why it was skipped.
        reason: String,
    },
    /// Fewer than a batch of judged samples is ready.
    Waiting {
        /// Trainable samples collected so far.
        ready: usize,
    },
}

/// The loop's state: the policy's adapter and optimiser, and where it is in the data.
pub struct TrainLoop<'a> {
    store: &'a Store,
    loaded: &'a LoadedModel,
    params: Vec<(String, Var)>,
    optimizer: AdamW,
    hints: HintTemplate,
    checkpoints: PathBuf,
    base_model: String,
    rank: usize,
    cursor: StepId,
    settings: TrainLoopSettings,
    /// Steps passed over since the last update whose cursor has already moved past them.
    carried: Passed,
}

/// Steps the loop passed over on the way to a batch, by why: the figures beside an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Passed {
    /// From an adapter older than `max_staleness` allows.
    pub stale: usize,
    /// With nothing the method learns from: no decided verdict and no hint, no decided
    /// verdict for Binary RL, no hint for OPD.
    pub no_signal: usize,
    /// Whose judge gave up on them, or whose stored reply or screenshots could not be read.
    pub unusable: usize,
}

impl std::ops::AddAssign for Passed {
    fn add_assign(&mut self, o: Passed) {
        self.stale += o.stale;
        self.no_signal += o.no_signal;
        self.unusable += o.unusable;
    }
}

impl<'a> TrainLoop<'a> {
    /// Opens the loop on a model whose LoRA is attached, resuming from the newest checkpoint
    /// under `checkpoints` (refused if it belongs to another base model or rank).
    pub fn open(
        store: &'a Store,
        loaded: &'a LoadedModel,
        base_model: &str,
        checkpoints: &Path,
        hints: HintTemplate,
        settings: TrainLoopSettings,
    ) -> Result<Self> {
        let rank =
            loaded.model.lora_config().map(|c| c.rank).ok_or_else(|| {
                TrainerError::Input("the model has no LoRA adapter to train".into())
            })?;
        let params: Vec<(String, Var)> = loaded
            .model
            .lora_weights()
            .into_iter()
            .flat_map(|(path, l)| {
                [
                    (format!("{path}.lora_A"), l.a),
                    (format!("{path}.lora_B"), l.b),
                ]
            })
            .collect();
        let mut optimizer = AdamW::new(
            params.iter().map(|(_, v)| v.clone()).collect(),
            settings.optimizer,
        )?;
        let mut cursor = StepId(0);
        if let Some(found) =
            checkpoint::load_latest(checkpoints, base_model, rank, loaded.model.device())?
        {
            cursor = StepId(found.meta.cursor);
            tracing::info!(
                step = found.meta.step,
                cursor = cursor.0,
                "resuming from a checkpoint"
            );
            found.restore(&params, &mut optimizer)?;
        }
        Ok(Self {
            store,
            loaded,
            params,
            optimizer,
            hints,
            checkpoints: checkpoints.to_path_buf(),
            base_model: base_model.to_string(),
            rank,
            cursor,
            settings,
            carried: Passed::default(),
        })
    }

    /// Updates made so far (restored ones included).
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// The last step id consumed.
    pub fn cursor(&self) -> StepId {
        self.cursor
    }

    /// Makes one update when a batch is ready.
    pub fn turn(&mut self) -> Result<Turn> {
        let (samples, cursor, passed) = self.collect()?;
        if samples.len() < self.settings.batch {
            // Steps passed over with nothing collected (a person's, stale ones) need not be
            // read again; collected samples wait for the rest of their batch.
            if samples.is_empty() {
                self.cursor = cursor;
                self.carried += passed;
            }
            return Ok(Turn::Waiting {
                ready: samples.len(),
            });
        }
        let step = self.optimizer.steps() + 1;
        let lr = self.settings.schedule.lr(step);
        let outcome = update(
            &self.loaded.model,
            &mut self.optimizer,
            &samples,
            &self.settings.update,
            lr,
        );
        self.cursor = cursor;
        let metrics = match outcome {
            Ok(m) => m,
            Err(e @ (TrainerError::NonFinite { .. } | TrainerError::NothingToTrain { .. })) => {
                let reason = e.to_string();
                tracing::warn!(step, %reason, "update skipped");
                // The cursor moved past these steps: the next update's figures count them.
                self.carried += passed;
                return Ok(Turn::Skipped { step, reason });
            }
            Err(e) => return Err(e),
        };
        let step = self.optimizer.steps();
        let mut passed_over = std::mem::take(&mut self.carried);
        passed_over += passed;
        let mut figures = metrics_json(&metrics);
        figures["passed_stale"] = passed_over.stale.into();
        figures["passed_no_signal"] = passed_over.no_signal.into();
        figures["passed_unusable"] = passed_over.unusable.into();
        self.store
            .record_train_update(&self.settings.run, step as i64, &figures)
            .map_err(|e| TrainerError::Input(format!("recording the update's figures: {e}")))?;
        if step.is_multiple_of(self.settings.checkpoint_every.max(1)) {
            self.checkpoint()?;
        }
        Ok(Turn::Updated { step, metrics })
    }

    /// Writes a checkpoint now.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        checkpoint::save(
            &self.checkpoints,
            &self.params,
            &self.optimizer,
            self.cursor.0,
            &self.base_model,
            self.rank,
            self.settings.keep,
        )
    }

    /// A conversation turn whose session ended before another message came, or that has
    /// waited longer than the patience for one, has no next state to be judged from; waiting
    /// for it would stop training for good.
    fn never_judged(&self, step: &Step) -> Result<bool> {
        if step.kind != StepKind::Turn || step.next_state.is_some() {
            return Ok(false);
        }
        let waited = clawdesk_store::now_ms().saturating_sub(step.ended_at_ms);
        if waited > self.settings.turn_patience.as_millis() as i64 {
            return Ok(true);
        }
        let episode = self
            .store
            .episode(step.episode)
            .map_err(|e| TrainerError::Input(format!("reading an episode: {e}")))?;
        Ok(episode.status != EpisodeStatus::Running)
    }

    /// The next batch of samples after the cursor and the cursor after them. Stops at the first
    /// model step that has no verdict yet, so none is passed over while its judge works.
    fn collect(&self) -> Result<(Vec<TrainSample>, StepId, Passed)> {
        let mut samples = Vec::new();
        let mut cursor = self.cursor;
        let mut passed = Passed::default();
        loop {
            let steps = self
                .store
                .steps_after(cursor, 256)
                .map_err(|e| TrainerError::Input(format!("reading steps: {e}")))?;
            if steps.is_empty() {
                return Ok((samples, cursor, passed));
            }
            for step in steps {
                let version = step.policy_version.unwrap_or(0).max(0) as u64;
                let trained = self.optimizer.steps();
                if let Some(max) = self.settings.max_staleness
                    && trained.saturating_sub(version) > max
                {
                    tracing::debug!(
                        step = step.id.0,
                        version,
                        trained,
                        "passing over a stale step"
                    );
                    cursor = step.id;
                    passed.stale += 1;
                    continue;
                }
                let turn = match PolicyTurn::of_step(step.response.as_ref()) {
                    Ok(Some(turn)) => turn,
                    Ok(None) => {
                        cursor = step.id;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(step = step.id.0, error = %e, "passing over a step");
                        cursor = step.id;
                        passed.unusable += 1;
                        continue;
                    }
                };
                let verdict = self
                    .store
                    .effective_verdict(step.id)
                    .map_err(|e| TrainerError::Input(format!("reading a verdict: {e}")))?;
                let Some(verdict) = verdict else {
                    if self.never_judged(&step)? {
                        cursor = step.id;
                        continue;
                    }
                    // A step its judge gave up on would hold the trainer here for good.
                    let unjudgeable = self
                        .store
                        .unjudgeable(step.id)
                        .map_err(|e| TrainerError::Input(format!("reading judging: {e}")))?;
                    if let Some(why) = unjudgeable {
                        tracing::warn!(step = step.id.0, %why, "passing over an unjudgeable step");
                        cursor = step.id;
                        passed.unusable += 1;
                        continue;
                    }
                    return Ok((samples, cursor, passed));
                };
                let sample = match training_sample(
                    &turn,
                    self.store,
                    &self.loaded.processor,
                    &self.hints,
                    &verdict,
                ) {
                    Ok(sample) => sample,
                    Err(e @ TrainerError::Input(_)) => {
                        tracing::warn!(step = step.id.0, error = %e, "passing over a step");
                        passed.unusable += 1;
                        cursor = step.id;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                cursor = step.id;
                let method = self.settings.update.advantages.method;
                match sample.filter(|s| match method {
                    Method::BinaryRl => s.reward.is_some(),
                    Method::Opd => !s.teacher_prompts.is_empty(),
                    Method::Combined => true,
                }) {
                    Some(sample) => samples.push(sample),
                    None => passed.no_signal += 1,
                }
                if samples.len() == self.settings.batch {
                    return Ok((samples, cursor, passed));
                }
            }
        }
    }
}

/// The figures as the store keeps them (and the UI plots them).
pub fn metrics_json(m: &UpdateMetrics) -> serde_json::Value {
    serde_json::json!({
        "loss": m.loss,
        "surrogate": m.surrogate,
        "kl_to_base": m.kl_to_base,
        "mean_reward": m.mean_reward,
        "mean_gap": m.mean_gap,
        "hint_overlap": m.hint_overlap,
        "clip_fraction": m.clip_fraction,
        "approx_kl": m.approx_kl,
        "grad_norm": m.grad_norm,
        "lr": m.lr,
        "samples": m.samples,
        "dropped": m.dropped,
        "dropped_no_signal": m.dropped_no_signal,
        "dropped_too_long": m.dropped_too_long,
        "tokens": m.tokens,
        "tokens_per_second": m.tokens_per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_choices_are_the_loops_defaults_but_for_staleness() {
        let from_choices = LearningChoices::default().train_loop("main");
        assert_eq!(
            from_choices,
            TrainLoopSettings {
                max_staleness: Some(8),
                ..TrainLoopSettings::default()
            }
        );
    }

    #[test]
    fn every_choice_reaches_the_loop() {
        let choices = LearningChoices {
            method: Method::Opd,
            w_rl: 0.25,
            w_opd: 2.0,
            opd_form: crate::OpdForm::TopK { k: 8 },
            opd_clip: None,
            lr: 3e-4,
            batch: 4,
            checkpoint_every: 7,
            max_staleness: None,
        };
        let s = choices.train_loop("gym");
        assert_eq!(s.run, "gym");
        assert_eq!(s.update.advantages.method, Method::Opd);
        assert_eq!(
            (s.update.advantages.w_rl, s.update.advantages.w_opd),
            (0.25, 2.0)
        );
        assert_eq!(
            (s.update.advantages.opd_form, s.update.advantages.opd_clip),
            (crate::OpdForm::TopK { k: 8 }, None)
        );
        assert_eq!(s.schedule, Schedule::Constant { lr: 3e-4 });
        assert_eq!((s.batch, s.checkpoint_every, s.max_staleness), (4, 7, None));
    }
}
