//! Recorded episodes out of the store in formats other trainers and evaluators read, each
//! tested by reading it with those tools: OSWorld's results tree (`traj`), TRL's
//! conversational vision layout and verl's RL layout (Parquet files `datasets` loads with the
//! images inside), and ClawDesk's own JSONL chat records with token ids and log-probabilities
//! (`chat`).

pub mod chat;
mod table;
pub mod traj;
pub mod trl;
pub mod verl;

use std::path::Path;

use clawdesk_agent::turn::PolicyTurn;
use clawdesk_store::{BlobId, Episode, EpisodeId, Step, Store, Verdict};

use crate::RuntimeError;
use table::Cell;

/// One model turn of an episode, with the verdict that counts for it.
pub(crate) struct Turn<'a> {
    pub episode: &'a Episode,
    pub step: &'a Step,
    pub turn: &'a PolicyTurn,
    pub verdict: Option<&'a Verdict>,
}

/// Calls `write` for every model turn of the episodes (all, or those in `only`), leaving out
/// unjudged ones when `judged_only`; `write` answers how many images it wrote. Progress is
/// reported once per episode that had a turn.
pub(crate) fn for_each_turn(
    store: &Store,
    only: &[i64],
    judged_only: bool,
    progress: &mut dyn FnMut(&ExportSummary),
    write: &mut dyn FnMut(Turn<'_>) -> Result<usize, RuntimeError>,
) -> Result<ExportSummary, RuntimeError> {
    let mut summary = ExportSummary::default();
    for episode in episodes(store, only)? {
        let mut wrote = false;
        for step in store.steps(episode.id)? {
            let turn = match PolicyTurn::of_step(step.response.as_ref()) {
                Ok(Some(turn)) => turn,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(step = step.id.0, error = %e, "not exported");
                    continue;
                }
            };
            let verdict = store.effective_verdict(step.id)?;
            if judged_only && verdict.is_none() {
                continue;
            }
            summary.images += write(Turn {
                episode: &episode,
                step: &step,
                turn: &turn,
                verdict: verdict.as_ref(),
            })?;
            summary.steps += 1;
            wrote = true;
        }
        if wrote {
            summary.episodes += 1;
            progress(&summary);
        }
    }
    Ok(summary)
}

/// Rows per Parquet row group: a few dozen screenshots in memory at a time.
const GROUP_ROWS: usize = 32;

/// The Parquet file's name in a TRL or verl export: the train split, as `datasets` finds it.
pub const TABLE_FILE: &str = "train.parquet";

/// Writes one Parquet row of `fields` per model turn to `out/train.parquet`, with Hugging
/// Face's feature metadata; `row` makes a row from the turn and its screenshots (as
/// [`image_cell`]s).
pub(crate) fn export_table(
    store: &Store,
    only: &[i64],
    judged_only: bool,
    out: &Path,
    fields: Vec<table::Field>,
    progress: &mut dyn FnMut(&ExportSummary),
    row: &mut dyn FnMut(&Turn<'_>, Vec<Cell>) -> Vec<Cell>,
) -> Result<ExportSummary, RuntimeError> {
    empty_folder(out)?;
    // Written under a hidden name and renamed when whole: a failed export (a missing
    // screenshot, a full disk) leaves no train.parquet that readers would take for a dataset.
    let partial = out.join(format!(".{TABLE_FILE}.partial"));
    let written = (|| {
        let metadata = vec![table::hf_metadata(&fields)];
        let mut table = table::TableWriter::create(&partial, fields, metadata, GROUP_ROWS)?;
        let summary = for_each_turn(store, only, judged_only, progress, &mut |t: Turn<'_>| {
            let images = t
                .turn
                .images
                .iter()
                .map(|blob| image_cell(store, blob))
                .collect::<Result<Vec<_>, _>>()?;
            let count = images.len();
            table.push(row(&t, images))?;
            Ok(count)
        })?;
        table.finish()?;
        Ok(summary)
    })();
    match written {
        Ok(summary) => {
            let done = out.join(TABLE_FILE);
            std::fs::rename(&partial, &done).map_err(|e| io(&done, e))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// A stored screenshot as `datasets` keeps an image: its bytes and a file name.
pub(crate) fn image_cell(store: &Store, blob: &BlobId) -> Result<Cell, RuntimeError> {
    let path = store.blob_path(blob);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    Ok(Cell::Struct(vec![
        Cell::Bytes(bytes),
        Cell::Str(format!("{blob}.png")),
    ]))
}

/// A tool call as Qwen's chat template writes it into an assistant message.
pub(crate) fn tool_call_text(call: &clawdesk_model::chat::ToolCall) -> String {
    let call =
        serde_json::json!({"name": call.function.name, "arguments": call.function.arguments});
    format!("<tool_call>\n{call}\n</tool_call>")
}

/// Which episodes to export: the ones named, or all of them.
pub(crate) fn episodes(store: &Store, only: &[i64]) -> Result<Vec<Episode>, RuntimeError> {
    if only.is_empty() {
        let mut all = store.episodes(usize::MAX >> 1)?;
        all.reverse();
        return Ok(all);
    }
    only.iter()
        .map(|&id| Ok(store.episode(EpisodeId(id))?))
        .collect()
}

/// Copies a blob into `dir` under its own name, once; returns that name.
pub(crate) fn copy_blob(
    store: &Store,
    blob: &clawdesk_store::BlobId,
    dir: &Path,
    name: &str,
) -> Result<(), RuntimeError> {
    let to = dir.join(name);
    if to.exists() {
        return Ok(());
    }
    std::fs::copy(store.blob_path(blob), &to).map_err(|e| RuntimeError::External {
        program: "export".into(),
        detail: format!("copying {} to {}: {e}", blob, to.display()),
    })?;
    Ok(())
}

/// Refuses to write into a folder that already holds files.
pub(crate) fn empty_folder(out: &Path) -> Result<(), RuntimeError> {
    let busy = out
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if busy {
        return Err(RuntimeError::External {
            program: "export".into(),
            detail: format!(
                "{} is not empty; choose an empty or new folder",
                out.display()
            ),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, e))
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::External {
        program: "export".into(),
        detail: format!("{}: {e}", path.display()),
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Episodes with at least one step written.
    pub episodes: usize,
    /// Steps written, one record or trajectory line each.
    pub steps: usize,
    /// Screenshots the records name, counted once per mention.
    pub images: usize,
}

/// `YYYYMMDD@HHMMSSffffff` in UTC (microseconds last), OSWorld's action timestamp.
pub(crate) fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}@{:02}{:02}{:02}{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000) * 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_calendar_times() {
        assert_eq!(super::timestamp(0), "19700101@000000000000");
        // 2024-02-29 12:34:56.789 UTC (a leap day).
        assert_eq!(super::timestamp(1_709_210_096_789), "20240229@123456789000");
    }
}
