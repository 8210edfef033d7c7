/// Everything that can go wrong observing or acting on a desktop, each naming the cause and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesktopError {
    /// No X display could be opened.
    #[error(
        "cannot open the X display {display:?}: {detail}; start one with `clawdesk sandbox` or set DISPLAY"
    )]
    NoDisplay { display: String, detail: String },
    /// No accessibility bus could be reached.
    #[error(
        "cannot reach the AT-SPI accessibility bus: {detail}; install at-spi2-core and run inside a D-Bus session \
         (for example `clawdesk sandbox`, or `dbus-run-session`), and make sure NO_AT_BRIDGE is not set"
    )]
    NoAccessibilityBus { detail: String },
    /// No running app answers to that name.
    #[error("no app named {name:?} is on the accessibility bus; running apps: {available}")]
    UnknownApp { name: String, available: String },
    /// An app did not answer the accessibility bus in time.
    #[error("{app} did not answer the accessibility bus within {after_ms} ms; it may be hung")]
    AppNotResponding { app: String, after_ms: u64 },
    /// A normalised coordinate lies outside [0,1] on the surface it refers to.
    #[error("point ({x}, {y}) is off the observed surface ({surface}); coordinates are in [0, 1]")]
    OffSurface { x: f64, y: f64, surface: String },
    /// An action that cannot be carried out as written.
    #[error("invalid action: {0}")]
    InvalidAction(String),
    /// Taking a screenshot failed.
    #[error("screen capture failed: {0}")]
    Capture(String),
    /// Sending input failed.
    #[error("input failed: {0}")]
    Input(String),
    /// The guard refused the action; nothing was sent to the desktop.
    #[error("refused: {0}")]
    Refused(#[from] crate::guard::Refusal),
    /// The stop key (or a person) halted the agent mid-action.
    #[error("stopped by the stop key or a person")]
    Stopped,
    /// A program the sandbox needs is not installed.
    #[error("{program} is not installed; install it with `apt-get install {package}`")]
    MissingProgram { program: String, package: String },
    /// A sandbox process failed to start or died.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A D-Bus call failed for a reason other than the above.
    #[error("accessibility call failed: {0}")]
    Accessibility(String),
    /// A file or pipe failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl DesktopError {
    /// Whether this is the stop key (or a person) halting the agent, mid-action or before one.
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            DesktopError::Stopped | DesktopError::Refused(crate::guard::Refusal::Stopped)
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DesktopError::Io {
            context: context.into(),
            source,
        }
    }
}

pub(crate) type Result<T, E = DesktopError> = std::result::Result<T, E>;
