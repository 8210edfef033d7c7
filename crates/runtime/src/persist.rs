//! Saving observations into the store: screenshots as PNG blobs, trees as JSON blobs.

use clawdesk_desktop::Observation;
use clawdesk_desktop::observe::encode_png;
use clawdesk_store::{BlobId, BlobKind, Store};

use crate::RuntimeError;

/// The blob ids of one saved observation.
#[derive(Debug, Clone)]
pub struct SavedObservation {
    /// The screenshot, as a PNG blob.
    pub image: BlobId,
    /// The accessibility tree, as a JSON blob; `None` when no tree was read.
    pub tree: Option<BlobId>,
    /// Where the screenshot lies on the screen, as JSON (`null` if it cannot be written).
    pub surface: serde_json::Value,
}

/// Encodes and stores an observation's screenshot and tree.
pub fn save_observation(
    store: &Store,
    observation: &Observation,
) -> Result<SavedObservation, RuntimeError> {
    let png = encode_png(&observation.screenshot.image)?;
    let image = store.put_blob(&png, BlobKind::Png)?;
    let tree = match &observation.tree {
        Some(tree) => {
            let json = serde_json::to_vec(tree).map_err(|e| RuntimeError::External {
                program: "tree snapshot".into(),
                detail: e.to_string(),
            })?;
            Some(store.put_blob(&json, BlobKind::Json)?)
        }
        None => None,
    };
    let surface =
        serde_json::to_value(&observation.screenshot.surface).unwrap_or(serde_json::Value::Null);
    Ok(SavedObservation {
        image,
        tree,
        surface,
    })
}
