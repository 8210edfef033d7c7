//! The gate every action passes before it reaches the desktop: the stop flag, a step limit,
//! the app allowlist and the deny-list, no typing into password fields (nor into a field
//! nobody can see), and (when asked for) a person's approval.
//!
//! The guard judges an [`ActionContext`] that says what would really receive the action: the
//! app whose window has keyboard focus and its focused element for keystrokes, the window
//! under each point for pointer actions. [`crate::Desktop`] reads it from the X server and the
//! accessibility bus at the moment of acting, never from what was named or observed earlier.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::act::Action;
pub use crate::refusal::Refusal;
use crate::stop::StopFlag;

/// Which apps the agent may act in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allowlist {
    /// Any app (for a sandbox that only holds apps meant for the agent).
    Any,
    /// Only apps whose accessible name or window class matches one of these (case-insensitive).
    Only(Vec<String>),
}

/// Who the focused app is, from the accessibility bus and the window manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppIdentity {
    /// The AT-SPI application name (`mousepad`, `gnome-calculator`).
    pub accessible_name: Option<String>,
    /// The WM_CLASS class part of the window (`Mousepad`): the active one for keystrokes, the
    /// one under the point for pointer actions.
    pub window_class: Option<String>,
    /// The WM_CLASS instance part of the same window (`mousepad`).
    pub window_instance: Option<String>,
}

/// Apps the agent never acts in unless a person names them in the allowlist: a terminal runs
/// anything, ClawDesk's own window approves and trains, a password manager holds secrets.
pub const DENIED_APPS: &[&str] = &[
    // terminals
    "xterm",
    "uxterm",
    "rxvt",
    "urxvt",
    "gnome-terminal",
    "gnome-terminal-server",
    "org.gnome.terminal",
    "org.gnome.console",
    "kgx",
    "konsole",
    "xfce4-terminal",
    "mate-terminal",
    "lxterminal",
    "qterminal",
    "terminator",
    "tilix",
    "alacritty",
    "kitty",
    "wezterm",
    "wezterm-gui",
    "foot",
    "st",
    "st-256color",
    "sakura",
    "guake",
    "tilda",
    "terminology",
    "yakuake",
    "cool-retro-term",
    "ptyxis",
    // ClawDesk itself
    "clawdesk",
    "clawdesk-app",
    // password managers and key stores
    "keepassxc",
    "keepass2",
    "keepass",
    "bitwarden",
    "1password",
    "enpass",
    "seahorse",
    "kwalletmanager5",
    "kwalletmanager",
    "gnome-keyring",
    "secrets",
    "passwordsafe",
    "org.gnome.world.secrets",
    "qtpass",
    "lastpass",
    "dashlane",
];

/// Whether a key combination acts on the session itself: lock the screen, log out, switch to
/// a text console, kill the X server.
pub fn is_session_combo(combo: &crate::act::KeyCombo) -> bool {
    use crate::act::action::{KeyName, NamedKey};
    let has = |k: NamedKey| combo.keys.contains(&KeyName::Named(k));
    let ctrl_alt = has(NamedKey::Control) && has(NamedKey::Alt);
    let function_key = combo
        .keys
        .iter()
        .any(|k| matches!(k, KeyName::Named(NamedKey::F(1..=12))));
    let l = combo
        .keys
        .iter()
        .any(|k| matches!(k, KeyName::Char(c) if c.eq_ignore_ascii_case(&'l')));
    (ctrl_alt && (has(NamedKey::Delete) || has(NamedKey::Backspace) || function_key))
        || (has(NamedKey::Super) && l)
}

impl AppIdentity {
    /// The identity of an X window: the accessible name of the AT-SPI app of the same process
    /// (if any) and its WM_CLASS.
    pub fn of_window(window: &crate::x11::ActiveWindow, accessible_name: Option<String>) -> Self {
        AppIdentity {
            accessible_name,
            window_class: Some(window.class.clone()).filter(|c| !c.is_empty()),
            window_instance: Some(window.instance.clone()).filter(|c| !c.is_empty()),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.accessible_name,
            &self.window_class,
            &self.window_instance,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }

    /// The best single name to show a person.
    pub fn display_name(&self) -> String {
        self.names().next().unwrap_or("an unnamed app").to_owned()
    }
}

/// The element that has keyboard focus, as far as the guard needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocusedField {
    /// The element's accessible name, the label a person reads.
    pub name: String,
    /// Whether it is a password field, which keystrokes must never reach.
    pub is_password: bool,
}

/// What is known of the element that would receive keystrokes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FieldFocus {
    /// Nobody can tell (no accessibility tree for the app, or its walk was cut short).
    #[default]
    Unknown,
    /// The app was read whole and no element has focus.
    Nothing,
    /// This element has focus.
    Field(FocusedField),
}

/// What the guard knows of the desktop when it judges an action: what would really receive
/// it, read at the moment of acting.
#[derive(Debug, Clone, Default)]
pub struct ActionContext {
    /// The app whose window has keyboard focus (the receiver of keystrokes).
    pub app: Option<AppIdentity>,
    /// The X window that has keyboard focus, to tell when it changed.
    pub window: Option<u32>,
    /// The element of that app that would receive the keystrokes.
    pub focused: FieldFocus,
    /// For each point the action touches, in order, the app whose window is under it
    /// (`None`: no app's window there); for a pointer action without a point, the app under
    /// the pointer where it is.
    pub pointed: Vec<Option<PointedApp>>,
    /// What a person approving the action is shown; filled only when someone is asked.
    pub shown: Option<Shown>,
}

/// The app whose window is under a point of a pointer action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointedApp {
    /// Who the window belongs to.
    pub app: AppIdentity,
    /// The X window under the point, to tell when it changed.
    pub window: u32,
}

impl ActionContext {
    /// The app that would really receive `action`, to show a person.
    pub fn receiver(&self, action: &Action) -> Option<String> {
        if action.is_pointer() {
            self.pointed
                .first()
                .map(|p| p.as_ref().map_or("no app".into(), |p| p.app.display_name()))
        } else {
            self.app.as_ref().map(AppIdentity::display_name)
        }
    }

    /// What must not change between the check and the moment of acting, in words.
    pub fn target(&self, action: &Action) -> String {
        if action.is_pointer() {
            let windows: Vec<String> = self
                .pointed
                .iter()
                .map(|p| match p {
                    Some(p) => format!("{} (window {:#x})", p.app.display_name(), p.window),
                    None => "no app".into(),
                })
                .collect();
            windows.join(", ")
        } else {
            let app = self
                .app
                .as_ref()
                .map_or("no app".into(), AppIdentity::display_name);
            let window = self
                .window
                .map_or(String::new(), |w| format!(" (window {w:#x})"));
            let field = match &self.focused {
                FieldFocus::Unknown => "an unknown element".to_owned(),
                FieldFocus::Nothing => "no element".to_owned(),
                FieldFocus::Field(f) => format!("the field {:?}", f.name),
            };
            format!("{app}{window}, {field}")
        }
    }
}

/// What the person deciding on an action sees: the screen it was chosen on, the model's
/// reasoning, and the element under its point.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The screenshot the action was chosen on.
    pub screen: Arc<crate::Screenshot>,
    /// The model's reasoning for the action, when it gave any.
    pub thought: Option<String>,
    /// The element under the action's first point, as `role "name"`.
    pub element: Option<String>,
}

/// What a person is asked to approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// How many steps the episode had taken before this action.
    pub step: u32,
    /// The action awaiting a decision.
    pub action: Action,
    /// The action in words, from [`Action::describe`].
    pub description: String,
    /// The app that would really receive the action, by the name shown to a person.
    pub app: Option<String>,
    /// The screen, reasoning and element to show with it; not serialised.
    #[serde(skip)]
    pub shown: Option<Shown>,
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Run the action.
    Approve,
    /// Do not run it; the guard refuses with [`Refusal::Rejected`].
    Reject {
        /// Why, if the person said.
        reason: Option<String>,
    },
}

/// Asks a person before each action runs; the UI implements it, tests answer by script.
pub trait Approver: Send + Sync {
    /// Shows `request` to a person and resolves with their decision.
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;
}

/// The guard's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardConfig {
    /// Which apps the agent may act in.
    pub allowlist: Allowlist,
    /// At most this many actions per episode.
    pub max_steps: Option<u32>,
    /// Apps a person allowed to be typed into although nobody can tell which of their
    /// elements has focus (apps without an accessibility tree, such as xterm).
    #[serde(default)]
    pub unknown_focus: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            allowlist: Allowlist::Any,
            max_steps: Some(200),
            unknown_focus: Vec::new(),
        }
    }
}

/// Judges each action before it runs.
#[derive(Clone)]
pub struct Guard {
    config: GuardConfig,
    stop: StopFlag,
    approver: Option<Arc<dyn Approver>>,
    taken: Arc<AtomicU32>,
}

impl Guard {
    /// A guard with `config` that checks `stop`, with no steps taken and nobody to ask.
    pub fn new(config: GuardConfig, stop: StopFlag) -> Self {
        Guard {
            config,
            stop,
            approver: None,
            taken: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Requires a person's approval before every action.
    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// The stop flag the guard checks before every action.
    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Whether a person approves each action (so there is something to show them).
    pub fn asks_a_person(&self) -> bool {
        self.approver.is_some()
    }

    /// How many actions have counted against the step limit so far.
    pub fn steps_taken(&self) -> u32 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Judges `action` in `context`; on `Ok` the caller may run it, and it counts as a step.
    pub async fn check(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        self.check_rules(action, context)?;
        self.ask(action, context).await?;
        self.count_step();
        Ok(())
    }

    /// Asks the person, when one approves each action; `Ok` at once otherwise.
    pub async fn ask(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        let Some(approver) = &self.approver else {
            return Ok(());
        };
        let request = ApprovalRequest {
            step: self.steps_taken(),
            action: action.clone(),
            description: action.describe(),
            app: context.receiver(action),
            shown: context.shown.clone(),
        };
        if let Decision::Reject { reason } = approver.approve(&request).await {
            return Err(Refusal::Rejected { reason });
        }
        // The stop key may have been pressed while the person was deciding.
        if self.stop.is_stopped() {
            return Err(Refusal::Stopped);
        }
        Ok(())
    }

    /// Counts one action against the step limit.
    pub fn count_step(&self) {
        self.taken.fetch_add(1, Ordering::SeqCst);
    }

    /// Judges an action the person chose themselves (a takeover, an edited action): the rules
    /// hold as for any action, and it counts as a step, but nobody is asked to approve it.
    pub fn check_persons(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        self.check_rules(action, context)?;
        self.count_step();
        Ok(())
    }

    /// The checks that need nobody's answer.
    pub fn check_rules(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        if self.stop.is_stopped() {
            return Err(Refusal::Stopped);
        }
        if let Some(limit) = self.config.max_steps
            && self.steps_taken() >= limit
        {
            return Err(Refusal::StepLimit { limit });
        }
        if matches!(action, Action::Wait { .. }) {
            return Ok(());
        }
        if let Action::Key { combo } = action
            && crate::act::KeyCombo::parse(combo).is_ok_and(|c| is_session_combo(&c))
        {
            return Err(Refusal::SessionKey {
                combo: combo.clone(),
            });
        }
        if action.is_pointer() {
            if context.pointed.is_empty() {
                return Err(Refusal::NoWindowAtPoint);
            }
            for pointed in &context.pointed {
                let pointed = pointed.as_ref().ok_or(Refusal::NoWindowAtPoint)?;
                self.app_allowed(&pointed.app)?;
            }
        }
        if action.types_text() {
            let app = context.app.as_ref().ok_or(Refusal::NoFocusedApp)?;
            self.app_allowed(app)?;
            match &context.focused {
                FieldFocus::Field(field) if field.is_password => {
                    return Err(Refusal::PasswordField {
                        field: field.name.clone(),
                    });
                }
                FieldFocus::Unknown if !self.allows_unknown_focus(app) => {
                    return Err(Refusal::UnknownFocus {
                        app: app.display_name(),
                        why: "its accessibility tree could not be read whole".into(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The allowlist and the deny-list: under an allowlist every name the app goes by must be
    /// on it (with one matching name of several enough, an app could pass by one name while
    /// being another); the deny-list holds unless the person named the app.
    fn app_allowed(&self, app: &AppIdentity) -> Result<(), Refusal> {
        let named = |n: &str, list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(n));
        let listed: &[String] = match &self.config.allowlist {
            Allowlist::Any => &[],
            Allowlist::Only(allowed) => allowed,
        };
        if let Allowlist::Only(allowed) = &self.config.allowlist
            && !all_named(app, allowed)
        {
            return Err(Refusal::NotAllowed {
                app: app.display_name(),
                allowed: allowed.join(", "),
            });
        }
        if let Some(denied) = app
            .names()
            .find(|n| DENIED_APPS.iter().any(|d| d.eq_ignore_ascii_case(n)) && !named(n, listed))
        {
            return Err(Refusal::Denied {
                app: denied.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the person allowed typing into `app` without knowing its focused element.
    fn allows_unknown_focus(&self, app: &AppIdentity) -> bool {
        all_named(app, &self.config.unknown_focus)
    }
}

/// Whether `app` has a name and every name it has is in `list` (ignoring case).
fn all_named(app: &AppIdentity, list: &[String]) -> bool {
    app.names().next().is_some()
        && app
            .names()
            .all(|n| list.iter().any(|a| a.eq_ignore_ascii_case(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::NormPoint;

    fn click() -> Action {
        Action::Click {
            at: NormPoint::new(0.5, 0.5),
            button: Default::default(),
            count: 1,
        }
    }

    fn identity(name: &str, class: &str) -> AppIdentity {
        AppIdentity {
            accessible_name: Some(name.into()),
            window_class: Some(class.into()),
            window_instance: Some(name.to_lowercase()),
        }
    }

    /// Focus and pointer both on `name`'s window, whose element with focus is known.
    fn in_app(name: &str) -> ActionContext {
        let app = identity(name, &format!("{name}-class"));
        ActionContext {
            app: Some(app.clone()),
            window: Some(1),
            focused: FieldFocus::Nothing,
            pointed: vec![Some(PointedApp { app, window: 1 })],
            shown: None,
        }
    }

    fn typing(text: &str) -> Action {
        Action::Type {
            text: text.into(),
            paste: false,
        }
    }

    fn guard(allowlist: Allowlist, max_steps: Option<u32>) -> Guard {
        Guard::new(
            GuardConfig {
                allowlist,
                max_steps,
                ..GuardConfig::default()
            },
            StopFlag::new(),
        )
    }

    #[tokio::test]
    async fn allowlist_needs_every_name_the_app_goes_by() {
        let g = guard(
            Allowlist::Only(vec![
                "Mousepad".into(),
                "mousepad-class".into(),
                "calc".into(),
                "calc-class".into(),
            ]),
            None,
        );
        assert!(g.check(&click(), &in_app("mousepad")).await.is_ok());
        assert!(g.check(&typing("x"), &in_app("calc")).await.is_ok());
        let err = g.check(&click(), &in_app("xterm")).await.unwrap_err();
        assert!(matches!(err, Refusal::NotAllowed { .. }), "{err}");
        // Issue 26: a window whose process is the named app's but whose class is a terminal's
        // (or the reverse) passes by one name only: refused.
        let mut mixed = in_app("mousepad");
        mixed.app = Some(identity("mousepad", "XTerm"));
        let err = g.check(&typing("ls"), &mixed).await.unwrap_err();
        assert!(matches!(err, Refusal::NotAllowed { .. }), "{err}");
        // An app with no name at all cannot be on any list.
        let mut nameless = in_app("mousepad");
        nameless.app = Some(AppIdentity::default());
        let err = g.check(&typing("ls"), &nameless).await.unwrap_err();
        assert!(matches!(err, Refusal::NotAllowed { .. }), "{err}");
        let err = g
            .check(&typing("x"), &ActionContext::default())
            .await
            .unwrap_err();
        assert_eq!(err, Refusal::NoFocusedApp);
        // Waiting touches no app.
        assert!(
            g.check(&Action::Wait { ms: 1 }, &ActionContext::default())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn typing_into_password_is_refused_but_clicking_is_not() {
        let g = guard(Allowlist::Any, None);
        let ctx = ActionContext {
            focused: FieldFocus::Field(FocusedField {
                name: "Password".into(),
                is_password: true,
            }),
            ..in_app("zenity")
        };
        let err = g
            .check(
                &Action::Type {
                    text: "hunter2".into(),
                    paste: false,
                },
                &ctx,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Refusal::PasswordField { .. }));
        assert!(
            g.check(
                &Action::Key {
                    combo: "Return".into()
                },
                &ctx
            )
            .await
            .is_err()
        );
        assert!(g.check(&click(), &ctx).await.is_ok());
    }

    /// Issue 26: X11 sends a click to the window under the pointer, not to the focused one.
    #[tokio::test]
    async fn pointer_actions_are_judged_by_the_window_under_the_point() {
        let g = guard(
            Allowlist::Only(vec!["mousepad".into(), "mousepad-class".into()]),
            None,
        );
        let mut ctx = in_app("mousepad");
        ctx.pointed = vec![Some(PointedApp {
            app: identity("zenity", "Zenity"),
            window: 2,
        })];
        let err = g.check(&click(), &ctx).await.unwrap_err();
        assert!(
            matches!(err, Refusal::NotAllowed { ref app, .. } if app == "zenity"),
            "{err}"
        );
        // A drag is judged at both ends.
        let drag = Action::Drag {
            from: NormPoint::new(0.1, 0.1),
            to: NormPoint::new(0.9, 0.9),
            button: Default::default(),
        };
        let mut ctx = in_app("mousepad");
        ctx.pointed.push(None);
        assert_eq!(
            g.check(&drag, &ctx).await.unwrap_err(),
            Refusal::NoWindowAtPoint
        );
        // Keystrokes still go by focus, whatever is under the pointer.
        let mut ctx = in_app("mousepad");
        ctx.pointed = vec![None];
        assert!(g.check(&typing("hi"), &ctx).await.is_ok());
    }

    #[tokio::test]
    async fn the_deny_list_holds_when_any_app_is_allowed_unless_the_app_is_named() {
        let g = guard(Allowlist::Any, None);
        for name in [
            "xterm",
            "gnome-terminal-server",
            "clawdesk-app",
            "keepassxc",
        ] {
            let err = g
                .check(&typing("rm -rf ~"), &in_app(name))
                .await
                .unwrap_err();
            assert!(matches!(err, Refusal::Denied { .. }), "{name}: {err}");
            let err = g.check(&click(), &in_app(name)).await.unwrap_err();
            assert!(matches!(err, Refusal::Denied { .. }), "{name}: {err}");
        }
        let named = guard(
            Allowlist::Only(vec!["xterm".into(), "xterm-class".into()]),
            None,
        );
        assert!(named.check(&typing("ls"), &in_app("xterm")).await.is_ok());
    }

    #[tokio::test]
    async fn session_key_combinations_are_never_sent() {
        let g = guard(Allowlist::Any, None);
        for combo in [
            "ctrl+alt+Delete",
            "ctrl+alt+BackSpace",
            "ctrl+alt+F1",
            "alt+ctrl+F12",
            "super+l",
            "super+L",
        ] {
            let key = Action::Key {
                combo: combo.into(),
            };
            let err = g.check(&key, &in_app("mousepad")).await.unwrap_err();
            assert!(matches!(err, Refusal::SessionKey { .. }), "{combo}: {err}");
        }
        for combo in ["ctrl+l", "alt+F4", "ctrl+Delete", "F1"] {
            let key = Action::Key {
                combo: combo.into(),
            };
            assert!(g.check(&key, &in_app("mousepad")).await.is_ok(), "{combo}");
        }
    }

    #[tokio::test]
    async fn typing_with_focus_unknown_needs_the_persons_opt_in() {
        let mut ctx = in_app("xpad");
        ctx.focused = FieldFocus::Unknown;
        let g = guard(Allowlist::Any, None);
        let err = g.check(&typing("x"), &ctx).await.unwrap_err();
        assert!(matches!(err, Refusal::UnknownFocus { .. }), "{err}");
        assert!(err.to_string().contains("--allow-unknown-focus"), "{err}");
        // Clicking needs no focus.
        assert!(g.check(&click(), &ctx).await.is_ok());
        let opted = Guard::new(
            GuardConfig {
                allowlist: Allowlist::Any,
                max_steps: None,
                unknown_focus: vec!["xpad".into(), "xpad-class".into()],
            },
            StopFlag::new(),
        );
        assert!(opted.check(&typing("x"), &ctx).await.is_ok());
    }

    #[tokio::test]
    async fn step_limit_and_stop() {
        let g = guard(Allowlist::Any, Some(2));
        let ctx = in_app("mousepad");
        g.check(&click(), &ctx).await.unwrap();
        g.check(&click(), &ctx).await.unwrap();
        assert_eq!(
            g.check(&click(), &ctx).await.unwrap_err(),
            Refusal::StepLimit { limit: 2 }
        );
        let g = guard(Allowlist::Any, None);
        g.stop_flag().stop();
        assert_eq!(g.check(&click(), &ctx).await.unwrap_err(), Refusal::Stopped);
    }

    struct Scripted(
        std::sync::Mutex<Vec<Decision>>,
        std::sync::Mutex<Vec<String>>,
    );

    impl Approver for Scripted {
        fn approve<'a>(
            &'a self,
            r: &'a ApprovalRequest,
        ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
            self.1.lock().unwrap().push(r.description.clone());
            let d = self.0.lock().unwrap().remove(0);
            Box::pin(async move { d })
        }
    }

    #[tokio::test]
    async fn a_person_approves_each_action() {
        let approver = Arc::new(Scripted(
            std::sync::Mutex::new(vec![
                Decision::Approve,
                Decision::Reject {
                    reason: Some("wrong button".into()),
                },
            ]),
            Default::default(),
        ));
        let g = guard(Allowlist::Any, None).with_approver(approver.clone());
        let ctx = in_app("mousepad");
        g.check(&click(), &ctx).await.unwrap();
        let err = g
            .check(
                &Action::Type {
                    text: "x".into(),
                    paste: false,
                },
                &ctx,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Refusal::Rejected {
                reason: Some("wrong button".into())
            }
        );
        assert_eq!(g.steps_taken(), 1);
        assert_eq!(
            approver.1.lock().unwrap().as_slice(),
            ["left click at (0.500, 0.500)", "type \"x\""]
        );
    }
    #[tokio::test]
    async fn the_persons_own_action_is_not_put_to_them_but_keeps_the_rules() {
        // An approver with no answers: asking it would panic.
        let approver = Arc::new(Scripted(Default::default(), Default::default()));
        let g = guard(Allowlist::Any, Some(1)).with_approver(approver.clone());
        let ctx = in_app("mousepad");
        g.check_persons(&click(), &ctx).unwrap();
        assert_eq!(g.steps_taken(), 1);
        assert!(approver.1.lock().unwrap().is_empty(), "nobody was asked");
        assert_eq!(
            g.check_persons(&click(), &ctx).unwrap_err(),
            Refusal::StepLimit { limit: 1 }
        );
        let g = guard(Allowlist::Any, None).with_approver(approver);
        g.stop_flag().stop();
        assert_eq!(
            g.check_persons(&click(), &ctx).unwrap_err(),
            Refusal::Stopped
        );
    }
}
