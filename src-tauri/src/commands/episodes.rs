use clawdesk_store::EpisodeId;
use tauri::State;

use crate::AppState;
use crate::wire::{EpisodeRow, ExportDone, StepRow, WireError};

/// The newest episodes first.
#[tauri::command(async)]
pub fn list_episodes(
    state: State<'_, AppState>,
    limit: Option<usize>,
) -> Result<Vec<EpisodeRow>, WireError> {
    let episodes = state.store.episodes(limit.unwrap_or(200).min(10_000))?;
    Ok(episodes.into_iter().map(EpisodeRow::from).collect())
}

/// An episode's steps in order, with the paths of their screenshots.
#[tauri::command(async)]
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

/// Writes every episode to `folder` (which must be empty or new) as OSWorld's results tree
/// (`kind` "traj", under the settings' base model's name), TRL's or verl's Parquet layout
/// ("trl", "verl"), or ClawDesk's JSONL chat records ("chat").
#[tauri::command]
pub async fn export_episodes(
    state: State<'_, AppState>,
    kind: String,
    folder: String,
) -> Result<ExportDone, WireError> {
    use clawdesk_runtime::export::{chat, traj, trl, verl};
    let store = state.store.clone();
    let out = std::path::PathBuf::from(&folder);
    // The results tree is named after the model; unreadable settings leave the neutral name.
    let model = clawdesk_desk::settings::DeskSettings::load(&state.config_dir)
        .map_or_else(|_| "clawdesk".to_owned(), |s| s.base_model);
    let summary = tauri::async_runtime::spawn_blocking(move || match kind.as_str() {
        "traj" => traj::export_trajectories(&store, &[], &model, &out, &mut |_| {}),
        // Training layouts carry judged turns only: an unjudged row has no label or reward.
        "trl" => trl::export_trl(&store, &[], true, &out, &mut |_| {}),
        "verl" => verl::export_verl(&store, &[], true, &out, &mut |_| {}),
        _ => chat::export_chat(&store, &[], false, &out, &mut |_| {}),
    })
    .await
    .map_err(|e| WireError {
        code: crate::wire::ErrorCode::Export,
        message: e.to_string(),
    })??;
    Ok(ExportDone {
        episodes: summary.episodes,
        steps: summary.steps,
        images: summary.images,
        folder,
    })
}
