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
        /// The database file.
        path: PathBuf,
        /// The schema version the file records (SQLite's `user_version`).
        found: i64,
        /// The newest schema version this build can read ([`crate::SCHEMA_VERSION`]).
        supported: i64,
    },
    /// The disk (or the quota) is full; nothing half-written was kept.
    #[error(
        "no space left on the device holding {path}; free some space and retry (nothing stored was lost)"
    )]
    DiskFull {
        /// The file or folder that could not be written.
        path: PathBuf,
    },
    /// A file or folder of the data directory could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The database refused an operation.
    #[error("database error in {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a ClawDesk database (or is damaged beyond SQLite's own recovery).
    #[error("{path} is not a usable ClawDesk database ({detail}); move it aside to start afresh")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite (or its integrity check) found wrong.
        detail: String,
    },
    /// A blob file whose bytes no longer match the hash it is named by.
    #[error("the blob {path} is damaged: {detail}")]
    CorruptBlob {
        /// The damaged blob file.
        path: PathBuf,
        /// How its content fails to match its name.
        detail: String,
    },
    /// A row that the caller named does not exist.
    #[error("no {what} with id {id}")]
    NotFound {
        /// The kind of row sought (`episode`, `step`, `adapter version`).
        what: &'static str,
        /// The id (or, for an adapter, the version) that matched nothing.
        id: i64,
    },
    /// A blob named in a row is missing from the blob folder.
    #[error("blob {id} is missing from {path}")]
    MissingBlob {
        /// The blob's id, written `hash.ext`.
        id: String,
        /// Where its file should have been.
        path: PathBuf,
    },
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
