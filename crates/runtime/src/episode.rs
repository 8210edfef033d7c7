//! The agent's episode: observe, ask the policy, parse its reply in the model's action format,
//! act through the guard, wait for the screen to settle, observe again, and commit the step —
//! with the policy turn (prompt messages, image blobs, generated tokens and their
//! log-probabilities) and the adapter version that produced it, so the judge and the trainer
//! can take it from the store while the agent goes on.
//!
//! An episode ends when the model terminates, at the step limit, at the stop key, when the
//! model hands over to the person, or when it repeats itself on an unchanged screen and the
//! supervisor (the person, in the app) says to stop.

use std::time::{Duration, Instant};

use clawdesk_agent::turn::PolicyTurn;
use clawdesk_agent::{
    ActionFormat, AgentAction, AgentError, AgentPrompts, Frame, PastStep, Policy, PolicyRequest,
    Reply, conversation, practice_conversation, practice_elements,
};
use clawdesk_desktop::{
    Action, Desktop, DesktopError, NormPoint, Observation, ObserveOptions, blocking,
};
use clawdesk_judge::{PersonAnswer, person_verdict};
use clawdesk_model::ModelError;
use clawdesk_model::chat::computer_use_tool;
use clawdesk_model::generate::Sampling;
use clawdesk_store::{
    BlobId, BlobKind, EpisodeId, EpisodeStatus, NewEpisode, NewStep, StepId, StepOutcome, Store,
    now_ms,
};
use image::DynamicImage;

use crate::RuntimeError;
use crate::persist::{SavedObservation, save_observation};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub instruction: String,
    /// The app the episode is about (its tree is read, the episode is filed under it).
    pub app: Option<String>,
    pub format: ActionFormat,
    pub max_steps: usize,
    /// Past screenshots (with their replies) kept in the prompt; older steps become one line.
    pub window: usize,
    pub sampling: Sampling,
    pub settle: Settle,
    /// The same action on an unchanged screen this many times in a row asks the supervisor.
    pub loop_repeats: usize,
    pub observe: ObserveOptions,
}

impl AgentSettings {
    /// The defaults of the OpenClaw-RL GUI track: two past screenshots, 30 steps, temperature 1.
    pub fn new(instruction: impl Into<String>) -> Self {
        AgentSettings {
            instruction: instruction.into(),
            app: None,
            format: ActionFormat::Qwen3Vl,
            max_steps: 30,
            window: 2,
            sampling: Sampling {
                temperature: 1.0,
                max_tokens: 512,
                ..Sampling::default()
            },
            settle: Settle::default(),
            loop_repeats: 3,
            observe: ObserveOptions::default(),
        }
    }
}

/// Waiting for the screen to settle after an action: until two captures in a row are the
/// same, or the limit.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    pub poll: Duration,
    pub limit: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            poll: Duration::from_millis(150),
            limit: Duration::from_secs(3),
        }
    }
}

/// The person's hold on a running agent: whether it may take its next step, and what to do
/// when it seems stuck. The app's implementation asks the person; headless runs stop.
pub trait Supervisor: Send + Sync {
    /// The agent did `action` `repeats` times in a row and the screen did not change.
    fn go_on_after_loop(&self, action: &str, repeats: usize) -> bool;

    /// While this is true the agent waits before its next step (pause); the stop key still
    /// ends the episode.
    fn paused(&self) -> bool {
        false
    }

    /// An action the person takes in the agent's place for the next step (takeover). It runs
    /// through the guard and is stored as a step with the person's correction, and the model
    /// sees it in its history.
    fn take_over(&self) -> Option<Action> {
        None
    }

    /// A step was committed to the store (the app shows it, and records a person's verdict
    /// given while it ran).
    fn step_done(&self, _report: &StepReport) {}
}

/// Stops at the first loop: for runs with nobody to ask.
pub struct StopOnLoop;

impl Supervisor for StopOnLoop {
    fn go_on_after_loop(&self, _action: &str, _repeats: usize) -> bool {
        false
    }
}

/// A pause switch a person (or a test) flips from another task, and a slot for actions they
/// take over with; stops at loops.
#[derive(Debug, Default)]
pub struct PauseSwitch {
    paused: std::sync::atomic::AtomicBool,
    takeovers: std::sync::Mutex<std::collections::VecDeque<Action>>,
}

impl PauseSwitch {
    /// Queues an action for the agent's next step, in the model's place.
    pub fn take_over_with(&self, action: Action) {
        if let Ok(mut queue) = self.takeovers.lock() {
            queue.push_back(action);
        }
    }

    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Supervisor for PauseSwitch {
    fn go_on_after_loop(&self, _action: &str, _repeats: usize) -> bool {
        false
    }

    fn paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn take_over(&self) -> Option<Action> {
        self.takeovers.lock().ok()?.pop_front()
    }
}

/// Why an episode ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    Terminated {
        success: bool,
    },
    StepLimit,
    StopKey,
    /// The model asked for the person.
    HandedOver,
    /// Repeating itself on an unchanged screen; the supervisor said stop.
    Loop {
        action: String,
        repeats: usize,
    },
}

/// How an episode went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentSummary {
    pub episode: i64,
    pub status: EpisodeStatus,
    pub ended: EndReason,
    pub steps: usize,
    pub executed: usize,
    pub invalid: usize,
    pub refused: usize,
    /// Steps the person took in the model's place.
    pub taken_over: usize,
    /// The adapter version of each step's reply, in order (`None`: the base model).
    pub versions: Vec<Option<i64>>,
    pub answer: Option<String>,
}

/// What one committed step did, for progress reports.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The stored step, for verdicts given on it at once (a person's reject in approve mode).
    pub step: StepId,
    pub index: usize,
    pub outcome: StepOutcome,
    pub reply: String,
    pub version: Option<i64>,
    pub generate_seconds: f64,
    pub step_seconds: f64,
}

/// Runs one episode of the agent on `desktop`, committing every step to `store`.
pub async fn run_agent(
    desktop: &Desktop,
    store: &Store,
    policy: &Policy,
    prompts: &AgentPrompts,
    settings: &AgentSettings,
    supervisor: &dyn Supervisor,
    mut progress: impl FnMut(&StepReport),
) -> Result<AgentSummary, RuntimeError> {
    let mut observe = settings.observe.clone();
    if observe.app.is_none() {
        observe.app = settings.app.clone();
    }
    let episode = store.begin_episode(&NewEpisode {
        task: settings.instruction.clone(),
        app: settings.app.clone(),
    })?;
    let mut summary = AgentSummary {
        episode: episode.0,
        status: EpisodeStatus::Running,
        ended: EndReason::StepLimit,
        steps: 0,
        executed: 0,
        invalid: 0,
        refused: 0,
        taken_over: 0,
        versions: Vec::new(),
        answer: None,
    };
    let run = Run {
        desktop,
        store,
        policy,
        prompts,
        settings,
        supervisor,
        observe: &observe,
        episode,
    };
    let result = run.steps(&mut summary, &mut progress).await;
    let (status, note) = match &result {
        Ok(EndReason::Terminated { success: true }) => (EpisodeStatus::Done, None),
        Ok(EndReason::Terminated { success: false }) => (
            EpisodeStatus::Failed,
            Some("the model gave up on the task".to_owned()),
        ),
        Ok(EndReason::StepLimit) => (
            EpisodeStatus::Failed,
            Some(format!("no end after {} steps", settings.max_steps)),
        ),
        Ok(EndReason::StopKey) => (
            EpisodeStatus::Stopped,
            Some("halted by the stop key".to_owned()),
        ),
        Ok(EndReason::HandedOver) => (
            EpisodeStatus::Stopped,
            Some("the model asked for the person".to_owned()),
        ),
        Ok(EndReason::Loop { action, repeats }) => (
            EpisodeStatus::Stopped,
            Some(format!(
                "stopped in a loop: {action} {repeats} times on an unchanged screen"
            )),
        ),
        Err(e) => (EpisodeStatus::Failed, Some(e.to_string())),
    };
    store.finish_episode(episode, status, note.as_deref())?;
    summary.status = status;
    summary.ended = result?;
    Ok(summary)
}

struct Run<'a> {
    desktop: &'a Desktop,
    store: &'a Store,
    policy: &'a Policy,
    prompts: &'a AgentPrompts,
    settings: &'a AgentSettings,
    supervisor: &'a dyn Supervisor,
    observe: &'a ObserveOptions,
    episode: EpisodeId,
}

/// What a step did, for [`Run::commit`].
struct Done {
    action: serde_json::Value,
    /// The policy turn, for a model's step.
    response: Option<serde_json::Value>,
    version: Option<i64>,
    outcome: StepOutcome,
    error: Option<String>,
    started_at_ms: i64,
}

/// Who chose a step's action: the model's goes to the approver in approve mode, the person's
/// (a takeover) does not go back to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    Model,
    Person,
}

/// A past step as the loop keeps it: what the prompt needs, and its screenshot while the
/// prompt may still show it.
struct Kept {
    past: PastStep,
    /// Dropped once the step is older than the prompt's window of screenshots: an episode
    /// would otherwise hold every full screenshot it took.
    image: Option<DynamicImage>,
    blob: BlobId,
}

/// Adds a past step, and lets go of the screenshots no prompt will show again (the prompt
/// shows at most `window` past ones).
fn keep(kept: &mut Vec<Kept>, step: Kept, window: usize) {
    kept.push(step);
    if let Some(old) = kept.len().checked_sub(window + 1) {
        kept[old].image = None;
    }
}

impl Run<'_> {
    async fn steps(
        &self,
        summary: &mut AgentSummary,
        progress: &mut impl FnMut(&StepReport),
    ) -> Result<EndReason, RuntimeError> {
        let settings = self.settings;
        let mut before = self.desktop.observe(self.observe).await?;
        let mut before_saved = blocking(|| save_observation(self.store, &before))?;
        let mut kept: Vec<Kept> = Vec::new();
        let mut pointer: Option<NormPoint> = None;
        let mut last_key: Option<String> = None;
        let mut repeats = 0usize;
        for index in 0..settings.max_steps {
            let mut announced = false;
            while self.supervisor.paused() && !self.desktop.stop_flag().is_stopped() {
                if !announced {
                    tracing::info!(step = index, "paused");
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.desktop.stop_flag().is_stopped() {
                return Ok(EndReason::StopKey);
            }
            if announced {
                // The screen may have changed while the agent waited.
                before = self.desktop.observe(self.observe).await?;
                before_saved = blocking(|| save_observation(self.store, &before))?;
            }
            let started = Instant::now();
            let started_at_ms = now_ms();
            let current = DynamicImage::ImageRgba8(before.screenshot.image.clone()).to_rgb8();
            let current = DynamicImage::ImageRgb8(current);
            if let Some(action) = self.supervisor.take_over() {
                let (outcome, error, end) = self
                    .act(
                        &Reply {
                            thought: None,
                            actions: vec![action.clone().into()],
                        },
                        &before,
                        &mut pointer,
                        Actor::Person,
                    )
                    .await;
                if outcome == StepOutcome::Executed {
                    self.settle().await;
                }
                let after = self.desktop.observe(self.observe).await?;
                let after_saved = blocking(|| save_observation(self.store, &after))?;
                let action_json = serde_json::to_value(&action).unwrap_or_default();
                let step = self.commit(
                    index,
                    &before_saved,
                    &after_saved,
                    Done {
                        action: action_json.clone(),
                        response: None,
                        version: None,
                        outcome,
                        error,
                        started_at_ms,
                    },
                )?;
                // The person's action is what should have been done here: their correction.
                self.store.add_verdict(&person_verdict(
                    step,
                    &PersonAnswer {
                        approve: true,
                        correction: Some(action_json),
                        hint: None,
                    },
                ))?;
                summary.steps += 1;
                summary.taken_over += 1;
                summary.versions.push(None);
                let report = StepReport {
                    step,
                    index,
                    outcome,
                    reply: String::new(),
                    version: None,
                    generate_seconds: 0.0,
                    step_seconds: started.elapsed().as_secs_f64(),
                };
                progress(&report);
                self.supervisor.step_done(&report);
                if let Some(end) = end {
                    return Ok(end);
                }
                keep(
                    &mut kept,
                    Kept {
                        past: PastStep {
                            reply: format!("(the person acted: {})", action.describe()),
                            summary: format!("the person: {}", action.describe()),
                        },
                        image: Some(current),
                        blob: before_saved.image.clone(),
                    },
                    settings.window,
                );
                last_key = None;
                repeats = 0;
                before = after;
                before_saved = after_saved;
                continue;
            }
            let past: Vec<PastStep> = kept.iter().map(|k| k.past.clone()).collect();
            let surface = &before.screenshot.surface;
            let tools = match settings.format {
                ActionFormat::Qwen3Vl | ActionFormat::Qwen25Vl => {
                    vec![computer_use_tool(surface.width, surface.height)?]
                }
                _ => Vec::new(),
            };
            let mut sampling = settings.sampling.clone();
            sampling.seed = sampling.seed.wrapping_add(index as u64);
            // A prompt too long for the model's context keeps fewer past screenshots (their
            // steps stay listed in words), then lists fewer old steps, rather than ending the
            // episode.
            let (mut window, mut listed) = (settings.window, past.len());
            let (generated, messages, blobs) = if settings.format == ActionFormat::Practice {
                // The practice base reads one screen and its elements, as in the gym.
                let elements = before
                    .tree
                    .as_ref()
                    .map(|t| practice_elements(t, surface.width, surface.height))
                    .unwrap_or_default();
                let messages =
                    practice_conversation(self.prompts, &settings.instruction, &elements)?;
                // The image the model reads is stored as it read it, for the trainer.
                let small = crate::practice_window::practice_image(&current);
                let blob = blocking(|| -> Result<BlobId, RuntimeError> {
                    let png = clawdesk_desktop::observe::encode_png(&small.to_rgba8())?;
                    Ok(self.store.put_blob(&png, BlobKind::Png)?)
                })?;
                let request =
                    PolicyRequest::new(messages.clone(), Vec::new(), vec![small], sampling.clone());
                let generated = self.policy.generate(request).await?;
                (generated, messages, vec![blob])
            } else {
                loop {
                    let (messages, kept_now) =
                        conversation(self.prompts, &settings.instruction, &past, window, listed)?;
                    let recent = &kept[kept.len() - kept_now..];
                    // `kept_now` is at most the window, whose screenshots are all still held.
                    let mut images: Vec<DynamicImage> =
                        recent.iter().filter_map(|k| k.image.clone()).collect();
                    images.push(current.clone());
                    let mut blobs: Vec<BlobId> = recent.iter().map(|k| k.blob.clone()).collect();
                    blobs.push(before_saved.image.clone());
                    let request = PolicyRequest::new(
                        messages.clone(),
                        tools.clone(),
                        images,
                        sampling.clone(),
                    );
                    match self.policy.generate(request).await {
                        Ok(generated) => break (generated, messages, blobs),
                        Err(AgentError::Model(ModelError::ContextOverflow { tokens, limit }))
                            if kept_now > 0 || listed > 0 =>
                        {
                            tracing::warn!(
                                tokens,
                                limit,
                                window = kept_now,
                                listed,
                                "prompt too long"
                            );
                            if kept_now > 0 {
                                window = kept_now - 1;
                            } else {
                                listed /= 2;
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let frame = Frame {
                image: generated.image_size,
                screen: (surface.width, surface.height),
                pointer,
            };
            let parsed = settings.format.parse(&generated.text, &frame);
            let mut ended = None;
            let (outcome, error, action_json, key) = match &parsed {
                Err(e) => (
                    StepOutcome::Invalid,
                    Some(e.to_string()),
                    serde_json::json!({"invalid": e.to_string(), "reply": generated.text}),
                    format!("invalid: {}", generated.text.trim()),
                ),
                Ok(reply) => {
                    let (outcome, error, end) =
                        self.act(reply, &before, &mut pointer, Actor::Model).await;
                    ended = end;
                    if let Some(AgentAction::Answer { text }) = reply
                        .actions
                        .iter()
                        .find(|a| matches!(a, AgentAction::Answer { .. }))
                    {
                        summary.answer = Some(text.clone());
                    }
                    let json = action_json(reply);
                    let key = json.to_string();
                    (outcome, error, json, key)
                }
            };
            if outcome == StepOutcome::Executed {
                self.settle().await;
            }
            let after = self.desktop.observe(self.observe).await?;
            let after_saved = blocking(|| save_observation(self.store, &after))?;
            let turn = PolicyTurn {
                messages,
                images: blobs,
                tools,
                text: generated.text.clone(),
                tokens: generated.tokens.clone(),
                logprobs: generated.logprobs.clone(),
            };
            let step = self.commit(
                index,
                &before_saved,
                &after_saved,
                Done {
                    action: action_json,
                    response: Some(turn.to_json()),
                    version: generated.version,
                    outcome,
                    error,
                    started_at_ms,
                },
            )?;
            summary.steps += 1;
            summary.versions.push(generated.version);
            match outcome {
                StepOutcome::Executed => summary.executed += 1,
                StepOutcome::Invalid => summary.invalid += 1,
                StepOutcome::Refused => summary.refused += 1,
                _ => {}
            }
            let report = StepReport {
                step,
                index,
                outcome,
                reply: generated.text.clone(),
                version: generated.version,
                generate_seconds: generated.seconds,
                step_seconds: started.elapsed().as_secs_f64(),
            };
            progress(&report);
            self.supervisor.step_done(&report);
            if let Some(end) = ended {
                return Ok(end);
            }
            // The same action again on a screen it did not change.
            let unchanged = after_saved.image == before_saved.image;
            if unchanged && last_key.as_deref() == Some(key.as_str()) {
                repeats += 1;
            } else {
                repeats = 1;
            }
            last_key = Some(key.clone());
            if repeats >= settings.loop_repeats.max(2) {
                tracing::warn!(action = %key, repeats, "the agent repeats itself");
                if !self.supervisor.go_on_after_loop(&key, repeats) {
                    return Ok(EndReason::Loop {
                        action: key,
                        repeats,
                    });
                }
                repeats = 0;
            }
            let summary_line = match &parsed {
                Ok(reply) => describe(reply),
                Err(e) => format!("(invalid reply: {e})"),
            };
            keep(
                &mut kept,
                Kept {
                    past: PastStep {
                        reply: generated.text,
                        summary: summary_line,
                    },
                    image: Some(current),
                    blob: before_saved.image.clone(),
                },
                settings.window,
            );
            before = after;
            before_saved = after_saved;
        }
        Ok(EndReason::StepLimit)
    }

    /// Commits step `index` between two saved observations.
    fn commit(
        &self,
        index: usize,
        before: &SavedObservation,
        after: &SavedObservation,
        done: Done,
    ) -> Result<StepId, RuntimeError> {
        Ok(self.store.insert_step(&NewStep {
            episode: self.episode,
            index: index as u32,
            before_image: before.image.clone(),
            after_image: Some(after.image.clone()),
            before_tree: before.tree.clone(),
            after_tree: after.tree.clone(),
            surface: before.surface.clone(),
            action: done.action,
            response: done.response,
            policy_version: done.version,
            outcome: done.outcome,
            error: done.error,
            started_at_ms: done.started_at_ms,
            ended_at_ms: now_ms(),
        })?)
    }

    /// Runs a reply's actions in order through the guard. Returns the step's outcome, the
    /// error, and the end of the episode when the reply ends it.
    async fn act(
        &self,
        reply: &Reply,
        before: &Observation,
        pointer: &mut Option<NormPoint>,
        by: Actor,
    ) -> (StepOutcome, Option<String>, Option<EndReason>) {
        for action in &reply.actions {
            match action {
                AgentAction::Desktop { action } => match match by {
                    Actor::Model => {
                        self.desktop
                            .act_explained(action, before, reply.thought.as_deref())
                            .await
                    }
                    Actor::Person => self.desktop.act_for_person(action, before).await,
                } {
                    Ok(()) => *pointer = action.points().last().copied().or(*pointer),
                    Err(e) if e.is_stop() => {
                        return (
                            StepOutcome::Stopped,
                            Some("halted by the stop key".into()),
                            Some(EndReason::StopKey),
                        );
                    }
                    Err(DesktopError::Refused(r)) => {
                        return (StepOutcome::Refused, Some(r.to_string()), None);
                    }
                    Err(e) => return (StepOutcome::Failed, Some(e.to_string()), None),
                },
                AgentAction::Terminate { success } => {
                    return (
                        StepOutcome::Executed,
                        None,
                        Some(EndReason::Terminated { success: *success }),
                    );
                }
                AgentAction::CallUser => {
                    return (StepOutcome::Executed, None, Some(EndReason::HandedOver));
                }
                AgentAction::Answer { .. } => {}
            }
        }
        (StepOutcome::Executed, None, None)
    }

    /// Waits until two screenshots in a row are the same, or the limit.
    async fn settle(&self) {
        let Settle { poll, limit } = self.settings.settle;
        let start = Instant::now();
        let quick = ObserveOptions {
            skip_tree: true,
            ..self.observe.clone()
        };
        let mut last: Option<blake3::Hash> = None;
        while start.elapsed() < limit {
            tokio::time::sleep(poll).await;
            let Ok(seen) = self.desktop.observe(&quick).await else {
                return;
            };
            let hash = blake3::hash(seen.screenshot.image.as_raw());
            if last == Some(hash) {
                return;
            }
            last = Some(hash);
        }
        tracing::debug!(?limit, "the screen did not settle");
    }
}

/// The action column: the one desktop action in its internal form when the reply has just
/// that (what the judge describes best), else the whole parsed reply.
fn action_json(reply: &Reply) -> serde_json::Value {
    match reply.actions.as_slice() {
        [AgentAction::Desktop { action }] => serde_json::to_value(action),
        _ => serde_json::to_value(reply),
    }
    .unwrap_or(serde_json::Value::Null)
}

/// One line for the prompt's list of earlier steps.
fn describe(reply: &Reply) -> String {
    let actions: Vec<String> = reply
        .actions
        .iter()
        .map(|a| match a {
            AgentAction::Desktop { action } => action.describe(),
            AgentAction::Terminate { success } => format!("terminate ({success})"),
            AgentAction::Answer { text } => format!("answer {text:?}"),
            AgentAction::CallUser => "ask the person".into(),
        })
        .collect();
    match &reply.thought {
        Some(t) => format!("{t} ({})", actions.join("; ")),
        None => actions.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 26: an episode holds only the screenshots its prompt can still show.
    #[test]
    fn only_the_windows_screenshots_are_held() {
        let mut kept = Vec::new();
        for i in 0..5u8 {
            let image =
                DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([i, i, i])));
            let step = Kept {
                past: PastStep {
                    reply: format!("reply {i}"),
                    summary: format!("step {i}"),
                },
                image: Some(image),
                blob: BlobId::of(&[i], clawdesk_store::BlobKind::Png),
            };
            keep(&mut kept, step, 2);
        }
        let held: Vec<bool> = kept.iter().map(|k| k.image.is_some()).collect();
        assert_eq!(held, [false, false, false, true, true]);
        assert_eq!(kept.len(), 5, "every step stays listed in words");
    }
}
