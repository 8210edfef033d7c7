//! Runs actions with enigo on a thread of its own.
//!
//! enigo's connection is not `Send` on every platform, and input is inherently sequential, so
//! one thread owns it and takes requests over a channel. Every action checks the stop flag
//! between its input events, so the stop key halts even a long typing run within milliseconds.

use std::sync::mpsc;
use std::time::Duration;

use enigo::{Axis, Button, Coordinate, Direction, Enigo, Key, Keyboard, Mouse, Settings};
use tokio::sync::oneshot;

use crate::act::action::{Action, KeyCombo, KeyName, MouseButton, NamedKey};
use crate::clipboard::ClipboardOffer;
use crate::error::{DesktopError, Result};
use crate::geometry::{ScreenPoint, Surface};
use crate::stop::StopFlag;

/// How long to let a button or key rest between press and release, and between clicks.
const TAP: Duration = Duration::from_millis(8);
/// Pause between characters when typing, so apps that process key events slowly keep up.
const CHAR_GAP: Duration = Duration::from_millis(2);
/// Drag: intermediate pointer positions, so apps see a motion rather than a jump.
const DRAG_STEPS: u32 = 12;

struct Request {
    action: Action,
    surface: Surface,
    reply: oneshot::Sender<Result<()>>,
}

/// A handle to the input thread; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    tx: mpsc::Sender<Request>,
    stop: StopFlag,
}

impl Executor {
    /// Connects to the display (`None`: the session's own) and starts the input thread.
    pub fn start(display: Option<&str>, stop: StopFlag) -> Result<Executor> {
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let display = display.map(str::to_owned);
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("clawdesk-input".into())
            .spawn(move || {
                let settings = Settings {
                    x11_display: display.clone(),
                    linux_delay: 1,
                    release_keys_when_dropped: true,
                    ..Settings::default()
                };
                let mut enigo = match Enigo::new(&settings) {
                    Ok(e) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(DesktopError::NoDisplay {
                            display: display.unwrap_or_else(|| "$DISPLAY".into()),
                            detail: format!("input backend: {e}"),
                        }));
                        return;
                    }
                };
                let display = display.or_else(|| std::env::var("DISPLAY").ok());
                for req in rx {
                    let result = run(
                        &mut enigo,
                        display.as_deref(),
                        &req.action,
                        &req.surface,
                        &flag,
                    );
                    if result.is_err() {
                        release_modifiers(&mut enigo);
                    }
                    let _ = req.reply.send(result);
                }
            })
            .map_err(|e| DesktopError::io("starting the input thread", e))?;
        ready_rx
            .recv()
            .map_err(|_| DesktopError::Input("the input thread died while starting".into()))??;
        Ok(Executor { tx, stop })
    }

    /// Runs one action on `surface`, whose geometry maps its coordinates to the screen.
    pub async fn execute(&self, action: &Action, surface: &Surface) -> Result<()> {
        action.validate()?;
        self.stop.check()?;
        // Map every point before sending anything, so an off-surface point fails cleanly.
        for p in action.points() {
            surface.to_screen(p)?;
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                action: action.clone(),
                surface: surface.clone(),
                reply,
            })
            .map_err(|_| DesktopError::Input("the input thread has stopped".into()))?;
        rx.await
            .map_err(|_| DesktopError::Input("the input thread dropped the action".into()))?
    }
}

fn input_err(e: enigo::InputError) -> DesktopError {
    DesktopError::Input(e.to_string())
}

fn button(b: MouseButton) -> Button {
    match b {
        MouseButton::Left => Button::Left,
        MouseButton::Right => Button::Right,
        MouseButton::Middle => Button::Middle,
    }
}

fn move_to(enigo: &mut Enigo, p: ScreenPoint) -> Result<()> {
    enigo
        .move_mouse(p.x, p.y, Coordinate::Abs)
        .map_err(input_err)
}

/// Puts `text` on the clipboard and presses ctrl+v, waiting until the app has fetched it.
fn paste(enigo: &mut Enigo, display: Option<&str>, text: &str) -> Result<()> {
    let display =
        display.ok_or_else(|| DesktopError::Input("pasting needs an X display".into()))?;
    let offer = ClipboardOffer::new(display, text.to_owned())?;
    enigo
        .key(Key::Control, Direction::Press)
        .map_err(input_err)?;
    let tapped = enigo
        .key(Key::Unicode('v'), Direction::Click)
        .map_err(input_err);
    let released = enigo
        .key(Key::Control, Direction::Release)
        .map_err(input_err);
    tapped.and(released)?;
    if offer.wait_served(Duration::from_secs(2)) {
        Ok(())
    } else {
        Err(DesktopError::Input(
            "the focused app did not take the pasted text (does it accept ctrl+v?)".into(),
        ))
    }
}

fn run(
    enigo: &mut Enigo,
    display: Option<&str>,
    action: &Action,
    surface: &Surface,
    stop: &StopFlag,
) -> Result<()> {
    match action {
        Action::Move { at } => move_to(enigo, surface.to_screen(*at)?),
        Action::Click {
            at,
            button: b,
            count,
        } => {
            move_to(enigo, surface.to_screen(*at)?)?;
            stop.sleep(TAP)?;
            for _ in 0..*count {
                stop.check()?;
                enigo
                    .button(button(*b), Direction::Click)
                    .map_err(input_err)?;
                std::thread::sleep(TAP);
            }
            Ok(())
        }
        Action::Drag {
            from,
            to,
            button: b,
        } => {
            let (a, z) = (surface.to_screen(*from)?, surface.to_screen(*to)?);
            move_to(enigo, a)?;
            stop.sleep(TAP)?;
            enigo
                .button(button(*b), Direction::Press)
                .map_err(input_err)?;
            let moved = (1..=DRAG_STEPS).try_for_each(|i| {
                stop.sleep(Duration::from_millis(10))?;
                let t = f64::from(i) / f64::from(DRAG_STEPS);
                let p = ScreenPoint {
                    x: a.x + (f64::from(z.x - a.x) * t).round() as i32,
                    y: a.y + (f64::from(z.y - a.y) * t).round() as i32,
                };
                move_to(enigo, p)
            });
            // Release even when halted, so no button stays held down.
            let released = enigo
                .button(button(*b), Direction::Release)
                .map_err(input_err);
            moved.and(released)
        }
        Action::Scroll { at, dx, dy } => {
            if let Some(at) = at {
                move_to(enigo, surface.to_screen(*at)?)?;
                stop.sleep(TAP)?;
            }
            for (n, axis) in [(*dy, Axis::Vertical), (*dx, Axis::Horizontal)] {
                for _ in 0..n.unsigned_abs() {
                    stop.check()?;
                    enigo.scroll(n.signum(), axis).map_err(input_err)?;
                    std::thread::sleep(TAP);
                }
            }
            Ok(())
        }
        Action::Type { text, paste: true } => paste(enigo, display, text),
        Action::Type { text, paste: false } => {
            // One character at a time so the stop key can cut in anywhere.
            let mut buf = [0u8; 4];
            for c in text.chars() {
                stop.check()?;
                let s: &str = c.encode_utf8(&mut buf);
                let typed = match c {
                    '\n' => enigo.key(Key::Return, Direction::Click),
                    '\t' => enigo.key(Key::Tab, Direction::Click),
                    _ => enigo.text(s),
                };
                if let Err(e) = typed {
                    tracing::debug!("typing {c:?} failed ({e}); pasting it instead");
                    paste(enigo, display, s).map_err(|p| {
                        DesktopError::Input(format!("typing {c:?}: {e}; pasting: {p}"))
                    })?;
                }
                std::thread::sleep(CHAR_GAP);
            }
            Ok(())
        }
        Action::Key { combo } => {
            let combo = KeyCombo::parse(combo)?;
            let keys: Vec<Key> = combo.keys.iter().map(|k| enigo_key(*k)).collect();
            let Some((last, held)) = keys.split_last() else {
                return Ok(());
            };
            let mut pressed = Vec::new();
            let result = (|| {
                for k in held {
                    stop.check()?;
                    enigo.key(*k, Direction::Press).map_err(input_err)?;
                    pressed.push(*k);
                }
                stop.check()?;
                enigo.key(*last, Direction::Click).map_err(input_err)
            })();
            for k in pressed.iter().rev() {
                let _ = enigo.key(*k, Direction::Release);
            }
            result
        }
        Action::Wait { ms } => stop.sleep(Duration::from_millis(*ms)),
    }
}

fn release_modifiers(enigo: &mut Enigo) {
    for k in [Key::Control, Key::Shift, Key::Alt, Key::Meta] {
        let _ = enigo.key(k, Direction::Release);
    }
    for b in [Button::Left, Button::Right, Button::Middle] {
        let _ = enigo.button(b, Direction::Release);
    }
}

fn enigo_key(k: KeyName) -> Key {
    use NamedKey as N;
    match k {
        KeyName::Char(c) => Key::Unicode(c),
        KeyName::Named(n) => match n {
            N::Control => Key::Control,
            N::Shift => Key::Shift,
            N::Alt => Key::Alt,
            N::Super => Key::Meta,
            N::Return => Key::Return,
            N::Tab => Key::Tab,
            N::Escape => Key::Escape,
            N::Backspace => Key::Backspace,
            N::Delete => Key::Delete,
            N::Insert => Key::Insert,
            N::Space => Key::Space,
            N::Up => Key::UpArrow,
            N::Down => Key::DownArrow,
            N::Left => Key::LeftArrow,
            N::Right => Key::RightArrow,
            N::Home => Key::Home,
            N::End => Key::End,
            N::PageUp => Key::PageUp,
            N::PageDown => Key::PageDown,
            N::CapsLock => Key::CapsLock,
            // X11 keysyms: enigo's named variants for these differ across platforms.
            N::Menu => Key::Other(0xff67),
            N::Pause => Key::Other(0xff13),
            N::PrintScreen => Key::Other(0xff61),
            N::F(n) => Key::Other(0xffbe + u32::from(n) - 1),
        },
    }
}
