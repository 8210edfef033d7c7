//! Where the runtime keeps files of its own, outside the store.

use std::path::PathBuf;

use crate::RuntimeError;

/// The per-user cache folder (`~/.cache/clawdesk` on Linux): the practice base lives here, made
/// once per machine and shared by the window, the command line and the benchmarks.
pub fn default_cache() -> Result<PathBuf, RuntimeError> {
    directories::ProjectDirs::from("", "", "clawdesk")
        .map(|d| d.cache_dir().to_path_buf())
        .ok_or_else(|| RuntimeError::Io("no home directory for the cache".into()))
}
