use std::path::PathBuf;

use crate::StoreError;

/// The data directory used when none is given: `$CLAWDESK_DATA_DIR`, else the XDG data dir
/// (`~/.local/share/clawdesk` on Linux).
pub fn default_data_dir() -> Result<PathBuf, StoreError> {
    if let Some(dir) = std::env::var_os("CLAWDESK_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "clawdesk")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or(StoreError::NoDataDir)
}
