use clawdesk_desk::settings::{DeskSettings, data_folder_notice};
use tauri::State;

use crate::AppState;
use crate::wire::{SettingsAnswer, WireError};

/// The saved settings (defaults where none were saved).
#[tauri::command(async)]
pub fn get_settings(state: State<'_, AppState>) -> Result<DeskSettings, WireError> {
    Ok(DeskSettings::load(&state.config_dir)?)
}

/// Checks and saves the settings; a bad field comes back named, and nothing is saved.
#[tauri::command(async)]
pub fn save_settings(
    state: State<'_, AppState>,
    settings: DeskSettings,
) -> Result<SettingsAnswer, WireError> {
    if let Err(errors) = settings.validate() {
        return Ok(SettingsAnswer {
            saved: false,
            errors,
            notice: None,
        });
    }
    let overridden = std::env::var_os("CLAWDESK_DATA_DIR").is_some_and(|d| !d.is_empty());
    let notice = data_folder_notice(
        state.store.root(),
        &settings.chosen_data_folder()?,
        overridden,
    );
    settings.save(&state.config_dir)?;
    Ok(SettingsAnswer {
        saved: true,
        errors: Vec::new(),
        notice,
    })
}
