use clawdesk_store::EpisodeId;
use tauri::State;

use crate::AppState;
use crate::wire::{EpisodeRow, StepRow, WireError};

/// The newest episodes first.
#[tauri::command]
pub fn list_episodes(
    state: State<'_, AppState>,
    limit: Option<usize>,
) -> Result<Vec<EpisodeRow>, WireError> {
    let episodes = state.store.episodes(limit.unwrap_or(200).min(10_000))?;
    Ok(episodes.into_iter().map(EpisodeRow::from).collect())
}

/// An episode's steps in order, with the paths of their screenshots.
#[tauri::command]
pub fn episode_steps(state: State<'_, AppState>, episode: i64) -> Result<Vec<StepRow>, WireError> {
    let store = &state.store;
    let steps = store.steps(EpisodeId(episode))?;
    Ok(steps
        .into_iter()
        .map(|s| StepRow {
            id: s.id.0,
            index: s.index,
            action: s.action,
            outcome: s.outcome,
            error: s.error,
            before_image: s
                .before_image
                .as_ref()
                .map(|b| store.blob_path(b).display().to_string()),
            after_image: s
                .after_image
                .as_ref()
                .map(|b| store.blob_path(b).display().to_string()),
            started_at_ms: s.started_at_ms,
            ended_at_ms: s.ended_at_ms,
        })
        .collect())
}
