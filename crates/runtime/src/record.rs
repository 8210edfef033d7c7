//! Running a script as a recorded episode: observe, act through the guard, observe again,
//! and commit the step before the next one starts.
//!
//! Each step is committed as soon as it is complete, so a process killed mid-episode loses at
//! most the step in flight. The after-observation of one step is the before-observation of
//! the next, as in OpenClaw-RL, where a step's next state is what the policy sees next.

use std::time::Duration;

use clawdesk_desktop::{Desktop, DesktopError, ObserveOptions, Refusal, blocking};
use clawdesk_store::{EpisodeId, EpisodeStatus, NewEpisode, NewStep, StepOutcome, Store, now_ms};

use crate::RuntimeError;
use crate::persist::save_observation;
use crate::script::{Script, resolve_step};

/// How to run a script.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// How long to let the app react before the after-screenshot.
    pub settle: Duration,
    /// What each observation captures; the app to read defaults to the script's.
    pub observe: ObserveOptions,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            settle: Duration::from_millis(250),
            observe: ObserveOptions::default(),
        }
    }
}

/// How a recorded episode went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordSummary {
    /// The episode's id in the store.
    pub episode: i64,
    /// How the episode ended: done, stopped by the stop key, or failed.
    pub status: EpisodeStatus,
    /// Steps committed to the store, whatever their outcome.
    pub steps: usize,
    /// Steps whose action was carried out.
    pub executed: usize,
    /// Steps the guard refused; the script goes on after most refusals.
    pub refused: usize,
    /// Why the episode stopped or failed; `None` when it ran to the end.
    pub note: Option<String>,
}

/// Runs `script` on `desktop`, recording every step into `store`. `progress` hears of each
/// committed step (index, outcome).
pub async fn record(
    desktop: &Desktop,
    store: &Store,
    script: &Script,
    options: &RecordOptions,
    mut progress: impl FnMut(usize, StepOutcome),
) -> Result<RecordSummary, RuntimeError> {
    let mut observe = options.observe.clone();
    if observe.app.is_none() {
        observe.app = script.app.clone();
    }
    let episode = store.begin_episode(&NewEpisode {
        task: script.task.clone(),
        app: script.app.clone(),
    })?;
    let mut summary = RecordSummary {
        episode: episode.0,
        status: EpisodeStatus::Running,
        steps: 0,
        executed: 0,
        refused: 0,
        note: None,
    };
    let result = run_steps(
        desktop,
        store,
        script,
        options,
        &observe,
        episode,
        &mut summary,
        &mut progress,
    )
    .await;
    let (status, note) = match &result {
        Ok(()) => (EpisodeStatus::Done, None),
        Err(RuntimeError::Desktop(e)) if e.is_stop() => (
            EpisodeStatus::Stopped,
            Some("halted by the stop key".to_owned()),
        ),
        Err(e) => (EpisodeStatus::Failed, Some(e.to_string())),
    };
    store.finish_episode(episode, status, note.as_deref())?;
    summary.status = status;
    summary.note = note;
    // A stop is how a person ends an episode early, not a failure of the run.
    match result {
        Ok(()) => Ok(summary),
        Err(RuntimeError::Desktop(e)) if e.is_stop() => Ok(summary),
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_steps(
    desktop: &Desktop,
    store: &Store,
    script: &Script,
    options: &RecordOptions,
    observe: &ObserveOptions,
    episode: EpisodeId,
    summary: &mut RecordSummary,
    progress: &mut impl FnMut(usize, StepOutcome),
) -> Result<(), RuntimeError> {
    let mut before = desktop.observe(observe).await?;
    let mut before_saved = blocking(|| save_observation(store, &before))?;
    for (index, step) in script.steps.iter().enumerate() {
        desktop.stop_flag().check()?;
        let started_at_ms = now_ms();
        let action = resolve_step(index, step, &before)?;
        tracing::info!(step = index, action = %action.describe(), "acting");
        let acted = desktop.act(&action, &before).await;
        let (outcome, error) = match &acted {
            Ok(()) => (StepOutcome::Executed, None),
            Err(e) if e.is_stop() => (
                StepOutcome::Stopped,
                Some("halted by the stop key".to_owned()),
            ),
            Err(DesktopError::Refused(r)) => (StepOutcome::Refused, Some(r.to_string())),
            Err(e) => (StepOutcome::Failed, Some(e.to_string())),
        };
        if outcome == StepOutcome::Executed {
            tokio::time::sleep(options.settle).await;
        }
        let after = desktop.observe(observe).await?;
        let after_saved = blocking(|| save_observation(store, &after))?;
        store.insert_step(&NewStep {
            episode,
            index: index as u32,
            before_image: before_saved.image.clone(),
            after_image: Some(after_saved.image.clone()),
            before_tree: before_saved.tree.clone(),
            after_tree: after_saved.tree.clone(),
            surface: before_saved.surface.clone(),
            action: serde_json::to_value(&action).unwrap_or_default(),
            response: None,
            policy_version: None,
            outcome,
            error,
            started_at_ms,
            ended_at_ms: now_ms(),
        })?;
        summary.steps += 1;
        match outcome {
            StepOutcome::Executed => summary.executed += 1,
            StepOutcome::Refused => summary.refused += 1,
            _ => {}
        }
        progress(index, outcome);
        match acted {
            // A refused step is recorded and the script goes on; the stop and the step limit
            // end it.
            Err(e @ DesktopError::Refused(Refusal::Stopped | Refusal::StepLimit { .. })) => {
                return Err(e.into());
            }
            Ok(()) | Err(DesktopError::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
        before = after;
        before_saved = after_saved;
    }
    Ok(())
}
