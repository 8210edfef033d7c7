use clawdesk_runtime::adapters::{ExportedAdapter, export_adapter};
use tauri::{AppHandle, Emitter, Runtime, State};

use crate::AppState;
use crate::wire::{AdapterRow, ExportProgress, WireError};

/// Every published adapter version, the active one marked.
#[tauri::command(async)]
pub fn list_adapters(state: State<'_, AppState>) -> Result<Vec<AdapterRow>, WireError> {
    let active = state.store.active_adapter()?.map(|a| a.version);
    Ok(state
        .store
        .adapters()?
        .into_iter()
        .map(|a| AdapterRow::new(a, active))
        .collect())
}

/// Serves version `version` from now on (`None`: the base model); a rollback is the same.
#[tauri::command(async)]
pub fn activate_adapter(state: State<'_, AppState>, version: Option<i64>) -> Result<(), WireError> {
    Ok(state.store.activate_adapter(version)?)
}

/// Copies version `version` to `folder` as a PEFT folder, reporting progress as
/// `export-progress` events.
#[tauri::command]
pub async fn export_adapter_to<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    version: i64,
    folder: String,
) -> Result<ExportedAdapter, WireError> {
    let store = state.store.clone();
    Ok(tauri::async_runtime::spawn_blocking(move || {
        export_adapter(
            &store,
            version,
            std::path::Path::new(&folder),
            &mut |done, total| {
                let _ = app.emit("export-progress", ExportProgress { done, total });
            },
        )
    })
    .await
    .map_err(WireError::internal)??)
}
