/// Everything that can go wrong observing or acting on a desktop, each naming the cause and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesktopError {
    /// No X display could be opened.
    #[error(
        "cannot open the X display {display:?}: {detail}; start one with `clawdesk sandbox` or set DISPLAY"
    )]
    NoDisplay {
        /// The display that was tried, such as `:0`.
        display: String,
        /// Why it could not be opened.
        detail: String,
    },
    /// No accessibility bus could be reached.
    #[error(
        "cannot reach the AT-SPI accessibility bus: {detail}; install at-spi2-core and run inside a D-Bus session \
         (for example `clawdesk sandbox`, or `dbus-run-session`), and make sure NO_AT_BRIDGE is not set"
    )]
    NoAccessibilityBus {
        /// What D-Bus said when asked for the bus or connecting to it.
        detail: String,
    },
    /// No running app answers to that name.
    #[error("no app named {name:?} is on the accessibility bus; running apps: {available}")]
    UnknownApp {
        /// The app name that was asked for.
        name: String,
        /// The names of the apps that are on the bus, comma-separated (`none` when none is).
        available: String,
    },
    /// An app did not answer the accessibility bus in time.
    #[error("{app} did not answer the accessibility bus within {after_ms} ms; it may be hung")]
    AppNotResponding {
        /// The app's accessible name.
        app: String,
        /// How long it was given to answer, in milliseconds.
        after_ms: u64,
    },
    /// A normalised coordinate lies outside [0,1] on the surface it refers to.
    #[error("point ({x}, {y}) is off the observed surface ({surface}); coordinates are in [0, 1]")]
    OffSurface {
        /// The horizontal coordinate as given.
        x: f64,
        /// The vertical coordinate as given.
        y: f64,
        /// The surface it was meant for, in words ([`crate::Surface::describe`]).
        surface: String,
    },
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
    Refused(#[from] crate::refusal::Refusal),
    /// The stop key (or a person) halted the agent mid-action.
    #[error("stopped by the stop key or a person")]
    Stopped,
    /// A program the sandbox needs is not installed.
    #[error("{program} is not installed; install it with `apt-get install {package}`")]
    MissingProgram {
        /// The executable that was not found on `PATH`.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// A sandbox process failed to start or died.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// A D-Bus call failed for a reason other than the above.
    #[error("accessibility call failed: {0}")]
    Accessibility(String),
    /// A file or pipe failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done when it failed, such as `starting the input thread`.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl DesktopError {
    /// Whether this is the stop key (or a person) halting the agent, mid-action or before one.
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            DesktopError::Stopped | DesktopError::Refused(crate::refusal::Refusal::Stopped)
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
