//! Observing and acting on real desktop apps, safely.
//!
//! What it is for: a [`Desktop`] is one X display plus its session bus. It takes
//! [`Observation`]s (a screenshot with its surface geometry, the accessibility tree of the
//! focused or a named app in accesskit's model, and who has focus) and runs [`Action`]s
//! through the [`Guard`] (allowlist, stop key, step limit, password fields, a person's
//! approval) and the enigo [`Executor`]. A [`Sandbox`] provides a private display with its own
//! D-Bus and AT-SPI bus for the agent and for tests.
//!
//! What it is not for: deciding what to do (the policy), judging the outcome, or storing it.
//! Nothing here reads `$DISPLAY` implicitly except the portable xcap capture backend, so one
//! process can drive several sandboxes at once.

#![warn(missing_docs)]

pub mod act;
pub mod clipboard;
mod error;
pub mod geometry;
pub mod guard;
pub mod observe;
mod refusal;
pub mod sandbox;
pub mod stop;
pub mod x11;

use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use act::{Action, Executor, KeyCombo, MouseButton};
pub use error::DesktopError;
pub use geometry::{NormPoint, ScreenPoint, Surface, SurfaceKind};
pub use guard::{
    ActionContext, Allowlist, AppIdentity, ApprovalRequest, Approver, Decision, FieldFocus,
    FocusedField, Guard, GuardConfig, PointedApp, Refusal, Shown,
};
pub use observe::{
    AccessTree, Accessibility, AppRef, CaptureBackend, CaptureTarget, Element, KeepTrees,
    Screenshot, TreeRead, WalkLimits, WalkReason,
};
pub use sandbox::{Sandbox, SandboxOptions};
pub use stop::{StopFlag, StopKey, StopKeyName};
pub use x11::ActiveWindow;

/// Runs blocking work (an X11 grab, PNG encoding, SQLite) from async code without stalling
/// the runtime: on a multi-threaded runtime the worker first hands its other tasks to the
/// others (`block_in_place`); elsewhere (a current-thread runtime, no runtime) it just runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Which desktop to work on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesktopConfig {
    /// The X display, for example `:0` or a sandbox's `:3`.
    pub display: String,
    /// The session bus address; `None` means `$DBUS_SESSION_BUS_ADDRESS`.
    pub session_bus: Option<String>,
    /// The guard's settings for actions on this desktop.
    pub guard: GuardConfig,
    /// Grab this key to halt the agent; `None` leaves the stop to the UI.
    pub stop_key: Option<StopKeyName>,
    /// Other displays where the stop key also halts the agent: the person's own display,
    /// when the agent works in a sandbox the person watches from it.
    #[serde(default)]
    pub stop_key_also_on: Vec<String>,
}

impl DesktopConfig {
    /// The desktop of a sandbox, with default guard settings and the Pause stop key.
    pub fn for_sandbox(sandbox: &Sandbox) -> Self {
        DesktopConfig {
            display: sandbox.display().to_owned(),
            session_bus: Some(sandbox.dbus_address().to_owned()),
            guard: GuardConfig::default(),
            stop_key: Some(StopKeyName::Pause),
            stop_key_also_on: Vec::new(),
        }
    }

    /// The session's own desktop from `$DISPLAY` and `$DBUS_SESSION_BUS_ADDRESS`.
    pub fn from_env() -> Result<Self, DesktopError> {
        let display = std::env::var("DISPLAY")
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| DesktopError::NoDisplay {
                display: String::new(),
                detail: "DISPLAY is not set".into(),
            })?;
        Ok(DesktopConfig {
            display,
            session_bus: None,
            guard: GuardConfig::default(),
            stop_key: Some(StopKeyName::Pause),
            stop_key_also_on: Vec::new(),
        })
    }
}

/// What to observe.
#[derive(Debug, Clone, Default)]
pub struct ObserveOptions {
    /// What to take the screenshot of.
    pub target: CaptureTarget,
    /// Read this app's tree instead of the focused app's.
    pub app: Option<String>,
    /// Skip the accessibility tree (screenshot only).
    pub skip_tree: bool,
    /// Limits on reading the accessibility tree.
    pub limits: WalkLimits,
    /// Whether the tree is kept between observations and refreshed from events (the
    /// default), or walked whole each time.
    pub keep: KeepTrees,
}

/// Per-part timings of one observation, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObserveTimings {
    /// Taking the screenshot.
    pub capture_ms: f64,
    /// Reading the accessibility tree and placing its bounds on the screen.
    pub tree_ms: f64,
    /// The whole observation, finding the active window and the apps included.
    pub total_ms: f64,
    /// How the tree was read: walked whole, or kept and refreshed; `None` when none was read.
    #[serde(default)]
    pub tree_read: Option<TreeRead>,
}

/// The desktop at one moment: what the agent sees and what the guard checks against.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The image with its surface geometry, which actions' points refer to.
    pub screenshot: Screenshot,
    /// The focused (or named) app's accessibility tree; `None` when skipped or no app was found.
    pub tree: Option<AccessTree>,
    /// The window that had keyboard focus; `None` when none had.
    pub active_window: Option<ActiveWindow>,
    /// Who owns the active window: its WM_CLASS and the AT-SPI name of its process.
    pub app: Option<AppIdentity>,
    /// How long each part of the observation took.
    pub timings: ObserveTimings,
}

impl Observation {
    /// What this observation saw of the keyboard's receiver: the focused app, and its focused
    /// element when the tree read is that app's and whole. The guard does not judge from it
    /// ([`Desktop::act`] reads the desktop again at the moment of acting); it is what a
    /// person or a log is shown.
    pub fn action_context(&self) -> ActionContext {
        let focused = match (&self.tree, &self.active_window) {
            (Some(tree), Some(window))
                if tree.truncated.is_none()
                    && tree.app.pid.is_some()
                    && tree.app.pid == window.pid =>
            {
                field_focus(tree)
            }
            _ => FieldFocus::Unknown,
        };
        ActionContext {
            app: self.app.clone(),
            window: self.active_window.as_ref().map(|w| w.id),
            focused,
            pointed: Vec::new(),
            shown: None,
        }
    }

    /// The normalised point at the centre of an element, for clicking it.
    pub fn point_of(&self, element: &Element) -> Option<NormPoint> {
        let (x, y) = element.center()?;
        self.screenshot.surface.to_norm(ScreenPoint {
            x: x.floor() as i32,
            y: y.floor() as i32,
        })
    }
}

/// The focused element of a tree read whole.
fn field_focus(tree: &AccessTree) -> FieldFocus {
    if tree.truncated.is_some() {
        return FieldFocus::Unknown;
    }
    match tree.focused() {
        Some(e) => FieldFocus::Field(FocusedField {
            name: e.name.clone(),
            is_password: e.password,
        }),
        None => FieldFocus::Nothing,
    }
}

/// How long the guard's read of the focused element may take before focus counts as unknown.
const FOCUS_LIMITS: WalkLimits = WalkLimits {
    max_nodes: 20_000,
    time_limit: std::time::Duration::from_secs(3),
    call_timeout: std::time::Duration::from_secs(1),
    max_text: 0,
};

/// One desktop: capture, accessibility, input and the guard in front of it.
pub struct Desktop {
    config: DesktopConfig,
    capture: CaptureBackend,
    a11y: Accessibility,
    executor: Executor,
    guard: Guard,
    _stop_keys: Vec<StopKey>,
}

impl Desktop {
    /// Connects to the display and its accessibility bus and grabs the stop key.
    pub async fn connect(config: DesktopConfig) -> Result<Desktop, DesktopError> {
        let stop = StopFlag::new();
        let capture = CaptureBackend::x11(&config.display)?;
        let a11y = Accessibility::connect(config.session_bus.as_deref()).await?;
        let executor = Executor::start(Some(&config.display), stop.clone())?;
        let mut stop_keys = Vec::new();
        if let Some(key) = config.stop_key {
            stop_keys.push(StopKey::listen(&config.display, key, stop.clone())?);
            for other in config
                .stop_key_also_on
                .iter()
                .filter(|d| **d != config.display)
            {
                // The agent's own display has the key for sure; on the person's display another
                // program may hold it, which is said, not fatal (the window's stop still works).
                match StopKey::listen(other, key, stop.clone()) {
                    Ok(grabbed) => stop_keys.push(grabbed),
                    Err(e) => tracing::warn!(display = %other, error = %e, "no stop key there"),
                }
            }
        }
        let guard = Guard::new(config.guard.clone(), stop);
        Ok(Desktop {
            config,
            capture,
            a11y,
            executor,
            guard,
            _stop_keys: stop_keys,
        })
    }

    /// Requires a person's approval before every action.
    pub fn set_approver(&mut self, approver: std::sync::Arc<dyn Approver>) {
        self.guard = self.guard.clone().with_approver(approver);
    }

    /// The X display this desktop is on, such as `:3`.
    pub fn display(&self) -> &str {
        &self.config.display
    }

    /// The connection to this desktop's accessibility bus.
    pub fn accessibility(&self) -> &Accessibility {
        &self.a11y
    }

    /// The guard every action passes.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The flag the stop key sets: set it to halt the agent, reset it to let it go on.
    pub fn stop_flag(&self) -> &StopFlag {
        self.guard.stop_flag()
    }

    /// Takes a screenshot and reads the tree of the focused (or named) app.
    pub async fn observe(&self, options: &ObserveOptions) -> Result<Observation, DesktopError> {
        let start = Instant::now();
        let active_window = x11::active_window(&self.config.display)?;
        // The app list comes over D-Bus while the screen is captured.
        let a11y = self.a11y.clone();
        let listing = tokio::spawn(async move { a11y.applications().await });
        let capture_start = Instant::now();
        let screenshot = match blocking(|| self.capture.capture(&options.target)) {
            Ok(shot) => shot,
            Err(e) => {
                listing.abort();
                return Err(e);
            }
        };
        let capture_ms = capture_start.elapsed().as_secs_f64() * 1e3;
        let apps = listing
            .await
            .map_err(|e| DesktopError::Accessibility(format!("listing the apps: {e}")))??;
        // Who has focus comes from the X server alone: the active window and the AT-SPI app
        // of its process. What was named only chooses whose tree the prompt shows.
        let focused_app = active_window
            .as_ref()
            .and_then(|w| w.pid)
            .and_then(|pid| apps.iter().find(|a| a.pid == Some(pid)).cloned());
        let app_ref = match &options.app {
            Some(name) => Some(
                apps.iter()
                    .find(|a| a.name.eq_ignore_ascii_case(name))
                    .cloned()
                    .ok_or_else(|| self.a11y.unknown_app(name, &apps))?,
            ),
            None => match &focused_app {
                Some(app) => Some(app.clone()),
                None => self.a11y.active_application(&apps).await,
            },
        };
        let tree_start = Instant::now();
        let (mut tree, tree_read) = match (&app_ref, options.skip_tree) {
            (Some(app), false) => {
                let (tree, read) = self
                    .a11y
                    .observe_tree(app, options.limits, options.keep)
                    .await?;
                (Some(tree), Some(read))
            }
            _ => (None, None),
        };
        if let (Some(tree), Some(window)) = (tree.as_mut(), active_window.as_ref())
            && tree.window_relative
            && (tree.app.pid.is_none() || tree.app.pid == window.pid)
        {
            // Window coordinates onto the screen: the window's origin, plus the margins its
            // client-side decorations draw outside what it reports as its own size (shadows,
            // even on both sides).
            let (x, y, w, h) = observe::capture::window_rect(&self.config.display, window.id)?;
            let (inner_w, inner_h) = tree.window_size().unwrap_or((f64::from(w), f64::from(h)));
            let margin_x = ((f64::from(w) - inner_w) / 2.0).max(0.0);
            let margin_y = ((f64::from(h) - inner_h) / 2.0).max(0.0);
            tree.shift_bounds(f64::from(x) + margin_x, f64::from(y) + margin_y);
        }
        let tree_ms = tree_start.elapsed().as_secs_f64() * 1e3;
        let app = active_window
            .as_ref()
            .map(|w| AppIdentity::of_window(w, focused_app.map(|a| a.name)));
        Ok(Observation {
            screenshot,
            tree,
            active_window,
            app,
            timings: ObserveTimings {
                capture_ms,
                tree_ms,
                total_ms: start.elapsed().as_secs_f64() * 1e3,
                tree_read,
            },
        })
    }

    /// Runs `action` against the surface it was chosen on, after the guard allows it.
    pub async fn act(
        &self,
        action: &Action,
        observation: &Observation,
    ) -> Result<(), DesktopError> {
        self.act_explained(action, observation, None).await
    }

    /// [`Desktop::act`], with the model's reasoning for a person who approves each action.
    ///
    /// The guard judges what would really receive the action, read now: the window under
    /// each point, the focused app and its focused element. After a person's approval it is
    /// read again and the action is refused if it changed. Typed text runs in pieces cut at
    /// Tab and Return, each checked against the element that has focus when it is typed.
    pub async fn act_explained(
        &self,
        action: &Action,
        observation: &Observation,
        thought: Option<&str>,
    ) -> Result<(), DesktopError> {
        self.act_checked(action, observation, Some(thought)).await
    }

    /// Runs an action the person chose (a takeover, an edited action): the guard's rules
    /// apply, but the person is not asked to approve what they chose.
    pub async fn act_for_person(
        &self,
        action: &Action,
        observation: &Observation,
    ) -> Result<(), DesktopError> {
        self.act_checked(action, observation, None).await
    }

    /// `ask`: `Some(thought)` for the model's action (a person approves it when one is
    /// asked), `None` for the person's own.
    async fn act_checked(
        &self,
        action: &Action,
        observation: &Observation,
        ask: Option<Option<&str>>,
    ) -> Result<(), DesktopError> {
        action.validate()?;
        let surface = &observation.screenshot.surface;
        let mut context = self.context_now(action, surface).await?;
        self.guard.check_rules(action, &context)?;
        if let Some(thought) = ask
            && self.guard.asks_a_person()
        {
            context.shown = Some(self.shown(action, observation, thought));
            self.guard.ask(action, &context).await?;
            // The person may have taken minutes; what they approved must still be the target.
            let now = self.context_now(action, surface).await?;
            let (was, is) = (context.target(action), now.target(action));
            if was != is {
                return Err(Refusal::TargetChanged { was, now: is }.into());
            }
            self.guard.check_rules(action, &now)?;
        }
        self.guard.count_step();
        for (i, piece) in action.segments().iter().enumerate() {
            if i > 0 {
                let now = self.context_now(piece, surface).await?;
                self.guard.check_rules(piece, &now)?;
            }
            self.executor.execute(piece, surface).await?;
        }
        Ok(())
    }

    /// What the person approving an action is shown.
    fn shown(&self, action: &Action, observation: &Observation, thought: Option<&str>) -> Shown {
        let surface = &observation.screenshot.surface;
        let element = action
            .points()
            .first()
            .and_then(|p| surface.to_screen(*p).ok())
            .zip(observation.tree.as_ref())
            .and_then(|(p, tree)| tree.element_at(f64::from(p.x), f64::from(p.y)))
            .map(|e| format!("{} \"{}\"", observe::tree::role_name(e.role), e.name));
        Shown {
            screen: std::sync::Arc::new(observation.screenshot.clone()),
            thought: thought.map(str::to_owned),
            element,
        }
    }

    /// What would receive `action` on `surface` at this moment, read from the X server and
    /// the accessibility bus: for keystrokes the active window's app and its focused element,
    /// for pointer actions the app whose window is under each point (under the pointer
    /// where it is, for a scroll without a point).
    pub async fn context_now(
        &self,
        action: &Action,
        surface: &Surface,
    ) -> Result<ActionContext, DesktopError> {
        let display = self.config.display.as_str();
        let mut context = ActionContext::default();
        if matches!(action, Action::Wait { .. }) {
            return Ok(context);
        }
        let apps = self.a11y.applications().await?;
        let name_of = |pid: Option<u32>| {
            pid.and_then(|pid| apps.iter().find(|a| a.pid == Some(pid)))
                .map(|a| a.name.clone())
        };
        if action.is_pointer() {
            let mut points: Vec<ScreenPoint> = action
                .points()
                .iter()
                .map(|p| surface.to_screen(*p))
                .collect::<Result<_, _>>()?;
            if points.is_empty() {
                let (x, y) = x11::pointer_position(display)?;
                points.push(ScreenPoint { x, y });
            }
            for p in points {
                let window = x11::window_at(display, p.x, p.y)?;
                context.pointed.push(window.map(|w| PointedApp {
                    app: AppIdentity::of_window(&w, name_of(w.pid)),
                    window: w.id,
                }));
            }
        }
        if action.types_text() {
            let window = x11::active_window(display)?;
            if let Some(window) = &window {
                context.window = Some(window.id);
                context.app = Some(AppIdentity::of_window(window, name_of(window.pid)));
                let app = window
                    .pid
                    .and_then(|pid| apps.iter().find(|a| a.pid == Some(pid)));
                if let Some(app) = app {
                    // A walk that fails or is cut short leaves the focus unknown.
                    context.focused = match self.a11y.snapshot(app, FOCUS_LIMITS).await {
                        Ok(tree) => field_focus(&tree),
                        Err(e) => {
                            tracing::debug!(app = %app.name, "focus unknown: {e}");
                            FieldFocus::Unknown
                        }
                    };
                }
            }
        }
        Ok(context)
    }
}
