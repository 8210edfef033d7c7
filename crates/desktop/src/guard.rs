//! The gate every action passes before it reaches the desktop: the stop flag, a step limit,
//! the app allowlist, no typing into password fields, and (when asked for) a person's approval.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::act::Action;
use crate::stop::StopFlag;

/// Why the guard said no. Nothing was sent to the desktop.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The focused app is not on the allowlist.
    #[error(
        "{app} is not on the app allowlist (allowed: {allowed}); add it with --allow or in the settings"
    )]
    NotAllowed { app: String, allowed: String },
    /// The allowlist is on but no app has focus to check against it.
    #[error("no app has focus, so the allowlist cannot be checked")]
    NoFocusedApp,
    /// The keystrokes would go into a password field.
    #[error("typing into the password field {field:?} is not allowed")]
    PasswordField { field: String },
    /// The episode has taken as many steps as it may.
    #[error("the limit of {limit} steps is reached")]
    StepLimit { limit: u32 },
    /// The stop key or a person halted the agent.
    #[error("the agent is stopped; reset the stop before going on")]
    Stopped,
    /// A person looked at the action and said no.
    #[error("a person rejected the action{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Rejected { reason: Option<String> },
}

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
    /// WM_CLASS class and instance of the active window.
    pub window_class: Option<String>,
    pub window_instance: Option<String>,
}

impl AppIdentity {
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
    pub name: String,
    pub is_password: bool,
}

/// What the guard knows of the desktop when it judges an action.
#[derive(Debug, Clone, Default)]
pub struct ActionContext {
    pub app: Option<AppIdentity>,
    pub focused: Option<FocusedField>,
    /// What a person approving the action is shown; filled only when someone is asked.
    pub shown: Option<Shown>,
}

/// What the person deciding on an action sees: the screen it was chosen on, the model's
/// reasoning, and the element under its point.
#[derive(Debug, Clone)]
pub struct Shown {
    pub screen: Arc<crate::Screenshot>,
    pub thought: Option<String>,
    /// The element under the action's first point, as `role "name"`.
    pub element: Option<String>,
}

/// What a person is asked to approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub step: u32,
    pub action: Action,
    pub description: String,
    pub app: Option<String>,
    #[serde(skip)]
    pub shown: Option<Shown>,
}

/// A person's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject { reason: Option<String> },
}

/// Asks a person before each action runs; the UI implements it, tests answer by script.
pub trait Approver: Send + Sync {
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;
}

/// The guard's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardConfig {
    pub allowlist: Allowlist,
    /// At most this many actions per episode.
    pub max_steps: Option<u32>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            allowlist: Allowlist::Any,
            max_steps: Some(200),
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

    pub fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// Whether a person approves each action (so there is something to show them).
    pub fn asks_a_person(&self) -> bool {
        self.approver.is_some()
    }

    pub fn steps_taken(&self) -> u32 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Judges `action` in `context`; on `Ok` the caller may run it, and it counts as a step.
    pub async fn check(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        self.check_rules(action, context)?;
        if let Some(approver) = &self.approver {
            let request = ApprovalRequest {
                step: self.steps_taken(),
                action: action.clone(),
                description: action.describe(),
                app: context.app.as_ref().map(AppIdentity::display_name),
                shown: context.shown.clone(),
            };
            if let Decision::Reject { reason } = approver.approve(&request).await {
                return Err(Refusal::Rejected { reason });
            }
            // The stop key may have been pressed while the person was deciding.
            if self.stop.is_stopped() {
                return Err(Refusal::Stopped);
            }
        }
        self.taken.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Judges an action the person chose themselves (a takeover, an edited action): the rules
    /// hold as for any action, and it counts as a step, but nobody is asked to approve it.
    pub fn check_persons(&self, action: &Action, context: &ActionContext) -> Result<(), Refusal> {
        self.check_rules(action, context)?;
        self.taken.fetch_add(1, Ordering::SeqCst);
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
        if let Allowlist::Only(allowed) = &self.config.allowlist {
            let app = context.app.as_ref().ok_or(Refusal::NoFocusedApp)?;
            let ok = app
                .names()
                .any(|n| allowed.iter().any(|a| a.eq_ignore_ascii_case(n)));
            if !ok {
                return Err(Refusal::NotAllowed {
                    app: app.display_name(),
                    allowed: allowed.join(", "),
                });
            }
        }
        if action.types_text()
            && let Some(field) = context.focused.as_ref().filter(|f| f.is_password)
        {
            return Err(Refusal::PasswordField {
                field: field.name.clone(),
            });
        }
        Ok(())
    }
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

    fn in_app(name: &str) -> ActionContext {
        ActionContext {
            app: Some(AppIdentity {
                accessible_name: Some(name.into()),
                window_class: Some(format!("{name}-class")),
                window_instance: None,
            }),
            focused: None,
            shown: None,
        }
    }

    fn guard(allowlist: Allowlist, max_steps: Option<u32>) -> Guard {
        Guard::new(
            GuardConfig {
                allowlist,
                max_steps,
            },
            StopFlag::new(),
        )
    }

    #[tokio::test]
    async fn allowlist_matches_name_or_class() {
        let g = guard(
            Allowlist::Only(vec!["Mousepad".into(), "calc-class".into()]),
            None,
        );
        assert!(g.check(&click(), &in_app("mousepad")).await.is_ok());
        assert!(g.check(&click(), &in_app("calc")).await.is_ok());
        let err = g.check(&click(), &in_app("xterm")).await.unwrap_err();
        assert!(matches!(err, Refusal::NotAllowed { .. }), "{err}");
        let err = g
            .check(&click(), &ActionContext::default())
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
            app: None,
            focused: Some(FocusedField {
                name: "Password".into(),
                is_password: true,
            }),
            shown: None,
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

    #[tokio::test]
    async fn step_limit_and_stop() {
        let g = guard(Allowlist::Any, Some(2));
        let ctx = ActionContext::default();
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
        let ctx = ActionContext::default();
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
        let ctx = ActionContext::default();
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
