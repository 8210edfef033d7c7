use tauri::State;

use crate::AppState;
use crate::wire::{TrainSeries, WireError};

/// A run's updates after `after` (the newest run when none is named), for the curves to
/// append.
#[tauri::command(async)]
pub fn train_series(
    state: State<'_, AppState>,
    run: Option<String>,
    after: i64,
) -> Result<TrainSeries, WireError> {
    let runs = state.store.train_runs()?;
    let Some(run) = run.or_else(|| runs.first().cloned()) else {
        return Ok(TrainSeries {
            run: None,
            runs,
            updates: Vec::new(),
        });
    };
    let updates = state.store.train_updates(&run, after)?;
    Ok(TrainSeries {
        run: Some(run),
        runs,
        updates,
    })
}
