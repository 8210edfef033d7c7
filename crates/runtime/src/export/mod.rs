//! Recorded episodes out of the store in formats other trainers and evaluators read:
//! OSWorld-style trajectories (`traj.jsonl` and screenshots per episode) and JSONL chat
//! records with images, actions and verdicts (TRL's and verl's conversational layout).

pub mod chat;
pub mod traj;

use std::path::Path;

use clawdesk_store::{Episode, EpisodeId, Store};

use crate::RuntimeError;

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

/// `YYYYMMDD@HHMMSS` in UTC, OSWorld's action timestamp.
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
        "{year:04}{month:02}{day:02}@{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_calendar_times() {
        assert_eq!(super::timestamp(0), "19700101@000000");
        // 2024-02-29 12:34:56 UTC (a leap day).
        assert_eq!(super::timestamp(1_709_210_096_000), "20240229@123456");
    }
}
