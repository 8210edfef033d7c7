//! Progress of long work on the terminal: a bar on stderr while a download, a warm start or
//! an export runs (drawn only when stderr is a terminal, so pipes and logs stay clean), and a
//! one-line summary for each training update. `RUST_LOG` still turns on the detailed logs.

use std::time::Duration;

use clawdesk_model::source::LoadEvent;
use clawdesk_trainer::gym::warm_start::WarmStartProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units of `what`, on stderr.
pub fn bar(total: u64, what: &str, bytes: bool) -> ProgressBar {
    let template = if bytes {
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)"
    } else {
        "{msg} [{bar:30}] {pos}/{len} ({eta} left)"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(total).with_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Shows a model's load: a bar per file downloaded from the hub, then a line while the weights
/// load.
pub fn model_load() -> impl FnMut(LoadEvent) {
    let mut current: Option<(String, ProgressBar)> = None;
    move |event| match event {
        LoadEvent::Downloading { file, done, total } => {
            let same = current.as_ref().is_some_and(|(name, _)| *name == file);
            if !same {
                let shown = bar(total as u64, &format!("downloading {file}"), true);
                current = Some((file.clone(), shown));
            }
            if let Some((_, shown)) = &current {
                shown.set_position(done as u64);
            }
        }
        LoadEvent::Downloaded { file } => {
            if let Some((name, shown)) = current.take() {
                shown.finish_and_clear();
                if name != file {
                    current = None;
                }
            }
            eprintln!("downloaded {file}");
        }
        LoadEvent::Loading { dir } => {
            if let Some((_, shown)) = current.take() {
                shown.finish_and_clear();
            }
            eprintln!("loading the weights in {}", dir.display());
        }
    }
}

/// Shows a warm start: a bar over its updates with the latest loss. A warm start runs in
/// phases; each phase gets a bar of its own.
pub fn warm_start() -> impl FnMut(WarmStartProgress) {
    let mut shown: Option<ProgressBar> = None;
    move |p| {
        let fresh = shown
            .as_ref()
            .is_none_or(|b| b.length() != Some(p.steps as u64) || p.step == 1);
        if fresh {
            if let Some(old) = shown.take() {
                old.finish();
            }
            shown = Some(bar(p.steps as u64, "warm start", false));
        }
        if let Some(b) = &shown {
            b.set_position(p.step as u64);
            b.set_message(format!("warm start, loss {:.3}", p.loss));
            if p.step == p.steps {
                b.finish();
            }
        }
        if p.step.is_multiple_of(50) || p.step == p.steps {
            tracing::info!(step = p.step, of = p.steps, loss = p.loss, "warm start");
        }
    }
}
