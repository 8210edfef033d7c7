//! OSWorld's trajectory layout: per episode a folder with `traj.jsonl` (one line per step:
//! `step_num`, `action_timestamp`, `action`, `response`, `reward`, `done`, `info`,
//! `screenshot_file`, the screen after the action) beside the screenshots, plus `task.json`.

use std::io::Write as _;
use std::path::Path;

use clawdesk_store::{EpisodeStatus, StepKind, Store};
use serde_json::json;

use super::{ExportSummary, copy_blob, empty_folder, episodes, io, timestamp};
use crate::RuntimeError;

/// Writes the GUI episodes (all, or those in `only`) under `out`, one folder each.
pub fn export_trajectories(
    store: &Store,
    only: &[i64],
    out: &Path,
    progress: &mut dyn FnMut(&ExportSummary),
) -> Result<ExportSummary, RuntimeError> {
    empty_folder(out)?;
    let mut summary = ExportSummary::default();
    for episode in episodes(store, only)? {
        let steps: Vec<_> = store
            .steps(episode.id)?
            .into_iter()
            .filter(|s| s.kind == StepKind::Gui)
            .collect();
        if steps.is_empty() {
            continue;
        }
        let dir = out.join(format!("episode-{}", episode.id.0));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let task = json!({
            "id": episode.id.0,
            "instruction": episode.task,
            "app": episode.app,
            "status": episode.status,
            "started_at_ms": episode.started_at_ms,
            "ended_at_ms": episode.ended_at_ms,
        });
        let task_path = dir.join("task.json");
        std::fs::write(
            &task_path,
            serde_json::to_vec_pretty(&task).unwrap_or_default(),
        )
        .map_err(|e| io(&task_path, e))?;
        let traj_path = dir.join("traj.jsonl");
        let mut traj = std::io::BufWriter::new(
            std::fs::File::create(&traj_path).map_err(|e| io(&traj_path, e))?,
        );
        let last = steps.len() - 1;
        for (i, step) in steps.iter().enumerate() {
            let n = i + 1;
            let at = timestamp(step.started_at_ms);
            let mut line = json!({
                "step_num": n,
                "action_timestamp": at,
                "action": step.action,
                "response": step.response.as_ref().and_then(|r| r.get("text").cloned()),
                "reward": 0,
                "done": i == last && episode.status == EpisodeStatus::Done,
                "info": {
                    "outcome": step.outcome,
                    "error": step.error,
                    "policy_version": step.policy_version,
                },
            });
            if let Some(v) = store.effective_verdict(step.id)? {
                line["reward"] = json!(v.score);
                line["info"]["verdict"] =
                    json!({"source": v.source, "score": v.score, "hint": v.hint, "judge": v.judge});
            }
            for (key, blob, suffix) in [
                ("screenshot_file", &step.after_image, ""),
                ("before_screenshot_file", &step.before_image, "_before"),
            ] {
                if let Some(blob) = blob {
                    let name = format!("step_{n}_{at}{suffix}.png");
                    copy_blob(store, blob, &dir, &name)?;
                    line[key] = json!(name);
                    summary.images += 1;
                }
            }
            writeln!(traj, "{line}").map_err(|e| io(&traj_path, e))?;
            summary.steps += 1;
        }
        traj.flush().map_err(|e| io(&traj_path, e))?;
        summary.episodes += 1;
        progress(&summary);
    }
    Ok(summary)
}
