//! A live session the window drives: the agent, the judge and the trainer running together
//! ([`clawdesk_runtime::live`]) in a display of its own (or on this desktop), which a person can pause,
//! stop, switch between autonomous and approve-each-step, and answer action by action.
//!
//! Everything the window shows arrives as [`DeskEvent`]s through one sink; the current screen
//! is kept here as PNG bytes for the window to fetch by sequence number.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clawdesk_agent::{ActionFormat, AgentPrompts};
use clawdesk_desktop::{
    Action, Allowlist, ApprovalRequest, Approver, Decision, Desktop, DesktopConfig, Sandbox,
    SandboxOptions, StopFlag, StopKeyName,
};
use clawdesk_judge::{
    ApiKey, EndpointConfig, EndpointJudge, Judge, JudgePrompts, LocalJudge, PersonAnswer,
    RuleJudge, VoteSettings, person_verdict,
};
use clawdesk_model::source::{LoadEvent, LoadedModel};
use clawdesk_store::{StepOutcome, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::DeskError;
use crate::settings::{DeskSettings, JudgeKind};
use clawdesk_runtime::episode::{AgentSettings, PauseSwitch, StepReport, Supervisor};
use clawdesk_runtime::live::{LiveReport, LiveSettings, ScoringProgress, run_live};
use clawdesk_runtime::practice_window::{
    PracticeTask, WINDOW_PROGRAM, practice_rule, window_command,
};

/// Whether each action waits for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Actions run as the model chooses them; the person watches and may stop or take over.
    Autonomous,
    /// Each action waits for the person to approve, reject or edit it.
    Approve,
}

/// What the person asked for when they pressed start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    /// What the agent is asked to do; a practice task brings its own.
    pub instruction: String,
    /// Whether each action waits for the person.
    pub mode: Mode,
    /// Episodes to run; the stop key or Stop ends the run early.
    pub episodes: usize,
    /// Practise on a gym task in its window (sandbox display, practice format, rule judge)
    /// instead of the settings' program.
    #[serde(default)]
    pub practice: Option<PracticeTask>,
}

impl StartRequest {
    /// The instruction the agent gets: the practice task's, or the person's.
    pub fn instruction(&self) -> String {
        match &self.practice {
            Some(practice) => practice.instruction(),
            None => self.instruction.trim().to_owned(),
        }
    }
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Making the practice base, loading the model, starting the display.
    Loading,
    /// The agent, the judge and the trainer are at work.
    Running,
    /// Held before the agent's next step.
    Paused,
    /// Stop was pressed; the loops finish what they hold.
    Stopping,
    /// The run is over.
    Ended,
    /// The run could not start or broke off; the message says why.
    Failed,
}

/// What the window is told, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DeskEvent {
    /// The session moved on, with a sentence for the status line.
    State {
        /// Where the session is now.
        state: SessionState,
        /// What it is doing, in words.
        message: String,
    },
    /// Long work before the agent starts (model download and load, the sandbox).
    Progress {
        /// The work, in words ("downloading model.safetensors").
        what: String,
        /// Units done so far (bytes, updates).
        done: u64,
        /// Units in all.
        total: u64,
    },
    /// A new screen in the live view ([`LiveSession::frame`]), with the action about to run
    /// on it (drawn over it in autonomous mode) and the element under its point.
    Frame {
        /// The screen's sequence number, to fetch its picture by.
        seq: u64,
        /// The screen's size in pixels.
        width: u32,
        /// The screen's height in pixels.
        height: u32,
        /// The action about to run, in the internal form.
        action: Option<serde_json::Value>,
        /// The action in words.
        description: Option<String>,
        /// The accessible element under the action's point, in words.
        element: Option<String>,
    },
    /// An action waiting for the person (approve-each-step mode).
    Approval {
        /// The request's id, which the answer names.
        id: u64,
        /// The screen the action was chosen on ([`LiveSession::frame`]).
        frame: Option<u64>,
        /// The step's number in the episode.
        step: u32,
        /// The action in words.
        description: String,
        /// The model's reasoning, when it wrote any.
        thought: Option<String>,
        /// The accessible element under the action's point, in words.
        element: Option<String>,
        /// The action in the internal form.
        action: serde_json::Value,
        /// The app that will really receive the action, read at the moment of asking.
        app: Option<String>,
    },
    /// A step stored.
    Step {
        /// The stored step's id.
        step: i64,
        /// Its place in the episode, from 0.
        index: usize,
        /// What became of its action.
        outcome: StepOutcome,
        /// The model's reply (empty for the person's step).
        reply: String,
        /// The adapter version that wrote the reply (`None`: the base model, or the person).
        version: Option<i64>,
        /// The whole step, in seconds.
        seconds: f64,
    },
    /// Where the model runs and what memory it is using there: sent once the model is
    /// loaded and again after every step, for the window's header.
    Device {
        /// The device in words (`CPU`, `CUDA GPU 0`).
        device: String,
        /// The frozen weights' precision (`f32`, `bf16`).
        dtype: String,
        /// Memory in use there, when it can be read.
        memory: Option<clawdesk_model::device::MemoryUse>,
    },
    /// A published adapter being scored on the gym's held-out tasks, while the agent goes on.
    Scoring {
        /// The adapter version.
        version: i64,
        /// Tasks played so far.
        played: usize,
        /// Tasks in all.
        tasks: usize,
    },
    /// The session is over: what it did, or why it failed.
    Ended {
        /// The live run's report, when it ran.
        report: Option<LiveReport>,
        /// Why it ended early, in words.
        error: Option<String>,
    },
}

/// The person's answer to an [`DeskEvent::Approval`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// Run the action.
    Approve,
    /// Refuse the action: the step is stored as refused, with the person's -1 on it.
    Reject {
        /// Why, in the person's words; it becomes the verdict's hint.
        reason: Option<String>,
    },
    /// Run this action instead; it is stored as the person's correction.
    Edit {
        /// The person's action, on the same screen.
        action: Action,
    },
}

/// Where the window's events go.
pub type EventSink = Arc<dyn Fn(DeskEvent) + Send + Sync>;

struct Pending {
    id: u64,
    reply: oneshot::Sender<Decision>,
}

/// What the session's tasks and the window's commands share.
struct Shared {
    pause: PauseSwitch,
    approve_each: AtomicBool,
    pending: Mutex<Option<Pending>>,
    frame: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    seq: AtomicU64,
    stop: Mutex<Option<StopFlag>>,
    stopping: AtomicBool,
    /// The person's rejection of the action in flight: their verdict lands on its step.
    rejected: Mutex<Option<PersonAnswer>>,
    store: Arc<Store>,
    events: EventSink,
    /// Where the loaded model runs, once it is loaded.
    device: Mutex<Option<(candle_core::Device, candle_core::DType)>>,
}

impl Shared {
    fn new(store: Arc<Store>, events: EventSink, mode: Mode) -> Self {
        Shared {
            pause: PauseSwitch::default(),
            approve_each: AtomicBool::new(mode == Mode::Approve),
            pending: Mutex::new(None),
            frame: Mutex::new(None),
            seq: AtomicU64::new(0),
            stop: Mutex::new(None),
            stopping: AtomicBool::new(false),
            rejected: Mutex::new(None),
            store,
            events,
            device: Mutex::new(None),
        }
    }

    fn emit(&self, event: DeskEvent) {
        (self.events)(event);
    }

    /// Tells the window where the model runs and what it uses there now.
    fn report_device(&self) {
        let Some((device, dtype)) = self.device.lock().ok().and_then(|d| d.clone()) else {
            return;
        };
        self.emit(DeskEvent::Device {
            device: clawdesk_model::device::describe(&device),
            dtype: dtype.as_str().to_owned(),
            memory: clawdesk_model::device::memory(&device),
        });
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn set_mode(&self, mode: Mode) {
        self.approve_each
            .store(mode == Mode::Approve, Ordering::SeqCst);
        // Switching to autonomous lets the action that waits go.
        if mode == Mode::Autonomous
            && let Some(pending) = self.pending.lock().ok().and_then(|mut p| p.take())
        {
            let _ = pending.reply.send(Decision::Approve);
        }
    }

    /// Turns the person's answer into the guard's decision. A rejection (or an edit) also
    /// waits in `rejected` to become the person's verdict on the refused step, and an edited
    /// action runs as the next step in the model's place.
    fn answer(&self, id: u64, answer: Answer) -> Result<(), DeskError> {
        let pending = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.take_if(|p| p.id == id))
            .ok_or_else(|| {
                DeskError::Session(format!("no action {id} is waiting for an answer"))
            })?;
        let (decision, verdict) = match answer {
            Answer::Approve => (Decision::Approve, None),
            Answer::Reject { reason } => (
                Decision::Reject {
                    reason: reason.clone(),
                },
                Some(PersonAnswer {
                    approve: false,
                    correction: None,
                    hint: reason,
                }),
            ),
            Answer::Edit { action } => {
                let off_screen = action
                    .points()
                    .iter()
                    .any(|p| !((0.0..=1.0).contains(&p.x) && (0.0..=1.0).contains(&p.y)));
                let checked = if off_screen {
                    Err(DeskError::Session(
                        "the edited action points off the screen".into(),
                    ))
                } else {
                    action.validate().map_err(DeskError::from)
                };
                if let Err(e) = checked {
                    // Still waiting: the person may answer again.
                    if let Ok(mut slot) = self.pending.lock() {
                        *slot = Some(pending);
                    }
                    return Err(e);
                }
                let correction = serde_json::to_value(&action).ok();
                self.pause.take_over_with(action);
                (
                    Decision::Reject {
                        reason: Some("the person edited the action".into()),
                    },
                    Some(PersonAnswer {
                        approve: false,
                        correction,
                        hint: None,
                    }),
                )
            }
        };
        if let Some(verdict) = verdict
            && let Ok(mut rejected) = self.rejected.lock()
        {
            *rejected = Some(verdict);
        }
        let _ = pending.reply.send(decision);
        Ok(())
    }

    /// Keeps `screen` as the live view's newest frame.
    fn publish_frame(
        &self,
        screen: &clawdesk_desktop::Screenshot,
        request: Option<&ApprovalRequest>,
    ) -> Option<u64> {
        let png = match clawdesk_desktop::observe::encode_png(&screen.image) {
            Ok(png) => png,
            Err(e) => {
                tracing::warn!(error = %e, "live view frame not encoded");
                return None;
            }
        };
        let seq = self.next_seq();
        if let Ok(mut frame) = self.frame.lock() {
            *frame = Some((seq, Arc::new(png)));
        }
        self.emit(DeskEvent::Frame {
            seq,
            width: screen.image.width(),
            height: screen.image.height(),
            action: request.and_then(|r| serde_json::to_value(&r.action).ok()),
            description: request.map(|r| r.description.clone()),
            element: request
                .and_then(|r| r.shown.as_ref())
                .and_then(|s| s.element.clone()),
        });
        Some(seq)
    }
}

impl Supervisor for Shared {
    fn go_on_after_loop(&self, _action: &str, _repeats: usize) -> bool {
        false
    }

    fn paused(&self) -> bool {
        self.pause.paused()
    }

    fn take_over(&self) -> Option<Action> {
        self.pause.take_over()
    }

    fn step_done(&self, report: &StepReport) {
        if report.outcome == StepOutcome::Refused
            && let Some(answer) = self.rejected.lock().ok().and_then(|mut r| r.take())
            && let Err(e) = self
                .store
                .add_verdict(&person_verdict(report.step, &answer))
        {
            tracing::warn!(error = %e, step = report.step.0, "the person's rejection not stored");
        }
        self.emit(DeskEvent::Step {
            step: report.step.0,
            index: report.index,
            outcome: report.outcome,
            reply: report.reply.clone(),
            version: report.version,
            seconds: report.step_seconds,
        });
        self.report_device();
    }
}

/// The guard's approver: shows every action's screen, and in approve mode waits for the
/// person's answer.
struct DeskApprover(Arc<Shared>);

impl Approver for DeskApprover {
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            let shared = &self.0;
            let frame = match &request.shown {
                Some(shown) => {
                    let (s, screen, request) =
                        (shared.clone(), shown.screen.clone(), request.clone());
                    tokio::task::spawn_blocking(move || s.publish_frame(&screen, Some(&request)))
                        .await
                        .ok()
                        .flatten()
                }
                None => None,
            };
            if !shared.approve_each.load(Ordering::SeqCst) {
                return Decision::Approve;
            }
            let (reply, answer) = oneshot::channel();
            let id = shared.next_seq();
            if let Ok(mut pending) = shared.pending.lock() {
                *pending = Some(Pending { id, reply });
            }
            let shown = request.shown.as_ref();
            shared.emit(DeskEvent::Approval {
                id,
                frame,
                step: request.step,
                description: request.description.clone(),
                thought: shown.and_then(|s| s.thought.clone()),
                element: shown.and_then(|s| s.element.clone()),
                action: serde_json::to_value(&request.action).unwrap_or_default(),
                app: request.app.clone(),
            });
            answer.await.unwrap_or(Decision::Reject {
                reason: Some("the session stopped".into()),
            })
        })
    }
}

/// A running session.
pub struct LiveSession {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What a session needs besides the settings.
#[derive(Debug, Clone)]
pub struct SessionPlaces {
    /// The data folder (adapters, checkpoints, prompt overrides).
    pub data: PathBuf,
    /// Held-out gym tasks each published adapter is scored on.
    pub gym_tasks: usize,
}

impl LiveSession {
    /// Starts loading and running in the background; progress and results arrive as events.
    pub fn start(
        store: Arc<Store>,
        places: SessionPlaces,
        settings: DeskSettings,
        request: StartRequest,
        events: EventSink,
    ) -> Result<LiveSession, DeskError> {
        settings.validate().map_err(|errors| DeskError::Settings {
            path: "settings".into(),
            detail: errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        if request.instruction().is_empty() {
            return Err(DeskError::Session(
                "write an instruction for the agent first".into(),
            ));
        }
        let shared = Arc::new(Shared::new(store.clone(), events, request.mode));
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let result = run(&shared, store, &places, &settings, &request).await;
                let (state, message) = match &result {
                    Ok(_) => (SessionState::Ended, "the session ended".to_owned()),
                    Err(e) => (SessionState::Failed, e.to_string()),
                };
                shared.emit(DeskEvent::State { state, message });
                let (report, error) = match result {
                    Ok(report) => (Some(report), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                shared.emit(DeskEvent::Ended { report, error });
            })
        };
        Ok(LiveSession { shared, task })
    }

    /// Whether the session's task has ended (the `Ended` event has been sent).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Holds the agent before its next step; the judge and the trainer go on.
    pub fn pause(&self) {
        self.shared.pause.pause();
        self.shared.emit(DeskEvent::State {
            state: SessionState::Paused,
            message: "paused before the next step".into(),
        });
    }

    /// Lets a paused agent go on.
    pub fn resume(&self) {
        self.shared.pause.resume();
        self.shared.emit(DeskEvent::State {
            state: SessionState::Running,
            message: "running".into(),
        });
    }

    /// Halts the agent as the stop key does: the action in flight stops, the episode ends,
    /// and the judge and trainer finish what they hold.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Ok(stop) = self.shared.stop.lock()
            && let Some(stop) = stop.as_ref()
        {
            stop.stop();
        }
        // An action waiting for approval is refused.
        if let Some(pending) = self.shared.pending.lock().ok().and_then(|mut p| p.take()) {
            let _ = pending.reply.send(Decision::Reject {
                reason: Some("stopped".into()),
            });
        }
        self.shared.pause.resume();
        self.shared.emit(DeskEvent::State {
            state: SessionState::Stopping,
            message: "stopping".into(),
        });
    }

    /// Switches between autonomous and approve-each-step from the next action on.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.set_mode(mode);
    }

    /// The person's answer to approval `id`.
    pub fn answer(&self, id: u64, answer: Answer) -> Result<(), DeskError> {
        self.shared.answer(id, answer)
    }

    /// The live view's newest screen as PNG, with its sequence number.
    pub fn frame(&self) -> Option<(u64, Arc<Vec<u8>>)> {
        self.shared.frame.lock().ok()?.clone()
    }
}

/// Loads the model, opens the display and runs the live loop until it ends.
/// Where the agent may act: in practice the practice window and nowhere else; otherwise the
/// apps the person allowed, or, in a sandbox (which holds only what was opened for the agent),
/// any app but those on the guard's deny-list. On the person's own display an open list is
/// refused.
fn allowlist_for(settings: &DeskSettings, practice: bool) -> Result<Allowlist, DeskError> {
    if practice {
        Ok(Allowlist::Only(vec![WINDOW_PROGRAM.to_owned()]))
    } else if !settings.allowed_apps.is_empty() {
        Ok(Allowlist::Only(settings.allowed_apps.clone()))
    } else if settings.sandbox {
        Ok(Allowlist::Any)
    } else {
        Err(DeskError::Session(
            "the agent would act on your own display in any app: list the apps it may act in \
             under Settings → Allowed apps, or turn the sandbox on"
                .into(),
        ))
    }
}

async fn run(
    shared: &Arc<Shared>,
    store: Arc<Store>,
    places: &SessionPlaces,
    settings: &DeskSettings,
    request: &StartRequest,
) -> Result<LiveReport, DeskError> {
    // Refused before any slow work when the agent would act on the person's display anywhere.
    let allowlist = allowlist_for(settings, request.practice.is_some())?;
    let dirs = clawdesk_prompts::search_path(None, Some(&places.data));
    let prompts = AgentPrompts::load(&dirs)?;
    let hints = clawdesk_trainer::teacher::HintTemplate::load(&dirs)?;
    let (spec, base) = load_base(shared, settings).await?;
    // A practice task is judged by the window's own verifier; the person still overrides.
    let judge = match request.practice {
        Some(practice) => {
            Some(Arc::new(RuleJudge::new("practice", practice_rule(practice))) as Arc<dyn Judge>)
        }
        None => build_judge(settings, &spec, &base, &dirs).await?,
    };
    // Declared before the desktop, so the desktop lets go of the display first.
    let display = SessionDisplay::open(shared, settings, request).await?;
    let desktop = connect(shared, settings, &display, allowlist).await?;
    let agent = agent_settings(shared, &desktop, settings, request).await?;
    let live = LiveSettings {
        episodes: request.episodes.max(1),
        keep_adapters: settings.keep_adapters,
        gym_tasks: places.gym_tasks,
        on_scoring: Some(ScoringProgress({
            let shared = shared.clone();
            Arc::new(move |version, played, tasks| {
                shared.emit(DeskEvent::Scoring {
                    version,
                    played,
                    tasks,
                })
            })
        })),
        ..LiveSettings::new(
            agent,
            spec,
            settings.lora(),
            settings.learning().train_loop("main"),
            &places.data,
        )
    };
    shared.emit(DeskEvent::State {
        state: SessionState::Running,
        message: format!("running: {}", live.agent.instruction),
    });
    Ok(run_live(
        &desktop,
        store,
        base,
        judge,
        &prompts,
        hints,
        &live,
        shared.as_ref(),
    )
    .await?)
}

/// Tells the window what the session is loading or starting.
fn loading(shared: &Shared, message: &str) {
    shared.emit(DeskEvent::State {
        state: SessionState::Loading,
        message: message.to_owned(),
    });
}

/// The base model the settings name (the practice base made first if need be), loaded off
/// the async runtime with its progress shown; with the spec its adapters are recorded against.
async fn load_base(
    shared: &Arc<Shared>,
    settings: &DeskSettings,
) -> Result<(String, LoadedModel), DeskError> {
    let device = settings.device.open()?;
    let spec = if settings.base_model == PRACTICE_BASE {
        practice_base_dir(shared, &device).await?
    } else {
        settings.base_model.clone()
    };
    loading(shared, &format!("loading {spec}"));
    let (to_load, events, on) = (spec.clone(), shared.clone(), device.clone());
    let base = tokio::task::spawn_blocking(move || load_model(&to_load, &on, &events))
        .await
        .map_err(|e| DeskError::Session(format!("loading the model: {e}")))??;
    if let Ok(mut slot) = shared.device.lock() {
        *slot = Some((device, base.model.dtype()));
    }
    shared.report_device();
    Ok((spec, base))
}

/// The display a session acts on: a sandbox of its own with the app it launched there, or
/// this desktop (neither). The launched app is stopped when the session ends, however it ends.
struct SessionDisplay {
    sandbox: Option<Sandbox>,
    app: Option<std::process::Child>,
}

impl SessionDisplay {
    /// A sandbox when the settings ask for one, and always for practice (sized for the
    /// practice window, which is started in it), with the app to launch started in it.
    async fn open(
        shared: &Shared,
        settings: &DeskSettings,
        request: &StartRequest,
    ) -> Result<Self, DeskError> {
        if !settings.sandbox && request.practice.is_none() {
            return Ok(SessionDisplay {
                sandbox: None,
                app: None,
            });
        }
        let launch = match &request.practice {
            Some(practice) => {
                let (program, args) = window_command(practice)?;
                Some((program.display().to_string(), args))
            }
            None => split_command(&settings.launch)
                .map(|(p, args)| (p.to_owned(), args.into_iter().map(str::to_owned).collect())),
        };
        loading(shared, "starting the sandbox display");
        let options = match request.practice {
            Some(_) => SandboxOptions {
                width: clawdesk_runtime::practice_window::DISPLAY_SIZE.0,
                height: clawdesk_runtime::practice_window::DISPLAY_SIZE.1,
                ..SandboxOptions::default()
            },
            None => SandboxOptions::default(),
        };
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::start(&options))
            .await
            .map_err(|e| DeskError::Session(format!("starting the sandbox: {e}")))??;
        let mut display = SessionDisplay {
            sandbox: Some(sandbox),
            app: None,
        };
        if let (Some((program, args)), Some(sandbox)) = (&launch, &display.sandbox) {
            let child = sandbox
                .command(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| DeskError::External {
                    program: program.clone(),
                    detail: format!("could not start it in the sandbox: {e}"),
                })?;
            display.app = Some(child);
            // Give its window time to map and register on the bus.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        Ok(display)
    }
}

impl Drop for SessionDisplay {
    fn drop(&mut self) {
        if let Some(mut child) = self.app.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Connects to the session's display with the settings' guard: the allowlist, the stop key
/// (also on the person's own display when the agent works in a sandbox) and the person as
/// approver. A stop pressed while the session was loading stops it at once.
async fn connect(
    shared: &Arc<Shared>,
    settings: &DeskSettings,
    display: &SessionDisplay,
    allowlist: Allowlist,
) -> Result<Desktop, DeskError> {
    let mut config = match &display.sandbox {
        Some(sandbox) => DesktopConfig::for_sandbox(sandbox),
        None => DesktopConfig::from_env()?,
    };
    config.stop_key = Some(settings.stop_key.parse::<StopKeyName>()?);
    if display.sandbox.is_some() {
        // The person watches from their own display: the stop key works there too.
        config.stop_key_also_on = std::env::var("DISPLAY")
            .ok()
            .filter(|d| !d.is_empty())
            .into_iter()
            .collect();
    }
    config.guard.allowlist = allowlist;
    config.guard.unknown_focus = settings.allow_unknown_focus.clone();
    config.guard.max_steps = None;
    let mut desktop = Desktop::connect(config).await?;
    desktop.set_approver(Arc::new(DeskApprover(shared.clone())));
    if let Ok(mut stop) = shared.stop.lock() {
        *stop = Some(desktop.stop_flag().clone());
    }
    if shared.stopping.load(Ordering::SeqCst) {
        desktop.stop_flag().stop();
    }
    Ok(desktop)
}

/// The agent's settings for the request; a practice session waits for its window and acts in
/// the practice format on it alone.
async fn agent_settings(
    shared: &Shared,
    desktop: &Desktop,
    settings: &DeskSettings,
    request: &StartRequest,
) -> Result<AgentSettings, DeskError> {
    let mut agent = AgentSettings::new(request.instruction());
    agent.max_steps = settings.max_steps;
    if request.practice.is_some() {
        loading(shared, "waiting for the practice window");
        desktop
            .accessibility()
            .wait_for_application(WINDOW_PROGRAM, std::time::Duration::from_secs(20))
            .await?;
        agent.format = ActionFormat::Practice;
        agent.app = Some(WINDOW_PROGRAM.into());
    }
    Ok(agent)
}

/// The base-model setting that names the practice base: a tiny model warm-started on the gym
/// by the practice recipe, which the binary ships made (`crates/trainer/bases`) and unpacks
/// into the cache the first time.
pub const PRACTICE_BASE: &str = "practice";

async fn practice_base_dir(
    shared: &Arc<Shared>,
    device: &candle_core::Device,
) -> Result<String, DeskError> {
    let cache = clawdesk_runtime::paths::default_cache()?;
    use clawdesk_trainer::gym::warm_start::WarmStartSettings;
    // The practice recipe, shipped made: unpacked in a moment, not trained. A test can ask
    // instead for a short warm start of the older one-phase recipe, which shows the warm-up
    // (a weak base made in a minute or two).
    let recipe = match std::env::var("CLAWDESK_PRACTICE_WARM_STEPS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&s| s > 0)
    {
        Some(steps) => WarmStartSettings {
            steps,
            ..WarmStartSettings::default()
        },
        None => WarmStartSettings::practice(1),
    };
    let (events, device) = (shared.clone(), device.clone());
    let made = tokio::task::spawn_blocking(move || {
        clawdesk_trainer::gym::warm_start::practice_base_on(&cache, &recipe, &device, &mut |p| {
            // Every update would flood the window; a few hundred events cover the bar.
            if p.step == 1 || p.step.is_multiple_of(5) || p.step == p.steps {
                events.emit(DeskEvent::Progress {
                    what: "warming up the practice base".into(),
                    done: p.step as u64,
                    total: p.steps as u64,
                });
            }
        })
    })
    .await
    .map_err(|e| DeskError::Session(format!("making the practice base: {e}")))??;
    Ok(made.0.display().to_string())
}

fn load_model(
    spec: &str,
    device: &candle_core::Device,
    shared: &Arc<Shared>,
) -> Result<LoadedModel, DeskError> {
    Ok(LoadedModel::load(
        spec,
        device,
        None,
        &mut |event| match event {
            LoadEvent::Downloading { file, done, total } => shared.emit(DeskEvent::Progress {
                what: format!("downloading {file}"),
                done: done as u64,
                total: total as u64,
            }),
            LoadEvent::Downloaded { file } => tracing::info!(file, "downloaded"),
            LoadEvent::Loading { dir } => shared.emit(DeskEvent::State {
                state: SessionState::Loading,
                message: format!("loading the weights in {}", dir.display()),
            }),
        },
    )?)
}

/// The judge the settings name; `None` for the person alone.
async fn build_judge(
    settings: &DeskSettings,
    base_model: &str,
    base: &LoadedModel,
    dirs: &[PathBuf],
) -> Result<Option<Arc<dyn Judge>>, DeskError> {
    let votes = VoteSettings {
        votes: settings.votes,
        ..VoteSettings::default()
    };
    Ok(match settings.judge {
        JudgeKind::Person => None,
        JudgeKind::Endpoint => {
            let config = EndpointConfig {
                base_url: settings.judge_endpoint.clone(),
                model: settings.judge_model.clone(),
                api_key: if settings.judge_api_key_env.is_empty() {
                    ApiKey::None
                } else {
                    ApiKey::Env {
                        var: settings.judge_api_key_env.clone(),
                    }
                },
                ..EndpointConfig::default()
            };
            let prompts = JudgePrompts::load(dirs)?;
            Some(Arc::new(EndpointJudge::new(config, votes, prompts).await?))
        }
        JudgeKind::Local => {
            // The base model judges with the policy's weights (one copy in memory) and no
            // adapter: the judge does not drift with what it is judging.
            let prompts = JudgePrompts::load(dirs)?;
            Some(Arc::new(LocalJudge::new(
                Arc::new(base.share_base()?),
                prompts,
                votes,
                base_model,
            )?))
        }
    })
}

/// `program arg arg` split on spaces; `None` for an empty line.
fn split_command(line: &str) -> Option<(&str, Vec<&str>)> {
    let mut words = line.split_whitespace();
    let program = words.next()?;
    Some((program, words.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 26: a session on the person's own display with no allowed apps acted in any app.
    #[test]
    fn an_open_allowlist_is_for_a_sandbox_alone() {
        let mut settings = DeskSettings {
            sandbox: false,
            allowed_apps: Vec::new(),
            ..DeskSettings::default()
        };
        let err = allowlist_for(&settings, false).unwrap_err();
        assert!(err.to_string().contains("Allowed apps"), "{err}");
        assert_eq!(
            allowlist_for(&settings, true).unwrap(),
            Allowlist::Only(vec![WINDOW_PROGRAM.to_owned()])
        );
        settings.allowed_apps = vec!["mousepad".into()];
        assert_eq!(
            allowlist_for(&settings, false).unwrap(),
            Allowlist::Only(vec!["mousepad".into()])
        );
        settings.allowed_apps.clear();
        settings.sandbox = true;
        assert_eq!(allowlist_for(&settings, false).unwrap(), Allowlist::Any);
    }
    use clawdesk_desktop::{NormPoint, Screenshot, Shown, Surface, SurfaceKind};
    use clawdesk_store::{BlobKind, NewEpisode, NewStep, VerdictSource};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        shared: Arc<Shared>,
        events: tokio::sync::mpsc::UnboundedReceiver<DeskEvent>,
    }

    fn fixture(mode: Mode) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let sink: EventSink = Arc::new(move |e| {
            let _ = tx.send(e);
        });
        let shared = Arc::new(Shared::new(store.clone(), sink, mode));
        Fixture {
            _dir: dir,
            store,
            shared,
            events,
        }
    }

    fn click() -> Action {
        Action::Click {
            at: NormPoint::new(0.25, 0.5),
            button: Default::default(),
            count: 1,
        }
    }

    fn request(action: Action) -> ApprovalRequest {
        ApprovalRequest {
            step: 0,
            description: action.describe(),
            action,
            app: Some("mousepad".into()),
            shown: Some(Shown {
                screen: Arc::new(Screenshot {
                    image: image::RgbaImage::new(8, 4),
                    surface: Surface {
                        kind: SurfaceKind::Monitor { name: "m".into() },
                        x: 0,
                        y: 0,
                        width: 8,
                        height: 4,
                        scale: 1.0,
                    },
                    took_ms: 0.0,
                }),
                thought: Some("the OK button".into()),
                element: Some("button \"OK\"".into()),
            }),
        }
    }

    /// Waits for the approval event (after the frame event) and returns its id.
    async fn approval_id(events: &mut tokio::sync::mpsc::UnboundedReceiver<DeskEvent>) -> u64 {
        loop {
            match events.recv().await.expect("an event") {
                DeskEvent::Approval {
                    id,
                    frame,
                    thought,
                    element,
                    ..
                } => {
                    assert!(frame.is_some(), "the card shows the screen");
                    assert_eq!(thought.as_deref(), Some("the OK button"));
                    assert_eq!(element.as_deref(), Some("button \"OK\""));
                    return id;
                }
                DeskEvent::Frame { width, height, .. } => assert_eq!((width, height), (8, 4)),
                // A stored step reported on the way.
                DeskEvent::Step { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn stored_step(store: &Store) -> clawdesk_store::StepId {
        let episode = store
            .begin_episode(&NewEpisode {
                task: "t".into(),
                app: None,
            })
            .unwrap();
        let png = store.put_blob(b"png", BlobKind::Png).unwrap();
        store
            .insert_step(&NewStep {
                episode,
                index: 0,
                before_image: png.clone(),
                after_image: Some(png),
                before_tree: None,
                after_tree: None,
                surface: serde_json::json!({}),
                action: serde_json::json!({}),
                response: None,
                policy_version: None,
                outcome: StepOutcome::Refused,
                error: None,
                started_at_ms: 0,
                ended_at_ms: 0,
            })
            .unwrap()
    }

    fn refused(step: clawdesk_store::StepId) -> StepReport {
        StepReport {
            step,
            index: 0,
            outcome: StepOutcome::Refused,
            reply: String::new(),
            version: None,
            generate_seconds: 0.0,
            step_seconds: 0.0,
        }
    }

    #[tokio::test]
    async fn autonomous_mode_shows_the_screen_and_asks_nobody() {
        let mut f = fixture(Mode::Autonomous);
        let approver = DeskApprover(f.shared.clone());
        assert_eq!(approver.approve(&request(click())).await, Decision::Approve);
        assert!(matches!(
            f.events.recv().await,
            Some(DeskEvent::Frame { seq: 1, .. })
        ));
        let (seq, png) = f.shared.frame.lock().unwrap().clone().expect("a frame");
        assert_eq!(seq, 1);
        assert!(png.starts_with(b"\x89PNG"));
    }

    #[tokio::test]
    async fn a_rejection_becomes_the_persons_verdict_with_its_reason_as_hint() {
        let mut f = fixture(Mode::Approve);
        let approver = DeskApprover(f.shared.clone());
        let req = request(click());
        let decision = approver.approve(&req);
        tokio::pin!(decision);
        let id = tokio::select! {
            _ = &mut decision => panic!("decided before the person answered"),
            id = approval_id(&mut f.events) => id,
        };
        assert!(
            f.shared.answer(id + 1, Answer::Approve).is_err(),
            "an answer to another action is refused"
        );
        f.shared
            .answer(
                id,
                Answer::Reject {
                    reason: Some("click OK instead".into()),
                },
            )
            .unwrap();
        assert_eq!(
            decision.await,
            Decision::Reject {
                reason: Some("click OK instead".into())
            }
        );
        let step = stored_step(&f.store);
        f.shared.step_done(&refused(step));
        let v = f.store.effective_verdict(step).unwrap().expect("stored");
        assert_eq!((v.source, v.score), (VerdictSource::Person, -1));
        assert_eq!(v.hint.as_deref(), Some("click OK instead"));
        // Only that step: the next refused step (the guard's own) gets no verdict.
        let other = stored_step(&f.store);
        f.shared.step_done(&refused(other));
        assert!(f.store.effective_verdict(other).unwrap().is_none());
    }

    #[tokio::test]
    async fn an_edit_runs_the_persons_action_next_and_is_stored_as_the_correction() {
        let mut f = fixture(Mode::Approve);
        let approver = DeskApprover(f.shared.clone());
        let req = request(click());
        let decision = approver.approve(&req);
        tokio::pin!(decision);
        let id = tokio::select! {
            _ = &mut decision => panic!("decided before the person answered"),
            id = approval_id(&mut f.events) => id,
        };
        let bad = Action::Click {
            at: NormPoint::new(0.5, 0.5),
            button: Default::default(),
            count: 9,
        };
        assert!(f.shared.answer(id, Answer::Edit { action: bad }).is_err());
        let moved = Action::Click {
            at: NormPoint::new(0.75, 0.5),
            button: Default::default(),
            count: 1,
        };
        f.shared
            .answer(
                id,
                Answer::Edit {
                    action: moved.clone(),
                },
            )
            .expect("the action still waits after a bad edit");
        assert!(matches!(decision.await, Decision::Reject { .. }));
        assert_eq!(f.shared.take_over(), Some(moved.clone()));
        let step = stored_step(&f.store);
        f.shared.step_done(&refused(step));
        let v = f.store.effective_verdict(step).unwrap().expect("stored");
        assert_eq!(v.score, -1);
        assert_eq!(v.correction, serde_json::to_value(&moved).ok());
    }

    #[tokio::test]
    async fn switching_to_autonomous_lets_the_waiting_action_go() {
        let mut f = fixture(Mode::Approve);
        let approver = DeskApprover(f.shared.clone());
        let req = request(click());
        let decision = approver.approve(&req);
        tokio::pin!(decision);
        tokio::select! {
            _ = &mut decision => panic!("decided before the person answered"),
            _ = approval_id(&mut f.events) => {}
        };
        f.shared.set_mode(Mode::Autonomous);
        assert_eq!(decision.await, Decision::Approve);
    }
}
