//! The X11 facts and tricks that neither xcap nor enigo offer for a display named explicitly:
//! the active window, the window manager's readiness, fast root-window capture and the global
//! stop-key grab.
//!
//! Everything here takes a display name instead of reading `$DISPLAY`, so one process can
//! drive several sandboxes at once.

use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{AtomEnum, ConnectionExt as _, ImageFormat, Window};
use x11rb::rust_connection::RustConnection;

use crate::error::{DesktopError, Result};

/// Opens a connection to `display`, naming the display in the error.
pub(crate) fn connect(display: &str) -> Result<(RustConnection, usize)> {
    x11rb::connect(Some(display)).map_err(|e| DesktopError::NoDisplay {
        display: display.to_owned(),
        detail: e.to_string(),
    })
}

pub(crate) fn x_err(display: &str, e: impl std::fmt::Display) -> DesktopError {
    DesktopError::NoDisplay {
        display: display.to_owned(),
        detail: e.to_string(),
    }
}

fn atom(conn: &RustConnection, display: &str, name: &[u8]) -> Result<u32> {
    Ok(conn
        .intern_atom(false, name)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| x_err(display, e))?
        .atom)
}

fn property(
    conn: &RustConnection,
    display: &str,
    window: Window,
    property: u32,
    kind: u32,
) -> Result<x11rb::protocol::xproto::GetPropertyReply> {
    conn.get_property(false, window, property, kind, 0, 4096)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| x_err(display, e))
}

/// Waits until an EWMH window manager has announced itself on the root window.
pub(crate) fn wait_for_window_manager(display: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // The server accepts connections as soon as it wrote its display number.
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    let check = atom(&conn, display, b"_NET_SUPPORTING_WM_CHECK")?;
    loop {
        let reply = property(&conn, display, root, check, AtomEnum::WINDOW.into())?;
        if reply.value32().and_then(|mut v| v.next()).is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DesktopError::Sandbox(format!(
                "the window manager did not start on {display} within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The window that has focus, as the window manager reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveWindow {
    /// The X window id of the client window (not the window manager's frame).
    pub id: u32,
    /// The WM_CLASS class part (`Mousepad`, `Gnome-calculator`).
    pub class: String,
    /// The WM_CLASS instance part (`mousepad`).
    pub instance: String,
    /// The window's title (`_NET_WM_NAME`, else `WM_NAME`).
    pub title: String,
    /// The process that owns it (`_NET_WM_PID`), when the window says.
    pub pid: Option<u32>,
}

/// Reads `_NET_ACTIVE_WINDOW` and that window's class, title and pid; `None` when no window
/// has focus.
pub fn active_window(display: &str) -> Result<Option<ActiveWindow>> {
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    let active = atom(&conn, display, b"_NET_ACTIVE_WINDOW")?;
    let reply = property(&conn, display, root, active, AtomEnum::WINDOW.into())?;
    let Some(id) = reply
        .value32()
        .and_then(|mut v| v.next())
        .filter(|&w| w != 0)
    else {
        return Ok(None);
    };
    window_info(&conn, display, id).map(Some)
}

/// A window's WM_CLASS, title and `_NET_WM_PID`.
fn window_info(conn: &RustConnection, display: &str, id: Window) -> Result<ActiveWindow> {
    let class = property(
        conn,
        display,
        id,
        AtomEnum::WM_CLASS.into(),
        AtomEnum::STRING.into(),
    )?;
    let mut parts = class
        .value
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let instance = parts.next().unwrap_or_default();
    let class = parts.next().unwrap_or_default();
    let utf8 = atom(conn, display, b"UTF8_STRING")?;
    let net_name = atom(conn, display, b"_NET_WM_NAME")?;
    let mut title =
        String::from_utf8_lossy(&property(conn, display, id, net_name, utf8)?.value).into_owned();
    if title.is_empty() {
        title = String::from_utf8_lossy(
            &property(
                conn,
                display,
                id,
                AtomEnum::WM_NAME.into(),
                AtomEnum::STRING.into(),
            )?
            .value,
        )
        .into_owned();
    }
    let net_pid = atom(conn, display, b"_NET_WM_PID")?;
    let pid = property(conn, display, id, net_pid, AtomEnum::CARDINAL.into())?
        .value32()
        .and_then(|mut v| v.next());
    Ok(ActiveWindow {
        id,
        class,
        instance,
        title,
        pid,
    })
}

/// The window a pointer event at root pixel (`x`, `y`) goes to, as the X server stacks them:
/// the topmost mapped top-level window there, named by its client (the window inside a window
/// manager's frame that carries `WM_STATE`) or, for a popup the manager does not frame, by
/// itself. `None` when only the root window (the desktop background) is there.
///
/// X11 delivers clicks and scrolls to the window under the pointer whatever has keyboard
/// focus, so this, not the active window, is what the guard checks a pointer action against.
pub fn window_at(display: &str, x: i32, y: i32) -> Result<Option<ActiveWindow>> {
    use x11rb::protocol::xproto::{MapState, WindowClass};
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    let wm_state = atom(&conn, display, b"WM_STATE")?;
    let tree = conn
        .query_tree(root)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| x_err(display, e))?;
    // Children come bottom to top.
    for &window in tree.children.iter().rev() {
        // A window can vanish between the listing and the question: skip it.
        let Ok(Ok(attrs)) = conn.get_window_attributes(window).map(|c| c.reply()) else {
            continue;
        };
        if attrs.map_state != MapState::VIEWABLE || attrs.class == WindowClass::INPUT_ONLY {
            continue;
        }
        let Ok(Ok(geo)) = conn.get_geometry(window).map(|c| c.reply()) else {
            continue;
        };
        let border = i32::from(geo.border_width);
        let (wx, wy) = (i32::from(geo.x), i32::from(geo.y));
        let (ww, wh) = (
            i32::from(geo.width) + 2 * border,
            i32::from(geo.height) + 2 * border,
        );
        if x < wx || y < wy || x >= wx + ww || y >= wy + wh {
            continue;
        }
        let client = client_of(&conn, display, window, wm_state, 3)?.unwrap_or(window);
        return window_info(&conn, display, client).map(Some);
    }
    Ok(None)
}

/// The first window at or below `window` (breadth first, `depth` levels) that carries
/// `WM_STATE`: the application's own window inside a window manager's frame.
fn client_of(
    conn: &RustConnection,
    display: &str,
    window: Window,
    wm_state: u32,
    depth: usize,
) -> Result<Option<Window>> {
    let mut level = vec![window];
    for _ in 0..=depth {
        let mut next = Vec::new();
        for w in level {
            let has_state = conn
                .get_property(false, w, wm_state, AtomEnum::ANY, 0, 0)
                .map_err(|e| x_err(display, e))?
                .reply()
                .is_ok_and(|r| r.type_ != u32::from(AtomEnum::NONE));
            if has_state {
                return Ok(Some(w));
            }
            if let Ok(Ok(tree)) = conn.query_tree(w).map(|c| c.reply()) {
                next.extend(tree.children);
            }
        }
        level = next;
    }
    Ok(None)
}

/// Where the pointer is now, in root pixels.
pub fn pointer_position(display: &str) -> Result<(i32, i32)> {
    let (conn, screen) = connect(display)?;
    let root = conn.setup().roots[screen].root;
    let reply = conn
        .query_pointer(root)
        .map_err(|e| x_err(display, e))?
        .reply()
        .map_err(|e| x_err(display, e))?;
    Ok((i32::from(reply.root_x), i32::from(reply.root_y)))
}

/// The root window's size in pixels.
pub fn screen_size(display: &str) -> Result<(u32, u32)> {
    let (conn, screen) = connect(display)?;
    let s = &conn.setup().roots[screen];
    Ok((u32::from(s.width_in_pixels), u32::from(s.height_in_pixels)))
}

/// A persistent connection for grabbing the root window again and again.
///
/// With a local X server the pixels come through a shared-memory segment (MIT-SHM): the
/// server writes the frame straight into our mapping, about 20 times faster at 1080p than
/// sending it over the socket. Without MIT-SHM it falls back to plain `GetImage`.
pub struct RootGrabber {
    display: String,
    conn: RustConnection,
    root: Window,
    width: u16,
    height: u16,
    /// Locked per grab: two grabs at once would overwrite each other's frame.
    shm: Option<std::sync::Mutex<ShmSegment>>,
    /// Set once a shared-memory grab failed; later grabs go straight to GetImage.
    shm_failed: std::sync::atomic::AtomicBool,
}

/// A server-allocated shared-memory segment the size of the whole screen, mapped read-only.
struct ShmSegment {
    seg: u32,
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; the grabber reads it only under
// its mutex, after the server's reply says the frame is written.
unsafe impl Send for ShmSegment {}

impl ShmSegment {
    fn create(conn: &RustConnection, len: usize) -> Option<ShmSegment> {
        use std::os::fd::AsRawFd;
        use x11rb::connection::RequestConnection;
        use x11rb::protocol::shm::{self, ConnectionExt as _};
        conn.extension_information(shm::X11_EXTENSION_NAME).ok()??;
        let version = conn.shm_query_version().ok()?.reply().ok()?;
        if (version.major_version, version.minor_version) < (1, 2) {
            return None;
        }
        let seg = conn.generate_id().ok()?;
        let fd = conn
            // Not read-only: the server writes each frame into it (we map it read-only).
            .shm_create_segment(seg, u32::try_from(len).ok()?, false)
            .ok()?
            .reply()
            .ok()?
            .shm_fd;
        // SAFETY: mapping a descriptor the server just created for `len` bytes, read-only.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let _ = conn.shm_detach(seg);
            return None;
        }
        Some(ShmSegment { seg, ptr, len })
    }
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `create` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

impl RootGrabber {
    /// Connects to `display` and sets up shared memory where the server offers it; only 24- and 32-bit true colour displays are supported.
    pub fn open(display: &str) -> Result<Self> {
        let (conn, screen) = connect(display)?;
        let s = &conn.setup().roots[screen];
        let (root, width, height, depth) =
            (s.root, s.width_in_pixels, s.height_in_pixels, s.root_depth);
        let bpp = conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map(|f| f.bits_per_pixel);
        if bpp != Some(32) || !(depth == 24 || depth == 32) {
            return Err(DesktopError::Capture(format!(
                "display {display} has depth {depth} at {bpp:?} bits per pixel; only 24/32-bit true colour is supported"
            )));
        }
        let shm = ShmSegment::create(&conn, usize::from(width) * usize::from(height) * 4)
            .map(std::sync::Mutex::new);
        if shm.is_none() {
            let name = display;
            tracing::debug!(display = %name, "MIT-SHM unavailable; capturing with GetImage");
        }
        Ok(RootGrabber {
            display: display.to_owned(),
            conn,
            root,
            width,
            height,
            shm,
            shm_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether frames come through shared memory.
    pub fn uses_shm(&self) -> bool {
        self.shm.is_some() && !self.shm_failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn grab_shm(
        &self,
        shm: &ShmSegment,
        x: i16,
        y: i16,
        width: u16,
        height: u16,
    ) -> Result<Vec<u8>> {
        use x11rb::protocol::shm::ConnectionExt as _;
        let reply = self
            .conn
            .shm_get_image(
                self.root,
                x,
                y,
                width,
                height,
                !0,
                ImageFormat::Z_PIXMAP.into(),
                shm.seg,
                0,
            )
            .map_err(|e| x_err(&self.display, e))?
            .reply()
            .map_err(|e| DesktopError::Capture(format!("ShmGetImage on {}: {e}", self.display)))?;
        let len = usize::from(width) * usize::from(height) * 4;
        if reply.size as usize != len || len > shm.len {
            return Err(DesktopError::Capture(format!(
                "ShmGetImage returned {} bytes for {width}x{height}",
                reply.size
            )));
        }
        // SAFETY: the reply arrived, so the server has finished writing `len` bytes at the
        // start of the mapping, which is at least `len` long (checked above).
        let bgrx = unsafe { std::slice::from_raw_parts(shm.ptr as *const u8, len) };
        let mut rgba = vec![0u8; len];
        for (out, px) in rgba.chunks_exact_mut(4).zip(bgrx.chunks_exact(4)) {
            out.copy_from_slice(&[px[2], px[1], px[0], 255]);
        }
        Ok(rgba)
    }

    /// The screen's width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        (u32::from(self.width), u32::from(self.height))
    }

    /// The rectangle's pixels as RGBA, row by row.
    pub fn grab(&self, x: i16, y: i16, width: u16, height: u16) -> Result<Vec<u8>> {
        if let Some(shm) = self.shm.as_ref().filter(|_| self.uses_shm()) {
            let shm = shm.lock().unwrap_or_else(|p| p.into_inner());
            match self.grab_shm(&shm, x, y, width, height) {
                Ok(pixels) => return Ok(pixels),
                Err(e) => {
                    tracing::warn!(
                        "shared-memory capture failed ({e}); using GetImage from now on"
                    );
                    self.shm_failed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        self.grab_without_shm(x, y, width, height)
    }

    /// The rectangle's pixels through plain `GetImage` over the socket.
    pub fn grab_without_shm(&self, x: i16, y: i16, width: u16, height: u16) -> Result<Vec<u8>> {
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, x, y, width, height, !0)
            .map_err(|e| x_err(&self.display, e))?
            .reply()
            .map_err(|e| DesktopError::Capture(format!("GetImage on {}: {e}", self.display)))?;
        let mut data = reply.data;
        let expected = usize::from(width) * usize::from(height) * 4;
        if data.len() != expected {
            return Err(DesktopError::Capture(format!(
                "GetImage returned {} bytes for {width}x{height}, expected {expected}",
                data.len()
            )));
        }
        // Z-pixmap on little-endian true colour: B, G, R, pad. Swap to R, G, B, opaque.
        for px in data.chunks_exact_mut(4) {
            px.swap(0, 2);
            px[3] = 255;
        }
        Ok(data)
    }

    /// The whole screen's pixels as RGBA, row by row.
    pub fn grab_all(&self) -> Result<Vec<u8>> {
        self.grab(0, 0, self.width, self.height)
    }
}
