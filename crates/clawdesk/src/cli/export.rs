//! `clawdesk export`: recorded episodes as OSWorld's results tree, TRL's or verl's Parquet
//! layout, or ClawDesk's JSONL chat records.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use clawdesk_runtime::export::ExportSummary;
use clawdesk_runtime::export::chat::export_chat;
use clawdesk_runtime::export::traj::export_trajectories;
use clawdesk_runtime::export::trl::export_trl;
use clawdesk_runtime::export::verl::export_verl;
use clawdesk_store::Store;

use super::data_dir;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: ExportWhat,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Only these episodes (repeatable; default: all).
    #[arg(long = "episode", global = true, value_name = "ID")]
    episodes: Vec<i64>,
}

#[derive(Debug, Subcommand)]
enum ExportWhat {
    /// OSWorld's results tree (out/pyautogui/screenshot/MODEL/APP/EPISODE/ with traj.jsonl,
    /// screenshots and result.txt), which its show_result.py reads, and the episodes as its
    /// task list (out/evaluation_examples/).
    Traj {
        /// An empty or new folder.
        #[arg(long)]
        out: PathBuf,
        /// The model's name in the tree (a hub id's `/` becomes `_`).
        #[arg(long, default_value = "clawdesk")]
        model: String,
    },
    /// TRL's conversational vision layout, out/train.parquet: prompt, completion, images
    /// (inside the file; `datasets` loads them as pictures) and label (the verdict, as KTO
    /// reads it).
    Trl {
        /// An empty or new folder.
        #[arg(long)]
        out: PathBuf,
        /// Leave out turns with no verdict yet.
        #[arg(long)]
        judged_only: bool,
    },
    /// verl's RL layout, out/train.parquet: data_source, prompt (string content with <image>
    /// markers), images, ability, reward_model and extra_info, as its RLHFDataset reads them.
    Verl {
        /// An empty or new folder.
        #[arg(long)]
        out: PathBuf,
        /// Leave out turns with no verdict yet.
        #[arg(long)]
        judged_only: bool,
    },
    /// ClawDesk's own records: one JSONL line per model turn (prompt, images, completion,
    /// action, verdict, hint, tokens, log-probabilities) in out/chat.jsonl, images in
    /// out/images/.
    Chat {
        /// The folder to write the records and their images into.
        #[arg(long)]
        out: PathBuf,
        /// Leave out turns with no verdict yet.
        #[arg(long)]
        judged_only: bool,
    },
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let store = Store::open(data_dir(&args.data_dir)?)?;
    // A bar over the episodes to write (those without steps are passed over, so it may end
    // short of its length).
    let total = if args.episodes.is_empty() {
        store.episodes(usize::MAX >> 1)?.len()
    } else {
        args.episodes.len()
    };
    let shown = super::progress::bar(total as u64, "exporting episodes", false);
    let mut progress = |s: &ExportSummary| {
        shown.set_position(s.episodes as u64);
        shown.set_message(format!("exported {} steps, {} images", s.steps, s.images));
    };
    let summary = match &args.what {
        ExportWhat::Traj { out, model } => {
            export_trajectories(&store, &args.episodes, model, out, &mut progress)?
        }
        ExportWhat::Trl { out, judged_only } => {
            export_trl(&store, &args.episodes, *judged_only, out, &mut progress)?
        }
        ExportWhat::Verl { out, judged_only } => {
            export_verl(&store, &args.episodes, *judged_only, out, &mut progress)?
        }
        ExportWhat::Chat { out, judged_only } => {
            export_chat(&store, &args.episodes, *judged_only, out, &mut progress)?
        }
    };
    shown.finish_and_clear();
    eprintln!(
        "exported {} episodes, {} steps, {} images",
        summary.episodes, summary.steps, summary.images
    );
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
