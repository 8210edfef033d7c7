use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// What a blob holds; decides its file extension so the folder stays browsable by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// A PNG screenshot.
    Png,
    /// A JSON document (an accessibility-tree snapshot, say).
    Json,
}

impl BlobKind {
    fn extension(self) -> &'static str {
        match self {
            BlobKind::Png => "png",
            BlobKind::Json => "json",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            "png" => Some(BlobKind::Png),
            "json" => Some(BlobKind::Json),
            _ => None,
        }
    }
}

/// A blob's name: the BLAKE3 hash of its bytes plus its kind, written `hash.ext`.
///
/// Naming by content makes writes idempotent (the same screenshot twice is one file) and lets
/// anyone check a file against its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId {
    hash: String,
    kind: BlobKind,
}

impl BlobId {
    /// The id of these bytes, without storing them.
    pub fn of(bytes: &[u8], kind: BlobKind) -> Self {
        BlobId {
            hash: blake3::hash(bytes).to_hex().to_string(),
            kind,
        }
    }

    /// What the blob holds, which also gives its file extension.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// The file's path relative to the blob root: `ab/abcdef….png`.
    fn relative_path(&self) -> PathBuf {
        Path::new(&self.hash[..2]).join(format!("{}.{}", self.hash, self.kind.extension()))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hash, self.kind.extension())
    }
}

impl From<BlobId> for String {
    fn from(id: BlobId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for BlobId {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl std::str::FromStr for BlobId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        let (hash, ext) = s
            .split_once('.')
            .ok_or_else(|| StoreError::Invalid(format!("blob id {s:?} has no extension")))?;
        let kind = BlobKind::from_extension(ext)
            .ok_or_else(|| StoreError::Invalid(format!("blob id {s:?} has an unknown kind")))?;
        if hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(StoreError::Invalid(format!(
                "blob id {s:?} is not a BLAKE3 hex hash"
            )));
        }
        Ok(BlobId {
            hash: hash.to_owned(),
            kind,
        })
    }
}

/// The content-addressed file folder beside the database.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub(crate) fn open(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        Ok(Blobs { root })
    }

    pub(crate) fn path(&self, id: &BlobId) -> PathBuf {
        self.root.join(id.relative_path())
    }

    /// Writes the bytes under their hash unless they are already there.
    ///
    /// The file appears whole or not at all: it is written under a temporary name in the same
    /// folder and renamed into place, so a killed process leaves at worst a stray `.tmp` file.
    pub(crate) fn put(&self, bytes: &[u8], kind: BlobKind) -> Result<BlobId> {
        let id = BlobId::of(bytes, kind);
        let path = self.path(&id);
        if path.exists() {
            return Ok(id);
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut tmp = tempfile_in(dir)?;
        // Synced before the rename: a row committed after this call may name the blob, and a
        // power cut must not leave it empty under its name.
        let written = tmp.file.write_all(bytes).and_then(|()| tmp.file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp.path);
            return Err(StoreError::io(&path, e));
        }
        drop(tmp.file);
        std::fs::rename(&tmp.path, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp.path);
            StoreError::io(&path, e)
        })?;
        Ok(id)
    }

    /// The blob's bytes, checked against its name: a file whose content changed (a bad disk,
    /// a hand edit) is reported, never served.
    pub(crate) fn get(&self, id: &BlobId) -> Result<Vec<u8>> {
        let path = self.path(id);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::MissingBlob {
                    id: id.to_string(),
                    path: path.clone(),
                }
            } else {
                StoreError::io(&path, e)
            }
        })?;
        if blake3::hash(&bytes).to_hex().as_str() != id.hash {
            return Err(StoreError::CorruptBlob {
                path,
                detail: format!("its content does not match its hash {}", id.hash),
            });
        }
        Ok(bytes)
    }
}

struct TempFile {
    file: std::fs::File,
    path: PathBuf,
}

fn tempfile_in(dir: &Path) -> Result<TempFile> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".{}-{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    Ok(TempFile { file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        let a = blobs.put(b"hello", BlobKind::Png).unwrap();
        let b = blobs.put(b"hello", BlobKind::Png).unwrap();
        assert_eq!(a, b);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        let c = blobs.put(b"other", BlobKind::Png).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn id_round_trips_and_rejects_junk() {
        let id = BlobId::of(b"x", BlobKind::Json);
        let parsed: BlobId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert!("nothex.png".parse::<BlobId>().is_err());
        assert!(format!("{}.gif", "a".repeat(64)).parse::<BlobId>().is_err());
        assert!("a".repeat(64).parse::<BlobId>().is_err());
    }

    /// Issue 26: a blob whose bytes changed on disk is reported, not served.
    #[test]
    fn a_blob_whose_content_changed_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        let id = blobs.put(b"the real screenshot", BlobKind::Png).unwrap();
        std::fs::write(blobs.path(&id), b"something else").unwrap();
        let err = blobs.get(&id).unwrap_err();
        assert!(matches!(err, StoreError::CorruptBlob { .. }), "{err}");
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn missing_blob_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        let id = BlobId::of(b"never stored", BlobKind::Png);
        let err = blobs.get(&id).unwrap_err();
        assert!(matches!(err, StoreError::MissingBlob { .. }), "{err}");
    }
}
