//! Where an image came from on the screen, and the mapping between the model's normalised
//! coordinates and the screen pixels that input events need.

use serde::{Deserialize, Serialize};

use crate::DesktopError;

/// A point in [0,1]² on an observed surface: (0,0) its top-left pixel's corner, (1,1) the
/// bottom-right. The one coordinate form actions are stored in, whatever the model emitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormPoint {
    /// Horizontal position: 0 the left edge, 1 the right.
    pub x: f64,
    /// Vertical position: 0 the top edge, 1 the bottom.
    pub y: f64,
}

impl NormPoint {
    /// The point at (`x`, `y`), unchecked; mapping it to the screen rejects one off the surface.
    pub fn new(x: f64, y: f64) -> Self {
        NormPoint { x, y }
    }
}

/// A point in screen coordinates, as the input backend addresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenPoint {
    /// Horizontal position in screen units, rightwards from the screen's top-left corner.
    pub x: i32,
    /// Vertical position in screen units, downwards from the screen's top-left corner.
    pub y: i32,
}

/// What was captured: a whole monitor or one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SurfaceKind {
    /// A whole monitor (on X11 the whole root window).
    Monitor {
        /// The monitor's name; on X11 the display's, such as `:3`.
        name: String,
    },
    /// One window.
    Window {
        /// The window's id (on X11 its X window id).
        id: u32,
        /// The window's title at capture time.
        title: String,
        /// The app it belongs to (on X11 its WM_CLASS class, else its instance).
        app: String,
    },
}

/// A captured surface's geometry, recorded with every image.
///
/// `x`, `y` are the surface's top-left corner in screen coordinates; `width`, `height` the
/// image's size in pixels; `scale` how many image pixels make one screen unit (1 on X11, 2 on
/// a HiDPI Mac).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surface {
    /// Whether a monitor or a window was captured, and which.
    #[serde(flatten)]
    pub kind: SurfaceKind,
    /// The surface's left edge in screen coordinates.
    pub x: i32,
    /// The surface's top edge in screen coordinates.
    pub y: i32,
    /// The image's width in pixels.
    pub width: u32,
    /// The image's height in pixels.
    pub height: u32,
    /// Image pixels per screen unit: 1 on X11, 2 on a HiDPI Mac.
    pub scale: f64,
}

impl Surface {
    /// The screen point under a normalised point, or an error naming both when the point lies
    /// off the surface.
    pub fn to_screen(&self, p: NormPoint) -> Result<ScreenPoint, DesktopError> {
        let inside = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !inside(p.x) || !inside(p.y) {
            return Err(DesktopError::OffSurface {
                x: p.x,
                y: p.y,
                surface: self.describe(),
            });
        }
        // The last pixel row/column is the farthest point an input event can address.
        let px =
            (p.x * f64::from(self.width)).min(f64::from(self.width.saturating_sub(1)).max(0.0));
        let py =
            (p.y * f64::from(self.height)).min(f64::from(self.height.saturating_sub(1)).max(0.0));
        Ok(ScreenPoint {
            x: self.x + (px / self.scale).floor() as i32,
            y: self.y + (py / self.scale).floor() as i32,
        })
    }

    /// The normalised point of a screen point (its pixel's centre), if it lies on the surface.
    pub fn to_norm(&self, p: ScreenPoint) -> Option<NormPoint> {
        let px = f64::from(p.x - self.x) * self.scale;
        let py = f64::from(p.y - self.y) * self.scale;
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        if px < 0.0 || py < 0.0 || px >= w || py >= h {
            return None;
        }
        Some(NormPoint::new((px + 0.5) / w, (py + 0.5) / h))
    }

    /// A one-line description for error messages and logs.
    pub fn describe(&self) -> String {
        let what = match &self.kind {
            SurfaceKind::Monitor { name } => format!("monitor {name}"),
            SurfaceKind::Window { title, app, .. } => format!("window {title:?} of {app}"),
        };
        format!(
            "{what} at ({}, {}) size {}x{} scale {}",
            self.x, self.y, self.width, self.height, self.scale
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Surface {
        Surface {
            kind: SurfaceKind::Window {
                id: 7,
                title: "t".into(),
                app: "a".into(),
            },
            x: 100,
            y: 50,
            width: 400,
            height: 200,
            scale: 1.0,
        }
    }

    #[test]
    fn corners_map_inside_the_surface() {
        let s = window();
        assert_eq!(
            s.to_screen(NormPoint::new(0.0, 0.0)).unwrap(),
            ScreenPoint { x: 100, y: 50 }
        );
        assert_eq!(
            s.to_screen(NormPoint::new(1.0, 1.0)).unwrap(),
            ScreenPoint { x: 499, y: 249 }
        );
        assert_eq!(
            s.to_screen(NormPoint::new(0.5, 0.5)).unwrap(),
            ScreenPoint { x: 300, y: 150 }
        );
    }

    #[test]
    fn round_trip_through_screen_points() {
        let s = window();
        for (x, y) in [(100, 50), (123, 77), (499, 249)] {
            let n = s.to_norm(ScreenPoint { x, y }).unwrap();
            assert_eq!(s.to_screen(n).unwrap(), ScreenPoint { x, y });
        }
        assert!(s.to_norm(ScreenPoint { x: 99, y: 60 }).is_none());
        assert!(s.to_norm(ScreenPoint { x: 500, y: 60 }).is_none());
    }

    #[test]
    fn hidpi_scale_divides_pixels() {
        let s = Surface {
            scale: 2.0,
            ..window()
        };
        assert_eq!(
            s.to_screen(NormPoint::new(0.5, 0.5)).unwrap(),
            ScreenPoint { x: 200, y: 100 }
        );
    }

    #[test]
    fn off_surface_is_an_error_naming_the_surface() {
        let s = window();
        for p in [(1.01, 0.5), (-0.1, 0.5), (0.5, f64::NAN)] {
            let err = s.to_screen(NormPoint::new(p.0, p.1)).unwrap_err();
            assert!(err.to_string().contains("window \"t\""), "{err}");
        }
    }
}
