//! Reviewing one step: what the timeline's detail pane shows (before and after screens, the
//! region that changed, the action's points, the model's reply, every verdict with its raw
//! votes), a person's verdict on it, and small cached thumbnails for the list.

use std::path::{Path, PathBuf};

use clawdesk_desktop::{Action, NormPoint};
use clawdesk_judge::{PersonAnswer, person_verdict};
use clawdesk_store::{BlobId, BlobKind, Step, StepId, Store, Verdict, VerdictId};
use image::RgbaImage;
use serde::Serialize;

use crate::DeskError;

/// A rectangle in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Left edge, in pixels from the image's left.
    pub x: u32,
    /// Top edge, in pixels from the image's top.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Everything the detail pane shows of a step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReview {
    /// The step as stored.
    pub step: Step,
    /// The instruction of the step's episode.
    pub task: String,
    /// The app the step's episode was about, if one was named.
    pub app: Option<String>,
    /// The action's points, normalised to the screen (a click's point, a drag's two ends).
    pub points: Vec<NormPoint>,
    /// The action in a few words; `None` when the step's action cannot be read.
    pub description: Option<String>,
    /// The model's whole reply (thought and action call).
    pub reply: Option<String>,
    /// Where the after screen differs from the before screen.
    pub changed: Option<Region>,
    /// Every verdict on the step, judges' and people's, oldest first.
    pub verdicts: Vec<Verdict>,
    /// The score that counts (+1, -1 or 0): a person's over any judge's; `None` if unjudged.
    pub effective_score: Option<i8>,
}

/// Gathers the review of `step`.
pub fn step_review(store: &Store, step: StepId) -> Result<StepReview, DeskError> {
    let s = store.step(step)?;
    let episode = store.episode(s.episode)?;
    let action = serde_json::from_value::<Action>(s.action.clone()).ok();
    let reply = clawdesk_agent::turn::PolicyTurn::of_step(s.response.as_ref())
        .ok()
        .flatten()
        .map(|t| t.text);
    let changed = match (&s.before_image, &s.after_image) {
        (Some(before), Some(after)) if before != after => {
            let (a, b) = (decode(store, before)?, decode(store, after)?);
            changed_region(&a, &b)
        }
        _ => None,
    };
    let verdicts = store.verdicts(step)?;
    let effective_score = store.effective_verdict(step)?.map(|v| v.score);
    Ok(StepReview {
        points: action.as_ref().map(Action::points).unwrap_or_default(),
        description: action.as_ref().map(Action::describe),
        task: episode.task,
        app: episode.app,
        step: s,
        reply,
        changed,
        verdicts,
        effective_score,
    })
}

/// Records a person's approve (+1) or reject (-1), with an optional typed hint; it overrides
/// every judge's verdict on the step.
pub fn person_says(
    store: &Store,
    step: StepId,
    approve: bool,
    hint: Option<String>,
) -> Result<Option<VerdictId>, DeskError> {
    let answer = PersonAnswer {
        approve,
        correction: None,
        hint: hint.filter(|h| !h.trim().is_empty()),
    };
    Ok(store.add_verdict(&person_verdict(step, &answer))?)
}

fn decode(store: &Store, blob: &BlobId) -> Result<RgbaImage, DeskError> {
    let bytes = store.blob(blob)?;
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .map(|i| i.to_rgba8())
        .map_err(|e| DeskError::External {
            program: "screenshot".into(),
            detail: format!("{blob} is not a readable PNG: {e}"),
        })
}

/// The bounding box of the pixels that differ; `None` when the images are equal or of
/// different sizes (nothing comparable).
pub fn changed_region(a: &RgbaImage, b: &RgbaImage) -> Option<Region> {
    if a.dimensions() != b.dimensions() {
        return None;
    }
    let width = a.width() as usize;
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (y, (ra, rb)) in a
        .as_raw()
        .chunks_exact(width * 4)
        .zip(b.as_raw().chunks_exact(width * 4))
        .enumerate()
    {
        if ra == rb {
            continue;
        }
        let y = y as u32;
        let first = ra
            .chunks_exact(4)
            .zip(rb.chunks_exact(4))
            .position(|(p, q)| p != q)
            .unwrap_or(0) as u32;
        let last = ra
            .chunks_exact(4)
            .zip(rb.chunks_exact(4))
            .rposition(|(p, q)| p != q)
            .unwrap_or(0) as u32;
        x0 = x0.min(first);
        x1 = x1.max(last);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    (x0 != u32::MAX).then(|| Region {
        x: x0,
        y: y0,
        width: x1 - x0 + 1,
        height: y1 - y0 + 1,
    })
}

/// A PNG thumbnail of a stored screenshot, `width` pixels wide, made once and kept in `cache`
/// (named by the blob's hash, so it never goes stale).
pub fn thumbnail(
    store: &Store,
    blob: &BlobId,
    cache: &Path,
    width: u32,
) -> Result<PathBuf, DeskError> {
    let io = |path: &Path, e: std::io::Error| DeskError::External {
        program: "thumbnail".into(),
        detail: format!("{}: {e}", path.display()),
    };
    if blob.kind() != BlobKind::Png {
        return Err(DeskError::External {
            program: "thumbnail".into(),
            detail: format!("{blob} is not a screenshot"),
        });
    }
    let path = cache.join(format!("{blob}-{width}.png"));
    if path.is_file() {
        return Ok(path);
    }
    let full = decode(store, blob)?;
    let height = ((u64::from(full.height()) * u64::from(width)) / u64::from(full.width().max(1)))
        .max(1) as u32;
    let small =
        image::imageops::resize(&full, width, height, image::imageops::FilterType::Triangle);
    let png = clawdesk_desktop::observe::encode_png(&small)?;
    std::fs::create_dir_all(cache).map_err(|e| io(cache, e))?;
    let mut file = tempfile::NamedTempFile::new_in(cache).map_err(|e| io(cache, e))?;
    std::io::Write::write_all(&mut file, &png).map_err(|e| io(&path, e))?;
    file.persist(&path).map_err(|e| io(&path, e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_region_bounds_every_differing_pixel() {
        let a = RgbaImage::new(40, 30);
        let mut b = a.clone();
        assert_eq!(changed_region(&a, &b), None);
        b.put_pixel(5, 7, image::Rgba([1, 0, 0, 255]));
        b.put_pixel(20, 3, image::Rgba([0, 1, 0, 255]));
        b.put_pixel(12, 25, image::Rgba([0, 0, 1, 255]));
        assert_eq!(
            changed_region(&a, &b),
            Some(Region {
                x: 5,
                y: 3,
                width: 16,
                height: 23
            })
        );
        assert_eq!(changed_region(&a, &RgbaImage::new(40, 31)), None);
    }

    #[test]
    fn a_thumbnail_is_made_once_at_the_asked_width() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("data")).unwrap();
        let png = clawdesk_desktop::observe::encode_png(&RgbaImage::new(400, 200)).unwrap();
        let blob = store.put_blob(&png, BlobKind::Png).unwrap();
        let cache = dir.path().join("thumbs");
        let path = thumbnail(&store, &blob, &cache, 100).unwrap();
        let small = image::open(&path).unwrap();
        assert_eq!((small.width(), small.height()), (100, 50));
        let made = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(thumbnail(&store, &blob, &cache, 100).unwrap(), path);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), made);
    }
}
