//! PNG encoding for screenshots, the one format the store, the window, the API and remote
//! endpoints exchange pictures in.
//!
//! A crate of its own so that everything that writes a picture (the desktop's observer, the
//! agent's remote policy, the server's stored turns) encodes it the same way without depending
//! on each other. It depends on `image` alone and must stay that small.

#![warn(missing_docs)]

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, ImageError, RgbaImage};

/// Encodes `image` as PNG with fast settings: screenshots are large and flat, and the default
/// compression level costs several times the time for a few percent of size.
pub fn encode(image: &RgbaImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(image.as_raw().len() / 8);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgba8,
        )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screenshot_comes_back_pixel_for_pixel() {
        let image = RgbaImage::from_fn(64, 48, |x, y| {
            image::Rgba([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8, 255])
        });
        let png = encode(&image).expect("encodes");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let back = image::load_from_memory(&png).expect("decodes").to_rgba8();
        assert_eq!(back, image);
    }
}
