//! Each format's coordinate scale, to and from the internal normalised point.

use clawdesk_desktop::geometry::NormPoint;

use super::Frame;

/// How a format writes a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    /// A grid from 0 to N on both axes: N is the far edge (Qwen3-VL 999, UI-TARS 1.0 1000).
    Grid(u32),
    /// Pixels of an image or screen of this size.
    Pixels { width: u32, height: u32 },
}

impl Scale {
    pub(crate) fn image(frame: &Frame) -> Scale {
        Scale::Pixels {
            width: frame.image.0,
            height: frame.image.1,
        }
    }

    pub(crate) fn screen(frame: &Frame) -> Scale {
        Scale::Pixels {
            width: frame.screen.0,
            height: frame.screen.1,
        }
    }

    fn extent(self) -> (f64, f64) {
        match self {
            Scale::Grid(n) => (f64::from(n), f64::from(n)),
            Scale::Pixels { width, height } => (f64::from(width), f64::from(height)),
        }
    }

    /// The internal point for (x, y) in this scale; an error for points off the scale.
    pub(crate) fn to_point(self, x: f64, y: f64) -> Result<NormPoint, String> {
        let (w, h) = self.extent();
        if w <= 0.0 || h <= 0.0 {
            return Err("the frame has no size to place a point in".into());
        }
        let inside = |v: f64, max: f64| v.is_finite() && (0.0..=max).contains(&v);
        if !inside(x, w) || !inside(y, h) {
            return Err(format!("point ({x}, {y}) lies outside 0..{w} x 0..{h}"));
        }
        Ok(NormPoint::new(x / w, y / h))
    }

    /// The point in this scale, rounded to whole units as models write them.
    pub(crate) fn to_units(self, p: NormPoint) -> (i64, i64) {
        let (w, h) = self.extent();
        let round = |v: f64, max: f64| (v.clamp(0.0, 1.0) * max).round() as i64;
        (round(p.x, w), round(p.y, h))
    }
}

#[cfg(test)]
mod tests {
    use super::Scale;

    #[test]
    fn grid_points_round_trip_exactly() {
        for scale in [
            Scale::Grid(999),
            Scale::Grid(1000),
            Scale::Pixels {
                width: 1288,
                height: 728,
            },
        ] {
            for v in [0, 1, 7, 333, 500, 727] {
                let p = scale.to_point(v as f64, v as f64).expect("inside");
                assert_eq!(scale.to_units(p), (v, v), "{scale:?}");
            }
        }
    }

    #[test]
    fn points_off_the_scale_are_refused() {
        let s = Scale::Grid(999);
        assert!(s.to_point(1000.0, 5.0).is_err());
        assert!(s.to_point(-1.0, 5.0).is_err());
        assert!(s.to_point(f64::NAN, 5.0).is_err());
        let empty = Scale::Pixels {
            width: 0,
            height: 10,
        };
        assert!(empty.to_point(0.0, 0.0).is_err());
        assert_eq!(Scale::Grid(999).to_point(999.0, 0.0).map(|p| p.x), Ok(1.0));
    }
}
