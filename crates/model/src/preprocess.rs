//! Image preprocessing exactly as HF's Qwen2-VL image processor does it: smart resize to a
//! multiple of patch·merge within the pixel budget, bicubic resampling (PIL's algorithm, with
//! its fixed-point 8-bit arithmetic), rescale, normalise, temporal duplication and the
//! merge-block patch order. Also the mapping between model and screen coordinates.

use image::{DynamicImage, RgbImage};

use crate::config::PreprocessorConfig;
use crate::error::{ModelError, Result};
use crate::rope::Grid;

/// Images with a side shorter than this are refused: no screen is that small, so such an input
/// is a bug upstream, not something to upscale silently.
pub const MIN_IMAGE_SIDE: u32 = 4;
/// The largest decoded image accepted (pixels): above an 8K screen's 33 MP by a margin, and
/// far below what would exhaust memory before the resize.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;
/// HF refuses aspect ratios above this.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// An image ready for the vision tower.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// `[patches, C·T·P·P]`, row-major.
    pub pixels: Vec<f32>,
    /// Values per patch: channels × temporal patch size × patch side².
    pub patch_dim: usize,
    /// Patch grid (t, h, w) before merging.
    pub grid: Grid,
    /// The sizes needed to map the model's coordinates back to the source image.
    pub frame: ImageFrame,
}

impl PreparedImage {
    /// Patches before merging: t·h·w of the grid.
    pub fn num_patches(&self) -> usize {
        self.grid.0 * self.grid.1 * self.grid.2
    }
    /// Placeholder tokens this image takes in the prompt.
    pub fn num_tokens(&self, merge: usize) -> usize {
        self.num_patches() / (merge * merge)
    }
}

/// The original and resized sizes, for mapping the model's coordinates back to the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFrame {
    /// The decoded image's (width, height) in pixels.
    pub source: (u32, u32),
    /// The (width, height) after smart resize, the size the model sees.
    pub resized: (u32, u32),
}

impl ImageFrame {
    /// A point on Qwen3-VL's relative 0–999 grid to source pixels.
    pub fn from_grid_1000(&self, x: f64, y: f64) -> (f64, f64) {
        (
            x / 1000.0 * self.source.0 as f64,
            y / 1000.0 * self.source.1 as f64,
        )
    }
    /// Source pixels to the 0–999 grid.
    pub fn to_grid_1000(&self, x: f64, y: f64) -> (f64, f64) {
        (
            x / self.source.0 as f64 * 1000.0,
            y / self.source.1 as f64 * 1000.0,
        )
    }
    /// A point in the resized image's pixels (Qwen2.5-VL's absolute coordinates) to source pixels.
    pub fn from_resized(&self, x: f64, y: f64) -> (f64, f64) {
        (
            x * self.source.0 as f64 / self.resized.0 as f64,
            y * self.source.1 as f64 / self.resized.1 as f64,
        )
    }
}

/// HF's `smart_resize`: (height, width) divisible by `factor` with the pixel count in
/// `[min_pixels, max_pixels]` and the aspect ratio kept as closely as possible.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(u32, u32)> {
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if height == 0 || width == 0 || h.max(w) / h.min(w) > MAX_ASPECT_RATIO {
        return Err(ModelError::Image {
            width,
            height,
            reason: format!("the aspect ratio must be below {MAX_ASPECT_RATIO}"),
        });
    }
    // Python's round() rounds halves to even.
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// Converts any decoded image to RGB, compositing transparency onto white as HF does.
pub fn to_rgb(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (src, dst) in rgba.pixels().zip(out.pixels_mut()) {
        let a = src[3] as u32;
        for c in 0..3 {
            // PIL's alpha_composite over an opaque white background, rounded.
            let v = (src[c] as u32 * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v.min(255) as u8;
        }
    }
    out
}

/// Refuses sizes no screen has before anything is decoded or allocated.
pub fn check_size(width: u32, height: u32) -> Result<()> {
    if width < MIN_IMAGE_SIDE || height < MIN_IMAGE_SIDE {
        return Err(ModelError::Image {
            width,
            height,
            reason: format!("each side must be at least {MIN_IMAGE_SIDE} pixels"),
        });
    }
    if width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Err(ModelError::Image {
            width,
            height,
            reason: format!("more than the limit of {MAX_IMAGE_PIXELS} pixels"),
        });
    }
    Ok(())
}

/// Opens an image file, reading its header first so that an oversized image is refused
/// without decoding it.
pub fn load_image(path: &std::path::Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| ModelError::io(path, e))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))?;
    check_size(width, height)?;
    image::open(path).map_err(|e| ModelError::Input(format!("{}: {e}", path.display())))
}

/// Runs the whole preprocessing pipeline on one image.
pub fn prepare(image: &DynamicImage, config: &PreprocessorConfig) -> Result<PreparedImage> {
    let (width, height) = (image.width(), image.height());
    check_size(width, height)?;
    let factor = (config.patch_size * config.merge_size) as u32;
    let (rh, rw) = smart_resize(
        height,
        width,
        factor,
        config.min_pixels(),
        config.max_pixels(),
    )?;
    let rgb = to_rgb(image);
    let resized = if (rw, rh) == (width, height) {
        rgb
    } else {
        resample_bicubic(&rgb, rw, rh)
    };
    Ok(patchify(&resized, config, (width, height)))
}

fn patchify(img: &RgbImage, config: &PreprocessorConfig, source: (u32, u32)) -> PreparedImage {
    let (w, h) = img.dimensions();
    let p = config.patch_size;
    let m = config.merge_size;
    let t = config.temporal_patch_size;
    let (gh, gw) = (h as usize / p, w as usize / p);
    let patch_dim = 3 * t * p * p;
    let scale = config.rescale_factor as f32;
    let norm: Vec<(f32, f32)> = (0..3)
        .map(|c| (config.image_mean[c], config.image_std[c]))
        .collect();
    let raw = img.as_raw();
    let mut pixels = Vec::with_capacity(gh * gw * patch_dim);
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (row, col) = (bh * m + mh, bw * m + mw);
                    for (c, &(mean, std)) in norm.iter().enumerate() {
                        let start = pixels.len();
                        for py in 0..p {
                            let y = row * p + py;
                            for px in 0..p {
                                let x = col * p + px;
                                let v = raw[(y * w as usize + x) * 3 + c] as f32;
                                pixels.push((v * scale - mean) / std);
                            }
                        }
                        // The single frame repeats along the temporal axis.
                        for _ in 1..t {
                            pixels.extend_from_within(start..start + p * p);
                        }
                    }
                }
            }
        }
    }
    PreparedImage {
        pixels,
        patch_dim,
        grid: (1, gh, gw),
        frame: ImageFrame {
            source,
            resized: (w, h),
        },
    }
}

/// PIL's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index and the fixed-point weights (PIL's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coefficients(in_size: u32, out_size: u32) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let v = w * (1u64 << PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like PIL's `Image.resize(size, BICUBIC)`: a horizontal pass then a vertical one, each
/// rounded to 8 bits.
pub fn resample_bicubic(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    let src = img.as_raw();
    let horizontal = if out_w != in_w {
        let coeffs = coefficients(in_w, out_w);
        let mut out = vec![0u8; out_w as usize * in_h as usize * 3];
        for y in 0..in_h as usize {
            let row = &src[y * in_w as usize * 3..];
            for (x, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        acc += row[(xmin + i) * 3 + c] as i64 * w as i64;
                    }
                    out[(y * out_w as usize + x) * 3 + c] = clip8(acc);
                }
            }
        }
        out
    } else {
        src.to_vec()
    };
    let vertical = if out_h != in_h {
        let coeffs = coefficients(in_h, out_h);
        let stride = out_w as usize * 3;
        let mut out = vec![0u8; stride * out_h as usize];
        for (y, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..stride {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &w) in k.iter().enumerate() {
                    acc += horizontal[(ymin + i) * stride + x] as i64 * w as i64;
                }
                out[y * stride + x] = clip8(acc);
            }
        }
        out
    } else {
        horizontal
    };
    RgbImage::from_raw(out_w, out_h, vertical).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_hf_examples() {
        // 1920x1080 with Qwen3-VL's defaults (factor 32, 65536..16777216 pixels).
        assert_eq!(
            smart_resize(1080, 1920, 32, 65536, 16777216).expect("ok"),
            (1088, 1920)
        );
        // Halves round to even, as Python's round() does: 48/32 = 1.5 -> 2, 80/32 = 2.5 -> 2.
        assert_eq!(smart_resize(48, 80, 32, 1, 1 << 30).expect("ok"), (64, 64));
        // Too many pixels scales down.
        let (h, w) = smart_resize(4000, 4000, 32, 1, 1024 * 1024).expect("ok");
        assert!(h * w <= 1024 * 1024 && h % 32 == 0 && w % 32 == 0);
        assert!(smart_resize(10, 3000, 32, 1, 1 << 30).is_err());
    }

    #[test]
    fn coordinates_map_between_grid_resized_and_screen() {
        let frame = ImageFrame {
            source: (1920, 1080),
            resized: (1920, 1088),
        };
        assert_eq!(frame.from_grid_1000(500.0, 500.0), (960.0, 540.0));
        let (x, y) = frame.to_grid_1000(960.0, 540.0);
        assert!((x - 500.0).abs() < 1e-9 && (y - 500.0).abs() < 1e-9);
        let (x, y) = frame.from_resized(1920.0, 1088.0);
        assert!((x - 1920.0).abs() < 1e-9 && (y - 1080.0).abs() < 1e-9);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(50, 37, image::Rgb([200, 10, 90]));
        let out = resample_bicubic(&img, 64, 32);
        assert!(out.pixels().all(|p| p.0 == [200, 10, 90]));
    }

    #[test]
    fn refuses_degenerate_images() {
        let config: PreprocessorConfig = serde_json::from_str("{}").expect("defaults");
        let tiny = DynamicImage::new_rgb8(1, 1);
        let err = prepare(&tiny, &config).expect_err("1x1 refused");
        assert!(err.to_string().contains("1x1"), "{err}");
    }

    #[test]
    fn patch_layout_is_merge_block_order() {
        let config: PreprocessorConfig = serde_json::from_str(
            r#"{"patch_size": 2, "merge_size": 2, "temporal_patch_size": 2,
                "image_mean": [0,0,0], "image_std": [1,1,1], "rescale_factor": 1.0,
                "size": {"shortest_edge": 16, "longest_edge": 4096}}"#,
        )
        .expect("config");
        // 8x4 image whose red channel holds the column index and green the row index.
        let img = RgbImage::from_fn(8, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let prepared = patchify(&img, &config, (8, 4));
        assert_eq!(prepared.grid, (1, 2, 4));
        assert_eq!(prepared.patch_dim, 3 * 2 * 2 * 2);
        // Patch 2 is the first patch of the second row within the first 2x2 merge block.
        let patch2 = &prepared.pixels[2 * 24..3 * 24];
        assert_eq!(&patch2[0..4], &[0.0, 1.0, 0.0, 1.0]); // red, frame 0: columns 0,1
        assert_eq!(&patch2[4..8], &[0.0, 1.0, 0.0, 1.0]); // red, frame 1 repeats
        assert_eq!(&patch2[8..12], &[2.0, 2.0, 3.0, 3.0]); // green: rows 2,3
        // Patch 4 starts the second merge block: columns 4..6.
        assert_eq!(prepared.pixels[4 * 24], 4.0);
    }
}
