use clawdesk_desk::settings::DeskSettings;
use tauri::State;

use crate::AppState;
use crate::wire::{SettingsAnswer, WireError};

/// The saved settings (defaults where none were saved).
#[tauri::command(async)]
pub fn get_settings(state: State<'_, AppState>) -> Result<DeskSettings, WireError> {
    Ok(DeskSettings::load(&state.data_dir)?)
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
        });
    }
    settings.save(&state.data_dir)?;
    Ok(SettingsAnswer {
        saved: true,
        errors: Vec::new(),
    })
}
