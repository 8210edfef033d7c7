//! Screenshots for a vision endpoint: scaled down to a pixel budget and sent as data URLs.

use std::io::Cursor;

use base64::Engine;
use image::{DynamicImage, ImageFormat, ImageReader, imageops::FilterType};
use serde::{Deserialize, Serialize};

use crate::error::{JudgeError, Result};

/// How screenshots travel to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageEncoding {
    /// Lossless; the stored PNG goes as it is when it fits the budget.
    Png,
    /// Smaller uploads for metered APIs, at the given quality (1-100).
    Jpeg {
        /// The JPEG quality, 1 to 100.
        quality: u8,
    },
}

/// A screenshot ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    /// The width sent, in pixels, after any scaling.
    pub width: u32,
    /// The height sent, in pixels, after any scaling.
    pub height: u32,
    /// `data:image/...;base64,...`
    pub data_url: String,
}

/// The size that keeps the aspect ratio within `budget` pixels (never upscaled, at least 1×1).
pub fn fit(width: u32, height: u32, budget: u64) -> (u32, u32) {
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= budget || pixels == 0 {
        return (width, height);
    }
    let scale = (budget as f64 / pixels as f64).sqrt();
    let h = ((f64::from(height) * scale).floor() as u32).max(1);
    let w = ((f64::from(width) * scale).floor() as u32).max(1);
    // A sliver (one side rounded up to 1 pixel) must still fit.
    let w = w.min((budget / u64::from(h)).max(1) as u32);
    let h = h.min((budget / u64::from(w)).max(1) as u32);
    (w, h)
}

/// Decodes a stored PNG, scales it into `budget` pixels and encodes it as a data URL.
pub fn encode_for_endpoint(
    png: &[u8],
    budget: u64,
    encoding: ImageEncoding,
    step: i64,
) -> Result<EncodedImage> {
    let bad = |reason: String| JudgeError::Image { step, reason };
    let reader = ImageReader::with_format(Cursor::new(png), ImageFormat::Png);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let (w, h) = fit(width, height, budget);
    let b64 = base64::engine::general_purpose::STANDARD;
    if (w, h) == (width, height) && encoding == ImageEncoding::Png {
        return Ok(EncodedImage {
            width,
            height,
            data_url: format!("data:image/png;base64,{}", b64.encode(png)),
        });
    }
    let image = image::load_from_memory_with_format(png, ImageFormat::Png)
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    let image = if (w, h) == (width, height) {
        image
    } else {
        image.resize_exact(w, h, FilterType::Triangle)
    };
    let mut bytes = Vec::new();
    let mime = match encoding {
        ImageEncoding::Png => {
            image
                .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
                .map_err(|e| bad(format!("cannot encode PNG: {e}")))?;
            "image/png"
        }
        ImageEncoding::Jpeg { quality } => {
            let rgb = DynamicImage::ImageRgb8(image.to_rgb8());
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut bytes,
                quality.clamp(1, 100),
            );
            rgb.write_with_encoder(encoder)
                .map_err(|e| bad(format!("cannot encode JPEG: {e}")))?;
            "image/jpeg"
        }
    };
    Ok(EncodedImage {
        width: w,
        height: h,
        data_url: format!("data:{mime};base64,{}", b64.encode(&bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    fn decode(url: &str) -> DynamicImage {
        let b64 = url.split_once(";base64,").unwrap().1;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        image::load_from_memory(&bytes).unwrap()
    }

    #[test]
    fn fit_keeps_aspect_and_budget() {
        assert_eq!(fit(1920, 1080, 1920 * 1080), (1920, 1080));
        let (w, h) = fit(1920, 1080, 1_000_000);
        assert!(u64::from(w * h) <= 1_000_000);
        assert!((f64::from(w) / f64::from(h) - 16.0 / 9.0).abs() < 0.01);
        assert_eq!(fit(100_000, 1, 10), (10, 1));
        assert_eq!(fit(1, 100_000, 10), (1, 10));
    }

    #[test]
    fn small_png_goes_unchanged_and_large_is_scaled() {
        let small = png(64, 32);
        let e = encode_for_endpoint(&small, 10_000, ImageEncoding::Png, 1).unwrap();
        assert!(e.data_url.starts_with("data:image/png;base64,"));
        assert_eq!(decode(&e.data_url).width(), 64);

        let big = png(400, 300);
        let e = encode_for_endpoint(&big, 30_000, ImageEncoding::Jpeg { quality: 80 }, 1).unwrap();
        assert!(e.data_url.starts_with("data:image/jpeg;base64,"));
        let img = decode(&e.data_url);
        assert_eq!((img.width(), img.height()), (e.width, e.height));
        assert!(u64::from(e.width * e.height) <= 30_000);
    }

    #[test]
    fn a_broken_screenshot_is_an_error_naming_the_step() {
        let err = encode_for_endpoint(b"GIF89a", 100, ImageEncoding::Png, 42).unwrap_err();
        assert!(err.to_string().contains("step 42"), "{err}");
    }
}
