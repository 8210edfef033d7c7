//! Every model turn as one JSONL record in ClawDesk's own form, everything the store knows of
//! it: `prompt` (messages, images as `{"type": "image"}` placeholders), `images` (paths
//! relative to the file, in order), `completion`, the verdict as `reward` and `label`, the
//! hint, the action, and the generated token ids and log-probabilities (what off-policy
//! training needs). TRL and verl read the [`trl`](super::trl) and [`verl`](super::verl)
//! exports, which carry the images inside.

use std::io::Write as _;
use std::path::Path;

use clawdesk_model::chat::Part;
use clawdesk_store::{StepKind, Store};
use serde_json::{Value, json};

use super::{ExportSummary, Turn, copy_blob, empty_folder, for_each_turn, io};
use crate::RuntimeError;

/// The records file's name inside the export folder; images go to `images/` beside it.
pub const RECORDS_FILE: &str = "chat.jsonl";

/// Writes the model turns of the episodes (all, or those in `only`) to `out/chat.jsonl`;
/// `judged_only` leaves out turns with no verdict yet.
pub fn export_chat(
    store: &Store,
    only: &[i64],
    judged_only: bool,
    out: &Path,
    progress: &mut dyn FnMut(&ExportSummary),
) -> Result<ExportSummary, RuntimeError> {
    empty_folder(out)?;
    let images_dir = out.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| io(&images_dir, e))?;
    let path = out.join(RECORDS_FILE);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| io(&path, e))?);
    let summary = for_each_turn(store, only, judged_only, progress, &mut |t: Turn<'_>| {
        let mut images = Vec::with_capacity(t.turn.images.len());
        for blob in &t.turn.images {
            let name = blob.to_string();
            copy_blob(store, blob, &images_dir, &name)?;
            images.push(format!("images/{name}"));
        }
        let (step, verdict) = (t.step, t.verdict);
        let score = verdict.map(|v| v.score);
        let record = json!({
            "episode": t.episode.id.0,
            "step": step.id.0,
            "kind": match step.kind { StepKind::Gui => "gui", StepKind::Turn => "turn" },
            "task": t.episode.task,
            "prompt": t.turn.messages.iter().map(message).collect::<Vec<_>>(),
            "images": images,
            "tools": t.turn.tools,
            "completion": [{"role": "assistant", "content": t.turn.text}],
            "action": step.action,
            "next_state": step.next_state,
            "reward": score,
            "label": score.filter(|s| *s != 0).map(|s| s > 0),
            "hint": verdict.and_then(|v| v.hint.clone()),
            "verdict_source": verdict.map(|v| v.source),
            "policy_version": step.policy_version,
            "tokens": t.turn.tokens,
            "logprobs": t.turn.logprobs,
        });
        writeln!(file, "{record}").map_err(|e| io(&path, e))?;
        Ok(images.len())
    })?;
    file.flush().map_err(|e| io(&path, e))?;
    Ok(summary)
}

fn message(m: &clawdesk_model::chat::Message) -> Value {
    let role = m.role.as_str();
    let content: Vec<Value> = m
        .content
        .iter()
        .map(|p| match p {
            Part::Text { text } => json!({"type": "text", "text": text}),
            Part::Image => json!({"type": "image"}),
        })
        .collect();
    let mut out = json!({"role": role, "content": content});
    if !m.tool_calls.is_empty() {
        out["tool_calls"] = serde_json::to_value(&m.tool_calls).unwrap_or_default();
    }
    out
}
