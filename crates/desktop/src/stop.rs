//! Halting the agent: a shared [`StopFlag`] that every action checks between its input events,
//! and a [`StopKey`] that sets it from a global key grab on the X display.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{ConnectionExt as _, GrabMode, ModMask};

use crate::error::{DesktopError, Result};
use crate::x11::{connect, x_err};

/// A halt signal shared by the stop key, the UI and the executor.
///
/// Setting it is sticky: the agent stays halted until someone calls [`StopFlag::reset`].
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Halts the agent.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether the agent is halted.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Lets the agent run again.
    pub fn reset(&self) {
        self.0.stopped.store(false, Ordering::SeqCst);
    }

    /// `Err(Stopped)` once halted: the one-line check between input events.
    pub fn check(&self) -> Result<()> {
        if self.is_stopped() {
            Err(DesktopError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Sleeps for `d` in short slices, returning early with `Err(Stopped)` when halted.
    pub fn sleep(&self, d: Duration) -> Result<()> {
        let slice = Duration::from_millis(5);
        let deadline = std::time::Instant::now() + d;
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(slice));
        }
    }

    /// Resolves when the flag is set.
    pub async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// The keys that can serve as the stop key: ones no app needs for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKeyName {
    /// The Pause key; the default.
    #[default]
    Pause,
    /// The Scroll Lock key.
    ScrollLock,
    /// The F12 function key.
    F12,
}

impl StopKeyName {
    fn keysym(self) -> u32 {
        match self {
            StopKeyName::Pause => 0xff13,
            StopKeyName::ScrollLock => 0xff14,
            StopKeyName::F12 => 0xffc9,
        }
    }
}

impl std::str::FromStr for StopKeyName {
    type Err = DesktopError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "pause" => Ok(StopKeyName::Pause),
            "scroll_lock" | "scrolllock" => Ok(StopKeyName::ScrollLock),
            "f12" => Ok(StopKeyName::F12),
            _ => Err(DesktopError::InvalidAction(format!(
                "stop key {s:?} is not one of pause, scroll_lock, f12"
            ))),
        }
    }
}

/// A global grab of the stop key on one display; pressing it sets the [`StopFlag`].
///
/// The grab lives on its own X connection and thread, polled every 5 ms, so the flag is set
/// within a few milliseconds of the key press whatever the agent is doing.
pub struct StopKey {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StopKey {
    /// Grabs `key` on `display`; fails if another program already holds that grab.
    pub fn listen(display: &str, key: StopKeyName, flag: StopFlag) -> Result<StopKey> {
        let (conn, screen) = connect(display)?;
        let root = conn.setup().roots[screen].root;
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let mapping = conn
            .get_keyboard_mapping(min, max - min + 1)
            .map_err(|e| x_err(display, e))?
            .reply()
            .map_err(|e| x_err(display, e))?;
        let per = usize::from(mapping.keysyms_per_keycode.max(1));
        let keycode = mapping
            .keysyms
            .chunks(per)
            .position(|syms| syms.contains(&key.keysym()))
            .map(|i| min + i as u8)
            .ok_or_else(|| {
                DesktopError::Input(format!("the keyboard of {display} has no {key:?} key"))
            })?;
        conn.grab_key(true, root, ModMask::ANY, keycode, GrabMode::ASYNC, GrabMode::ASYNC)
            .map_err(|e| x_err(display, e))?
            .check()
            .map_err(|e| {
                DesktopError::Input(format!(
                    "cannot grab the {key:?} stop key on {display} ({e}); another program holds it: choose another stop key"
                ))
            })?;
        conn.flush().map_err(|e| x_err(display, e))?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let quit = shutdown.clone();
        let display_name = display.to_owned();
        let thread = std::thread::Builder::new()
            .name("clawdesk-stop-key".into())
            .spawn(move || {
                while !quit.load(Ordering::Relaxed) {
                    match conn.poll_for_event() {
                        Ok(Some(Event::KeyPress(e))) if e.detail == keycode => {
                            tracing::warn!(display = %display_name, "stop key pressed: halting the agent");
                            flag.stop();
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => {
                            // Losing the display means nothing can be typed there either.
                            tracing::error!(display = %display_name, "stop key connection lost: {e}; halting");
                            flag.stop();
                            return;
                        }
                    }
                }
            })
            .map_err(|e| DesktopError::io("starting the stop-key thread", e))?;
        Ok(StopKey {
            shutdown,
            thread: Some(thread),
        })
    }
}

impl Drop for StopKey {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_interrupts_a_sleep_quickly() {
        let flag = StopFlag::new();
        let f = flag.clone();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let r = f.sleep(Duration::from_secs(10));
            (r, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(30));
        flag.stop();
        let (r, took) = t.join().unwrap();
        assert!(matches!(r, Err(DesktopError::Stopped)));
        assert!(took < Duration::from_millis(500), "{took:?}");
        flag.reset();
        assert!(flag.check().is_ok());
    }
}
