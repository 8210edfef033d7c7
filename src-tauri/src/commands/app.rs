use tauri::State;

use crate::AppState;
use crate::wire::AppInfo;

/// The header's facts: version and where the data lives.
#[tauri::command]
pub fn app_info(state: State<'_, AppState>) -> AppInfo {
    AppInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: state.store.root().display().to_string(),
    }
}
