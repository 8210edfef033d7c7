//! Why the guard refused an action: the one reason type the guard returns, the desktop's
//! error wraps and the window shows. A module of its own, depending on nothing else of the
//! crate, so the error type can name it without importing the guard.

use serde::{Deserialize, Serialize};

/// Why the guard said no. Nothing was sent to the desktop.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The focused app is not on the allowlist.
    #[error(
        "{app} is not on the app allowlist (allowed: {allowed}); add it with --allow or in the settings"
    )]
    NotAllowed {
        /// The app, by the name shown to a person.
        app: String,
        /// The allowlist's names, comma-separated.
        allowed: String,
    },
    /// No app has focus to receive the keystrokes, so nothing can be checked.
    #[error("no app has focus, so the allowlist cannot be checked")]
    NoFocusedApp,
    /// The app is on the deny-list (terminals, ClawDesk itself, password managers), which
    /// holds even when any app is allowed; naming it in the allowlist lifts it.
    #[error(
        "{app} is on the deny-list (terminals, ClawDesk, password managers); name it with --allow to let the agent act in it"
    )]
    Denied {
        /// The name by which the app matched the deny-list.
        app: String,
    },
    /// A key combination for the session itself (lock, log out, switch console).
    #[error("the key combination {combo} acts on the session, not an app, and is never sent")]
    SessionKey {
        /// The combination as the action wrote it.
        combo: String,
    },
    /// Nobody can tell which element would receive the keystrokes (the app has no
    /// accessibility tree, or its walk was cut short).
    #[error(
        "which element of {app} has keyboard focus is unknown ({why}), so typing could reach a password field; allow it with --allow-unknown-focus {app}"
    )]
    UnknownFocus {
        /// The app that would receive the keystrokes, by the name shown to a person.
        app: String,
        /// Why its focused element is unknown.
        why: String,
    },
    /// A pointer action whose point is on no app's window (the desktop background).
    #[error("no app window is under the action's point")]
    NoWindowAtPoint,
    /// What would receive the action changed between the check and the moment of acting
    /// (a person approving, an earlier action of the same reply).
    #[error("the action's target changed from {was} to {now} before it ran")]
    TargetChanged {
        /// The target when the action was checked, in words.
        was: String,
        /// The target at the moment of acting, in words.
        now: String,
    },
    /// The keystrokes would go into a password field.
    #[error("typing into the password field {field:?} is not allowed")]
    PasswordField {
        /// The password field's accessible name.
        field: String,
    },
    /// The episode has taken as many steps as it may.
    #[error("the limit of {limit} steps is reached")]
    StepLimit {
        /// The most actions an episode may take.
        limit: u32,
    },
    /// The stop key or a person halted the agent.
    #[error("the agent is stopped; reset the stop before going on")]
    Stopped,
    /// A person looked at the action and said no.
    #[error("a person rejected the action{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Rejected {
        /// What the person said, if anything.
        reason: Option<String>,
    },
}
