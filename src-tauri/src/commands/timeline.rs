use clawdesk_desk::review::{StepReview, person_says, step_review};
use clawdesk_store::{StepId, TimelineFilter};
use tauri::State;

use crate::AppState;
use crate::wire::{TimelinePage, WireError};

/// A page of the timeline, newest step first, with the filter's total.
#[tauri::command(async)]
pub fn timeline(
    state: State<'_, AppState>,
    filter: TimelineFilter,
    offset: usize,
    limit: usize,
) -> Result<TimelinePage, WireError> {
    let (rows, total) = state.store.timeline(&filter, offset, limit.min(1000))?;
    Ok(TimelinePage { rows, total })
}

/// Everything the detail pane shows of one step.
#[tauri::command]
pub async fn step_detail(state: State<'_, AppState>, step: i64) -> Result<StepReview, WireError> {
    let store = state.store.clone();
    Ok(
        tauri::async_runtime::spawn_blocking(move || step_review(&store, StepId(step)))
            .await
            .map_err(WireError::internal)??,
    )
}

/// A person's approve or reject (with an optional hint); it overrides the judges.
#[tauri::command(async)]
pub fn set_verdict(
    state: State<'_, AppState>,
    step: i64,
    approve: bool,
    hint: Option<String>,
) -> Result<(), WireError> {
    person_says(&state.store, StepId(step), approve, hint)?;
    Ok(())
}

/// How often each judge agreed with the person.
#[tauri::command(async)]
pub fn agreement(state: State<'_, AppState>) -> Result<Vec<clawdesk_store::Agreement>, WireError> {
    Ok(state.store.agreement()?)
}

/// The reward trend over recent steps: the deciding verdict of each and its running mean.
#[tauri::command(async)]
pub fn reward_trend(
    state: State<'_, AppState>,
    last: usize,
    window: usize,
) -> Result<Vec<clawdesk_store::RewardPoint>, WireError> {
    Ok(state.store.reward_trend(last.min(10_000), window.max(1))?)
}
