//! `clawdesk export`: recorded episodes as OSWorld trajectories or JSONL chat records.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use clawdesk_runtime::export::ExportSummary;
use clawdesk_runtime::export::chat::export_chat;
use clawdesk_runtime::export::traj::export_trajectories;
use clawdesk_store::Store;

use super::data_dir;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    what: ExportWhat,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR or the XDG data dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Only these episodes (repeatable; default: all).
    #[arg(long = "episode", global = true, value_name = "ID")]
    episodes: Vec<i64>,
}

#[derive(Debug, Subcommand)]
enum ExportWhat {
    /// OSWorld's layout: a folder per episode with traj.jsonl, screenshots and task.json.
    Traj {
        /// An empty or new folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// One JSONL record per model turn (prompt, images, completion, action, verdict, hint,
    /// tokens, log-probabilities) in out/chat.jsonl, images in out/images/.
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
    let mut progress = |s: &ExportSummary| {
        eprintln!(
            "exported {} episodes, {} steps, {} images",
            s.episodes, s.steps, s.images
        );
    };
    let summary = match &args.what {
        ExportWhat::Traj { out } => {
            export_trajectories(&store, &args.episodes, out, &mut progress)?
        }
        ExportWhat::Chat { out, judged_only } => {
            export_chat(&store, &args.episodes, *judged_only, out, &mut progress)?
        }
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
