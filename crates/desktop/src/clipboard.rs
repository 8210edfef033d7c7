//! Offering text on the X11 CLIPBOARD selection, so the executor can paste what it cannot
//! type (characters no keyboard layout reaches, or long texts that would take seconds).
//!
//! X11 has no clipboard storage: the owner of the selection answers each paste request
//! itself. A [`ClipboardOffer`] owns the selection from a hidden window on its own thread
//! and answers until it is dropped or another program takes the selection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use x11rb::CURRENT_TIME;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, SELECTION_NOTIFY_EVENT,
    SelectionNotifyEvent, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;

use crate::error::{DesktopError, Result};
use crate::x11::{connect, x_err};

/// Text being served as the clipboard; dropping it gives the selection up.
pub struct ClipboardOffer {
    served: Arc<AtomicUsize>,
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClipboardOffer {
    /// Takes the CLIPBOARD selection on `display` and serves `text` from it.
    pub fn new(display: &str, text: String) -> Result<ClipboardOffer> {
        let (conn, screen) = connect(display)?;
        let root = conn.setup().roots[screen].root;
        let err = |e: &dyn std::fmt::Display| x_err(display, e);
        let intern = |name: &[u8]| -> Result<u32> {
            Ok(conn
                .intern_atom(false, name)
                .map_err(|e| err(&e))?
                .reply()
                .map_err(|e| err(&e))?
                .atom)
        };
        let clipboard = intern(b"CLIPBOARD")?;
        let utf8 = intern(b"UTF8_STRING")?;
        let targets = intern(b"TARGETS")?;
        let text_atom = intern(b"TEXT")?;
        let window = conn.generate_id().map_err(|e| err(&e))?;
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
        )
        .map_err(|e| err(&e))?
        .check()
        .map_err(|e| err(&e))?;
        conn.set_selection_owner(window, clipboard, CURRENT_TIME)
            .map_err(|e| err(&e))?;
        let owner = conn
            .get_selection_owner(clipboard)
            .map_err(|e| err(&e))?
            .reply()
            .map_err(|e| err(&e))?
            .owner;
        if owner != window {
            return Err(DesktopError::Input(format!(
                "could not take the clipboard on {display}"
            )));
        }
        conn.flush().map_err(|e| err(&e))?;
        let served = Arc::new(AtomicUsize::new(0));
        let quit = Arc::new(AtomicBool::new(false));
        let (served_t, quit_t) = (served.clone(), quit.clone());
        let bytes = text.into_bytes();
        let thread = std::thread::Builder::new()
            .name("clawdesk-clipboard".into())
            .spawn(move || {
                while !quit_t.load(Ordering::Relaxed) {
                    let event = match conn.poll_for_event() {
                        Ok(Some(e)) => e,
                        Ok(None) => {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        Err(_) => return,
                    };
                    match event {
                        Event::SelectionRequest(req) => {
                            let property = if req.property == 0 {
                                req.target
                            } else {
                                req.property
                            };
                            let ok = if req.target == targets {
                                let offered = [targets, utf8, text_atom, AtomEnum::STRING.into()];
                                conn.change_property32(
                                    PropMode::REPLACE,
                                    req.requestor,
                                    property,
                                    AtomEnum::ATOM,
                                    &offered,
                                )
                                .is_ok()
                            } else if req.target == utf8
                                || req.target == text_atom
                                || req.target == u32::from(AtomEnum::STRING)
                            {
                                conn.change_property8(
                                    PropMode::REPLACE,
                                    req.requestor,
                                    property,
                                    utf8,
                                    &bytes,
                                )
                                .is_ok()
                            } else {
                                false
                            };
                            let notify = SelectionNotifyEvent {
                                response_type: SELECTION_NOTIFY_EVENT,
                                sequence: 0,
                                time: req.time,
                                requestor: req.requestor,
                                selection: req.selection,
                                target: req.target,
                                property: if ok { property } else { 0 },
                            };
                            let _ =
                                conn.send_event(false, req.requestor, EventMask::NO_EVENT, notify);
                            let _ = conn.flush();
                            if ok && req.target != targets {
                                served_t.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Event::SelectionClear(_) => return,
                        _ => {}
                    }
                }
                let _ = conn.destroy_window(window);
                let _ = conn.flush();
            })
            .map_err(|e| DesktopError::io("starting the clipboard thread", e))?;
        Ok(ClipboardOffer {
            served,
            quit,
            thread: Some(thread),
        })
    }

    /// Waits until some program has fetched the text, or `timeout` passes.
    pub fn wait_served(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.served.load(Ordering::SeqCst) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }
}

impl Drop for ClipboardOffer {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
