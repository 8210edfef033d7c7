use std::path::PathBuf;

/// Everything that can go wrong with the store, each variant naming the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database was written by a newer ClawDesk whose schema this build does not know.
    #[error(
        "the database {path} has schema version {found}, newer than this build supports ({supported}); \
         upgrade ClawDesk, or point --data-dir at another folder (nothing was changed)"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The disk (or the quota) is full; nothing half-written was kept.
    #[error(
        "no space left on the device holding {path}; free some space and retry (nothing stored was lost)"
    )]
    DiskFull { path: PathBuf },
    /// A file or folder of the data directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database refused an operation.
    #[error("database error in {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a ClawDesk database (or is damaged beyond SQLite's own recovery).
    #[error("{path} is not a usable ClawDesk database ({detail}); move it aside to start afresh")]
    Corrupt { path: PathBuf, detail: String },
    /// A blob file whose bytes no longer match the hash it is named by.
    #[error("the blob {path} is damaged: {detail}")]
    CorruptBlob { path: PathBuf, detail: String },
    /// A row that the caller named does not exist.
    #[error("no {what} with id {id}")]
    NotFound { what: &'static str, id: i64 },
    /// A blob named in a row is missing from the blob folder.
    #[error("blob {id} is missing from {path}")]
    MissingBlob { id: String, path: PathBuf },
    /// A caller passed a value the store cannot accept.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// No data directory could be chosen (no $HOME and no XDG dirs).
    #[error("cannot find a data directory: set $CLAWDESK_DATA_DIR or pass --data-dir")]
    NoDataDir,
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc_enospc())
            || source.kind() == std::io::ErrorKind::StorageFull
        {
            StoreError::DiskFull { path }
        } else {
            StoreError::Io { path, source }
        }
    }

    pub(crate) fn sql(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        let path = path.into();
        match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull { path },
            Some(rusqlite::ErrorCode::NotADatabase)
            | Some(rusqlite::ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path,
                detail: source.to_string(),
            },
            _ => StoreError::Sql { path, source },
        }
    }
}

/// ENOSPC on every Unix we build for; kept here so the crate needs no libc dependency.
const fn libc_enospc() -> i32 {
    28
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_as_such() {
        let e = StoreError::io("/data/blobs", std::io::Error::from_raw_os_error(28));
        assert!(matches!(e, StoreError::DiskFull { .. }));
        assert!(e.to_string().contains("no space left"), "{e}");
        let e = StoreError::io("/data", std::io::Error::from_raw_os_error(13));
        assert!(matches!(e, StoreError::Io { .. }));
    }
}
