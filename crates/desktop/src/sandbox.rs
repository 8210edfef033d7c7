//! A private desktop: a nested X server (Xvfb, or Xephyr to watch), a window manager, a D-Bus
//! session with its own AT-SPI bus, and the apps the agent should work in.
//!
//! The agent can then click and type without touching the person's own desktop, and every
//! test runs against the same real stack. Dropping a [`Sandbox`] stops everything it started.

use std::ffi::OsString;
use std::io::Read as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{DesktopError, Result};

/// How to build the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Screen width in pixels.
    pub width: u32,
    /// Screen height in pixels.
    pub height: u32,
    /// Xephyr in a window on a host display instead of an invisible Xvfb.
    pub visible: bool,
    /// The display Xephyr's window opens on; `None` means `$DISPLAY`.
    pub host_display: Option<String>,
    /// Run openbox, which gives windows decorations, focus and the EWMH hints capture needs.
    pub window_manager: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            width: 1280,
            height: 800,
            visible: false,
            host_display: None,
            window_manager: true,
        }
    }
}

/// A running private desktop.
#[derive(Debug)]
pub struct Sandbox {
    display: String,
    dbus_address: String,
    dir: PathBuf,
    /// Started processes, each the leader of its own process group, in start order.
    processes: Vec<(String, Child)>,
}

/// How long each part may take to come up before we call it broken.
const START_TIMEOUT: Duration = Duration::from_secs(15);

impl Sandbox {
    /// Starts the X server, the D-Bus session and (if asked) the window manager.
    pub fn start(options: &SandboxOptions) -> Result<Sandbox> {
        let dir = private_dir()?;
        let mut sandbox = Sandbox {
            display: String::new(),
            dbus_address: String::new(),
            dir,
            processes: Vec::new(),
        };
        sandbox.start_x_server(options)?;
        sandbox.start_dbus()?;
        if options.window_manager {
            let mut wm = sandbox.command(&find_program("openbox", "openbox")?);
            wm.args(["--sm-disable"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            sandbox.spawn("openbox", &mut wm)?;
            crate::x11::wait_for_window_manager(&sandbox.display, START_TIMEOUT)?;
        }
        tracing::info!(display = %sandbox.display, "sandbox ready");
        Ok(sandbox)
    }

    /// The X display name, for example `:3`.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The session bus address, where the AT-SPI bus is found.
    pub fn dbus_address(&self) -> &str {
        &self.dbus_address
    }

    /// The environment an app needs to live in this sandbox: display, session bus and private
    /// config/cache folders so that apps start from their defaults every time.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let d = |sub: &str| self.dir.join(sub).into_os_string();
        vec![
            ("DISPLAY".into(), self.display.clone().into()),
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                self.dbus_address.clone().into(),
            ),
            ("XDG_RUNTIME_DIR".into(), d("run")),
            ("XDG_CONFIG_HOME".into(), d("config")),
            ("XDG_DATA_HOME".into(), d("data")),
            ("XDG_CACHE_HOME".into(), d("cache")),
            // The server takes no authentication, but python-xlib refuses to connect when the
            // authority file is missing; an empty one satisfies it.
            ("XAUTHORITY".into(), d("Xauthority")),
            ("GSETTINGS_BACKEND".into(), "memory".into()),
            ("GTK_A11Y".into(), "atspi".into()),
            ("GDK_BACKEND".into(), "x11".into()),
        ]
    }

    /// A command that runs inside the sandbox (its environment applied, accessibility on).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env())
            .env_remove("NO_AT_BRIDGE")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts an app in the sandbox and returns its process id. It is stopped with the sandbox.
    pub fn launch(&mut self, program: &str, args: &[&str]) -> Result<u32> {
        let path = find_program(program, program)?;
        let mut cmd = self.command(&path);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        self.spawn(program, &mut cmd)
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<u32> {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| DesktopError::io(format!("starting {name}"), e))?;
        let pid = child.id();
        tracing::debug!(name, pid, "sandbox process started");
        self.processes.push((name.to_owned(), child));
        Ok(pid)
    }

    fn start_x_server(&mut self, options: &SandboxOptions) -> Result<()> {
        // The server picks a free display number and writes it to this pipe (-displayfd),
        // which avoids races between sandboxes started at once.
        let (read_end, write_end) = pipe()?;
        let fd = write_end.as_raw_fd().to_string();
        let (name, mut cmd) = if options.visible {
            let mut cmd = Command::new(find_program("Xephyr", "xserver-xephyr")?);
            cmd.args(["-screen", &format!("{}x{}", options.width, options.height)]);
            if let Some(host) = &options.host_display {
                cmd.env("DISPLAY", host);
            }
            ("Xephyr", cmd)
        } else {
            let mut cmd = Command::new(find_program("Xvfb", "xvfb")?);
            cmd.args([
                "-screen",
                "0",
                &format!("{}x{}x24", options.width, options.height),
            ]);
            ("Xvfb", cmd)
        };
        // The server's log goes to a file: a pipe nobody drains would stall a chatty server
        // once its buffer filled.
        let log_path = self.dir.join("xserver.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| DesktopError::io(format!("creating {}", log_path.display()), e))?;
        cmd.args(["-displayfd", &fd, "-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.spawn(name, &mut cmd)?;
        drop(write_end);
        let number = read_line_with_timeout(read_end, START_TIMEOUT).map_err(|e| {
            let said = std::fs::read_to_string(&log_path).unwrap_or_default();
            DesktopError::Sandbox(format!(
                "{name} did not start ({e}); it said: {}",
                said.trim()
            ))
        })?;
        let number: u32 = number
            .trim()
            .parse()
            .map_err(|_| DesktopError::Sandbox(format!("{name} reported display {number:?}")))?;
        self.display = format!(":{number}");
        Ok(())
    }

    fn start_dbus(&mut self) -> Result<()> {
        for sub in ["run", "config", "data", "cache"] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p)
                .map_err(|e| DesktopError::io(format!("creating {}", p.display()), e))?;
        }
        let auth = self.dir.join("Xauthority");
        std::fs::write(&auth, b"")
            .map_err(|e| DesktopError::io(format!("creating {}", auth.display()), e))?;
        let mut cmd = self.command(find_program("dbus-daemon", "dbus")?);
        cmd.args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        self.spawn("dbus-daemon", &mut cmd)?;
        let stdout = self
            .processes
            .last_mut()
            .and_then(|(_, c)| c.stdout.take())
            .ok_or_else(|| DesktopError::Sandbox("dbus-daemon has no stdout".into()))?;
        let address =
            read_line_with_timeout(OwnedFd::from(stdout), START_TIMEOUT).map_err(|e| {
                DesktopError::Sandbox(format!("dbus-daemon did not print its address ({e})"))
            })?;
        self.dbus_address = address.trim().to_owned();
        Ok(())
    }

    /// Stops every process, newest first: SIGTERM to each process group, then SIGKILL to
    /// whatever is left after a grace period.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        // Newest first (apps, window manager, D-Bus, then the X server), each given a moment
        // to exit on SIGTERM, so clients do not see their display vanish under them.
        while let Some((name, mut child)) = self.processes.pop() {
            signal_group(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Ok(None) => {
                        tracing::warn!(name = %name, "did not stop on SIGTERM; killing");
                        signal_group(child.id(), libc::SIGKILL);
                        let _ = child.wait();
                        break;
                    }
                }
            }
            // Helpers the process started (the AT-SPI bus launcher, say) share its group.
            signal_group(child.id(), libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn signal_group(pid: u32, signal: i32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale group id yields ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// Finds an executable on PATH, or names the Debian package that provides it.
pub fn find_program(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .ok_or_else(|| DesktopError::MissingProgram {
            program: program.to_owned(),
            package: package.to_owned(),
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("clawdesk-sandbox-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
        .map_err(|e| DesktopError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// A pipe whose write end a child inherits (no close-on-exec) and whose read end it does not.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(DesktopError::io(
            "creating a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((read, write))
}

/// Reads up to the first newline, giving up after `timeout` or at end of file.
fn read_line_with_timeout(fd: OwnedFd, timeout: Duration) -> std::io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(fd);
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ));
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        match file.read(&mut byte)? {
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a full line",
                ));
            }
            _ => line.push(byte[0]),
        }
    }
    String::from_utf8(line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
