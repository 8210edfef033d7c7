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
    ActionFormat, AgentAction, AgentError, AgentPrompts, Frame, Generated, PastStep, Policy,
    PolicyRequest, Reply, conversation, practice_conversation, practice_elements,
};
use clawdesk_desktop::{
    Action, Desktop, DesktopError, NormPoint, Observation, ObserveOptions, blocking,
};
use clawdesk_judge::{PersonAnswer, person_verdict};
use clawdesk_model::ModelError;
use clawdesk_model::chat::{Message, computer_use_tool};
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
    /// What the person asked the agent to do, as the prompt words it.
    pub instruction: String,
    /// The app the episode is about (its tree is read, the episode is filed under it).
    pub app: Option<String>,
    /// The action format the model writes and its replies are parsed in.
    pub format: ActionFormat,
    /// Steps before the episode ends unfinished.
    pub max_steps: usize,
    /// Past screenshots (with their replies) kept in the prompt; older steps become one line.
    pub window: usize,
    /// How replies are sampled; the seed moves on by one each step.
    pub sampling: Sampling,
    /// How long to wait for the screen after an action.
    pub settle: Settle,
    /// The same action on an unchanged screen this many times in a row asks the supervisor.
    pub loop_repeats: usize,
    /// What each observation reads (the app's tree, a capture backend).
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
    /// Time between captures.
    pub poll: Duration,
    /// The longest wait, after which the step goes on with the screen as it is.
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

    /// Holds the agent before its next step.
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets a paused agent go on.
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
    /// The model said the task is over.
    Terminated {
        /// Whether the model said it succeeded.
        success: bool,
    },
    /// The step limit came first.
    StepLimit,
    /// A person pressed the stop key.
    StopKey,
    /// The model asked for the person.
    HandedOver,
    /// Repeating itself on an unchanged screen; the supervisor said stop.
    Loop {
        /// The repeated action, as stored.
        action: String,
        /// How many times in a row it was taken.
        repeats: usize,
    },
}

/// How an episode went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentSummary {
    /// The stored episode's id.
    pub episode: i64,
    /// How the episode was filed when it ended.
    pub status: EpisodeStatus,
    /// Why it ended.
    pub ended: EndReason,
    /// Steps committed, the person's included.
    pub steps: usize,
    /// The model's steps whose actions all ran.
    pub executed: usize,
    /// The model's replies that held no action in its format.
    pub invalid: usize,
    /// The model's steps the guard refused.
    pub refused: usize,
    /// Steps the person took in the model's place.
    pub taken_over: usize,
    /// The adapter version of each step's reply, in order (`None`: the base model).
    pub versions: Vec<Option<i64>>,
    /// The model's answer to a question, when it gave one.
    pub answer: Option<String>,
}

/// What one committed step did, for progress reports.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The stored step, for verdicts given on it at once (a person's reject in approve mode).
    pub step: StepId,
    /// The step's place in the episode, from 0.
    pub index: usize,
    /// What became of its action.
    pub outcome: StepOutcome,
    /// The model's reply (empty for the person's step).
    pub reply: String,
    /// The adapter version that wrote the reply (`None`: the base model, or the person).
    pub version: Option<i64>,
    /// Time the policy took to reply, in seconds.
    pub generate_seconds: f64,
    /// The whole step, from its start to its commit, in seconds.
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

/// The screenshot as the policy sees it: RGB, the alpha channel dropped.
fn screen_as_rgb(observation: &Observation) -> DynamicImage {
    let rgba = DynamicImage::ImageRgba8(observation.screenshot.image.clone());
    DynamicImage::ImageRgb8(rgba.to_rgb8())
}

/// Adds a past step, and lets go of the screenshots no prompt will show again (the prompt
/// shows at most `window` past ones).
fn keep(kept: &mut Vec<Kept>, step: Kept, window: usize) {
    kept.push(step);
    if let Some(old) = kept.len().checked_sub(window + 1) {
        kept[old].image = None;
    }
}

/// Where an episode stands between steps: the screen the next step starts from, the past
/// steps the prompt shows, the pointer's last known place, and what loop detection remembers.
struct Cursor {
    before: Observation,
    before_saved: SavedObservation,
    kept: Vec<Kept>,
    pointer: Option<NormPoint>,
    last_key: Option<String>,
    repeats: usize,
}

impl Cursor {
    /// Moves on to the step's after-screen, keeping the step for later prompts.
    fn advance(
        &mut self,
        after: Observation,
        after_saved: SavedObservation,
        past: PastStep,
        image: DynamicImage,
        window: usize,
    ) {
        let blob = self.before_saved.image.clone();
        keep(
            &mut self.kept,
            Kept {
                past,
                image: Some(image),
                blob,
            },
            window,
        );
        self.before = after;
        self.before_saved = after_saved;
    }
}

/// One generation with what it was asked: the prompt's messages, its images as blobs and its
/// tool schemas, all of which the stored policy turn keeps.
struct Asked {
    generated: Generated,
    messages: Vec<Message>,
    blobs: Vec<BlobId>,
    tools: Vec<serde_json::Value>,
}

impl Run<'_> {
    async fn steps(
        &self,
        summary: &mut AgentSummary,
        progress: &mut impl FnMut(&StepReport),
    ) -> Result<EndReason, RuntimeError> {
        let before = self.desktop.observe(self.observe).await?;
        let before_saved = blocking(|| save_observation(self.store, &before))?;
        let mut at = Cursor {
            before,
            before_saved,
            kept: Vec::new(),
            pointer: None,
            last_key: None,
            repeats: 0,
        };
        for index in 0..self.settings.max_steps {
            if self.wait_while_paused(index, &mut at).await? {
                return Ok(EndReason::StopKey);
            }
            let end = match self.supervisor.take_over() {
                Some(action) => {
                    self.person_step(index, action, &mut at, summary, progress)
                        .await?
                }
                None => self.model_step(index, &mut at, summary, progress).await?,
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
        Ok(EndReason::StepLimit)
    }

    /// Waits while the supervisor pauses the agent, observing again after a pause (the screen
    /// may have changed meanwhile). True when the stop key was pressed.
    async fn wait_while_paused(&self, index: usize, at: &mut Cursor) -> Result<bool, RuntimeError> {
        let mut announced = false;
        while self.supervisor.paused() && !self.desktop.stop_flag().is_stopped() {
            if !announced {
                tracing::info!(step = index, "paused");
                announced = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.desktop.stop_flag().is_stopped() {
            return Ok(true);
        }
        if announced {
            at.before = self.desktop.observe(self.observe).await?;
            at.before_saved = blocking(|| save_observation(self.store, &at.before))?;
        }
        Ok(false)
    }

    /// A step the person took over: their action runs, is stored as the step and as their
    /// correction (what should have been done here), and the prompt lists it as theirs.
    async fn person_step(
        &self,
        index: usize,
        action: Action,
        at: &mut Cursor,
        summary: &mut AgentSummary,
        progress: &mut impl FnMut(&StepReport),
    ) -> Result<Option<EndReason>, RuntimeError> {
        let started = Instant::now();
        let started_at_ms = now_ms();
        let current = screen_as_rgb(&at.before);
        let reply = Reply {
            thought: None,
            actions: vec![action.clone().into()],
        };
        let (outcome, error, end) = self
            .act(&reply, &at.before, &mut at.pointer, Actor::Person)
            .await;
        let action_json = serde_json::to_value(&action).unwrap_or_default();
        let done = Done {
            action: action_json.clone(),
            response: None,
            version: None,
            outcome,
            error,
            started_at_ms,
        };
        let (step, after, after_saved) = self
            .observe_and_commit(index, &at.before_saved, done, summary)
            .await?;
        self.store.add_verdict(&person_verdict(
            step,
            &PersonAnswer {
                approve: true,
                correction: Some(action_json),
                hint: None,
            },
        ))?;
        summary.taken_over += 1;
        self.announce(
            &StepReport {
                step,
                index,
                outcome,
                reply: String::new(),
                version: None,
                generate_seconds: 0.0,
                step_seconds: started.elapsed().as_secs_f64(),
            },
            progress,
        );
        if end.is_some() {
            return Ok(end);
        }
        let past = PastStep {
            reply: format!("(the person acted: {})", action.describe()),
            summary: format!("the person: {}", action.describe()),
        };
        at.advance(after, after_saved, past, current, self.settings.window);
        at.last_key = None;
        at.repeats = 0;
        Ok(None)
    }

    /// A step of the model's: it is asked, its reply is parsed and run through the guard, and
    /// the step is stored with its policy turn.
    async fn model_step(
        &self,
        index: usize,
        at: &mut Cursor,
        summary: &mut AgentSummary,
        progress: &mut impl FnMut(&StepReport),
    ) -> Result<Option<EndReason>, RuntimeError> {
        let started = Instant::now();
        let started_at_ms = now_ms();
        let current = screen_as_rgb(&at.before);
        let asked = self.ask(index, at, &current).await?;
        let surface = &at.before.screenshot.surface;
        let frame = Frame {
            image: asked.generated.image_size,
            screen: (surface.width, surface.height),
            pointer: at.pointer,
        };
        let text = asked.generated.text.clone();
        let parsed = self.settings.format.parse(&text, &frame);
        let mut ended = None;
        let (outcome, error, action_json, key) = match &parsed {
            Err(e) => (
                StepOutcome::Invalid,
                Some(e.to_string()),
                serde_json::json!({"invalid": e.to_string(), "reply": text}),
                format!("invalid: {}", text.trim()),
            ),
            Ok(reply) => {
                let (outcome, error, end) = self
                    .act(reply, &at.before, &mut at.pointer, Actor::Model)
                    .await;
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
        let version = asked.generated.version;
        let turn = PolicyTurn {
            messages: asked.messages,
            images: asked.blobs,
            tools: asked.tools,
            text: text.clone(),
            tokens: asked.generated.tokens,
            logprobs: asked.generated.logprobs,
        };
        let done = Done {
            action: action_json,
            response: Some(turn.to_json()),
            version,
            outcome,
            error,
            started_at_ms,
        };
        let (step, after, after_saved) = self
            .observe_and_commit(index, &at.before_saved, done, summary)
            .await?;
        match outcome {
            StepOutcome::Executed => summary.executed += 1,
            StepOutcome::Invalid => summary.invalid += 1,
            StepOutcome::Refused => summary.refused += 1,
            _ => {}
        }
        self.announce(
            &StepReport {
                step,
                index,
                outcome,
                reply: text.clone(),
                version,
                generate_seconds: asked.generated.seconds,
                step_seconds: started.elapsed().as_secs_f64(),
            },
            progress,
        );
        if ended.is_some() {
            return Ok(ended);
        }
        // The same action again on a screen it did not change.
        let unchanged = after_saved.image == at.before_saved.image;
        if unchanged && at.last_key.as_deref() == Some(key.as_str()) {
            at.repeats += 1;
        } else {
            at.repeats = 1;
        }
        at.last_key = Some(key.clone());
        if at.repeats >= self.settings.loop_repeats.max(2) {
            let repeats = at.repeats;
            tracing::warn!(action = %key, repeats, "the agent repeats itself");
            if !self.supervisor.go_on_after_loop(&key, repeats) {
                return Ok(Some(EndReason::Loop {
                    action: key,
                    repeats,
                }));
            }
            at.repeats = 0;
        }
        let past = PastStep {
            summary: match &parsed {
                Ok(reply) => describe(reply),
                Err(e) => format!("(invalid reply: {e})"),
            },
            reply: text,
        };
        at.advance(after, after_saved, past, current, self.settings.window);
        Ok(None)
    }

    /// Asks the policy for step `index` on the screen `current`, in the settings' format.
    async fn ask(
        &self,
        index: usize,
        at: &Cursor,
        current: &DynamicImage,
    ) -> Result<Asked, RuntimeError> {
        let settings = self.settings;
        let mut sampling = settings.sampling.clone();
        sampling.seed = sampling.seed.wrapping_add(index as u64);
        if settings.format == ActionFormat::Practice {
            return self.ask_practice(at, current, sampling).await;
        }
        let surface = &at.before.screenshot.surface;
        let tools = match settings.format {
            ActionFormat::Qwen3Vl | ActionFormat::Qwen25Vl => {
                vec![computer_use_tool(surface.width, surface.height)?]
            }
            _ => Vec::new(),
        };
        let past: Vec<PastStep> = at.kept.iter().map(|k| k.past.clone()).collect();
        // A prompt too long for the model's context keeps fewer past screenshots (their steps
        // stay listed in words), then lists fewer old steps, rather than ending the episode.
        let (mut window, mut listed) = (settings.window, past.len());
        loop {
            let (messages, kept_now) = conversation(
                self.prompts,
                settings.format,
                &settings.instruction,
                &past,
                window,
                listed,
            )?;
            let recent = &at.kept[at.kept.len() - kept_now..];
            // `kept_now` is at most the window, whose screenshots are all still held.
            let mut images: Vec<DynamicImage> =
                recent.iter().filter_map(|k| k.image.clone()).collect();
            images.push(current.clone());
            let mut blobs: Vec<BlobId> = recent.iter().map(|k| k.blob.clone()).collect();
            blobs.push(at.before_saved.image.clone());
            let request =
                PolicyRequest::new(messages.clone(), tools.clone(), images, sampling.clone());
            match self.policy.generate(request).await {
                Ok(generated) => {
                    return Ok(Asked {
                        generated,
                        messages,
                        blobs,
                        tools,
                    });
                }
                Err(AgentError::Model(ModelError::ContextOverflow { tokens, limit }))
                    if kept_now > 0 || listed > 0 =>
                {
                    tracing::warn!(tokens, limit, window = kept_now, listed, "prompt too long");
                    if kept_now > 0 {
                        window = kept_now - 1;
                    } else {
                        listed /= 2;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The practice base reads one screen and its elements, as in the gym; the image it
    /// reads is stored as it read it, for the trainer.
    async fn ask_practice(
        &self,
        at: &Cursor,
        current: &DynamicImage,
        sampling: Sampling,
    ) -> Result<Asked, RuntimeError> {
        let surface = &at.before.screenshot.surface;
        let elements = at
            .before
            .tree
            .as_ref()
            .map(|t| practice_elements(t, surface.width, surface.height))
            .unwrap_or_default();
        let messages = practice_conversation(self.prompts, &self.settings.instruction, &elements)?;
        let small = crate::practice_window::practice_image(current);
        let blob = blocking(|| -> Result<BlobId, RuntimeError> {
            let png = clawdesk_desktop::observe::encode_png(&small.to_rgba8())?;
            Ok(self.store.put_blob(&png, BlobKind::Png)?)
        })?;
        let request = PolicyRequest::new(messages.clone(), Vec::new(), vec![small], sampling);
        Ok(Asked {
            generated: self.policy.generate(request).await?,
            messages,
            blobs: vec![blob],
            tools: Vec::new(),
        })
    }

    /// What every step does once its action ran: the screen settles and is observed again,
    /// the step is committed with `done`, and the summary counts it.
    async fn observe_and_commit(
        &self,
        index: usize,
        before: &SavedObservation,
        done: Done,
        summary: &mut AgentSummary,
    ) -> Result<(StepId, Observation, SavedObservation), RuntimeError> {
        if done.outcome == StepOutcome::Executed {
            self.settle().await;
        }
        let after = self.desktop.observe(self.observe).await?;
        let after_saved = blocking(|| save_observation(self.store, &after))?;
        let version = done.version;
        let step = self.commit(index, before, &after_saved, done)?;
        summary.steps += 1;
        summary.versions.push(version);
        Ok((step, after, after_saved))
    }

    /// Tells the caller and the supervisor that a step is done.
    fn announce(&self, report: &StepReport, progress: &mut impl FnMut(&StepReport)) {
        progress(report);
        self.supervisor.step_done(report);
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
