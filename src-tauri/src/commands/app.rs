use clawdesk_desk::settings::DeskSettings;
use tauri::State;

use crate::AppState;
use crate::wire::AppInfo;

/// The header's facts (version, where the data lives) and whether this is the first run.
#[tauri::command(async)]
pub fn app_info(state: State<'_, AppState>) -> AppInfo {
    AppInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        data_dir: state.store.root().display().to_string(),
        first_run: !DeskSettings::path_in(&state.config_dir).exists(),
        default_hub_model: DeskSettings::default().base_model,
    }
}
