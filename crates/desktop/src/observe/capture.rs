//! Screenshots with their geometry.
//!
//! Two backends behind one type: [`CaptureBackend::X11`] talks to a display named explicitly
//! (so one process can watch several sandboxes) with one `GetImage` round trip, and
//! [`CaptureBackend::Xcap`] uses xcap on the session's own display, the portable path for
//! Wayland, macOS and Windows, in a build with the `xcap` feature.

use std::time::Instant;

use image::RgbaImage;
use serde::{Deserialize, Serialize};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::ConnectionExt as _;

use crate::error::{DesktopError, Result};
use crate::geometry::{Surface, SurfaceKind};
use crate::x11::{RootGrabber, active_window, connect, x_err};

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaptureTarget {
    /// The primary monitor (on X11 the whole root window).
    #[default]
    Screen,
    /// The window that has focus.
    ActiveWindow,
    /// The first window whose title contains this text.
    WindowTitled {
        /// Text to look for in window titles (case-sensitive).
        title: String,
    },
}

/// A screenshot and where it came from.
#[derive(Debug, Clone)]
pub struct Screenshot {
    /// The pixels, in RGBA.
    pub image: RgbaImage,
    /// Where on the screen the image came from, to map normalised points back.
    pub surface: Surface,
    /// How long the capture took, in milliseconds.
    pub took_ms: f64,
}

/// Which capture implementation to use.
pub enum CaptureBackend {
    /// X11 core `GetImage` on a named display.
    X11 {
        /// The display name, such as `:0`.
        display: String,
        /// The open connection that reads the root window's pixels.
        grabber: Box<RootGrabber>,
    },
    /// xcap on the session's own display (a build with the `xcap` feature; without it,
    /// capturing says so).
    Xcap,
}

impl CaptureBackend {
    /// The X11 backend on `display`, connecting once.
    pub fn x11(display: &str) -> Result<Self> {
        Ok(CaptureBackend::X11 {
            display: display.to_owned(),
            grabber: Box::new(RootGrabber::open(display)?),
        })
    }

    /// Takes a screenshot of `target`.
    pub fn capture(&self, target: &CaptureTarget) -> Result<Screenshot> {
        let start = Instant::now();
        let (image, surface) = match self {
            CaptureBackend::X11 { display, grabber } => x11_capture(display, grabber, target)?,
            CaptureBackend::Xcap => xcap_capture(target)?,
        };
        Ok(Screenshot {
            image,
            surface,
            took_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }
}

fn x11_capture(
    display: &str,
    grabber: &RootGrabber,
    target: &CaptureTarget,
) -> Result<(RgbaImage, Surface)> {
    let (sw, sh) = grabber.size();
    let (kind, x, y, w, h) = match target {
        CaptureTarget::Screen => (
            SurfaceKind::Monitor {
                name: display.to_owned(),
            },
            0,
            0,
            sw,
            sh,
        ),
        CaptureTarget::ActiveWindow => {
            let win = active_window(display)?.ok_or_else(|| {
                DesktopError::Capture(format!("no window has focus on {display}"))
            })?;
            let (x, y, w, h) = window_rect(display, win.id)?;
            let app = if win.class.is_empty() {
                win.instance
            } else {
                win.class
            };
            (
                SurfaceKind::Window {
                    id: win.id,
                    title: win.title,
                    app,
                },
                x,
                y,
                w,
                h,
            )
        }
        CaptureTarget::WindowTitled { title } => {
            return Err(DesktopError::Capture(format!(
                "capturing a window by title ({title:?}) needs the xcap backend; the X11 backend captures the screen or the active window"
            )));
        }
    };
    // Clip to the screen: a window partly off screen has no pixels there to read.
    let (x0, y0) = (x.max(0), y.max(0));
    let x1 = (x + w as i32).min(sw as i32);
    let y1 = (y + h as i32).min(sh as i32);
    if x1 <= x0 || y1 <= y0 {
        return Err(DesktopError::Capture(
            "the window lies entirely off screen".into(),
        ));
    }
    let (w, h) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let data = grabber.grab(x0 as i16, y0 as i16, w as u16, h as u16)?;
    let image = RgbaImage::from_raw(w, h, data)
        .ok_or_else(|| DesktopError::Capture("image buffer has the wrong size".into()))?;
    let surface = Surface {
        kind,
        x: x0,
        y: y0,
        width: w,
        height: h,
        scale: 1.0,
    };
    Ok((image, surface))
}

/// A client window's rectangle in root coordinates (after the window manager reparented it).
pub(crate) fn window_rect(display: &str, window: u32) -> Result<(i32, i32, u32, u32)> {
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    let geo = conn
        .get_geometry(window)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| DesktopError::Capture(format!("window {window} vanished: {e}")))?;
    let pos = conn
        .translate_coordinates(window, root, 0, 0)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| DesktopError::Capture(format!("window {window} vanished: {e}")))?;
    Ok((
        i32::from(pos.dst_x),
        i32::from(pos.dst_y),
        u32::from(geo.width),
        u32::from(geo.height),
    ))
}

#[cfg(not(feature = "xcap"))]
fn xcap_capture(_target: &CaptureTarget) -> Result<(RgbaImage, Surface)> {
    Err(DesktopError::Capture(
        "this build has no xcap backend (the portable capture for Wayland, macOS and Windows): \
         build with --features xcap, or capture through X11"
            .into(),
    ))
}

#[cfg(feature = "xcap")]
fn xcap_err(e: xcap::XCapError) -> DesktopError {
    DesktopError::Capture(format!("xcap: {e}"))
}

#[cfg(feature = "xcap")]
fn xcap_capture(target: &CaptureTarget) -> Result<(RgbaImage, Surface)> {
    match target {
        CaptureTarget::Screen => {
            let monitors = xcap::Monitor::all().map_err(xcap_err)?;
            let monitor = monitors
                .iter()
                .find(|m| m.is_primary().unwrap_or(false))
                .or(monitors.first())
                .ok_or_else(|| DesktopError::Capture("xcap found no monitor".into()))?;
            let image = monitor.capture_image().map_err(xcap_err)?;
            let surface = Surface {
                kind: SurfaceKind::Monitor {
                    name: monitor.name().map_err(xcap_err)?,
                },
                x: monitor.x().map_err(xcap_err)?,
                y: monitor.y().map_err(xcap_err)?,
                width: image.width(),
                height: image.height(),
                scale: f64::from(monitor.scale_factor().map_err(xcap_err)?),
            };
            Ok((image, surface))
        }
        CaptureTarget::ActiveWindow | CaptureTarget::WindowTitled { .. } => {
            let windows = xcap::Window::all().map_err(xcap_err)?;
            let window = windows
                .iter()
                .find(|w| match target {
                    CaptureTarget::WindowTitled { title } => w
                        .title()
                        .map(|t| t.contains(title.as_str()))
                        .unwrap_or(false),
                    _ => w.is_focused().unwrap_or(false),
                })
                .ok_or_else(|| {
                    DesktopError::Capture(format!("xcap found no window matching {target:?}"))
                })?;
            let image = window.capture_image().map_err(xcap_err)?;
            let scale = window
                .current_monitor()
                .and_then(|m| m.scale_factor())
                .map(f64::from)
                .unwrap_or(1.0);
            let surface = Surface {
                kind: SurfaceKind::Window {
                    id: window.id().map_err(xcap_err)?,
                    title: window.title().map_err(xcap_err)?,
                    app: window.app_name().map_err(xcap_err)?,
                },
                x: window.x().map_err(xcap_err)?,
                y: window.y().map_err(xcap_err)?,
                width: image.width(),
                height: image.height(),
                scale,
            };
            Ok((image, surface))
        }
    }
}

/// Encodes a screenshot as PNG (see [`clawdesk_png::encode`]), failing as a capture error.
pub fn encode_png(image: &RgbaImage) -> Result<Vec<u8>> {
    clawdesk_png::encode(image)
        .map_err(|e| DesktopError::Capture(format!("PNG encoding failed: {e}")))
}
