use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clawdesk_runtime::record::{RecordOptions, record};
use clawdesk_runtime::script::Script;
use clawdesk_store::Store;

use super::{DesktopArgs, data_dir};

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    desktop: DesktopArgs,
    /// The script: {"task": "...", "app": "...", "steps": [action, ...]}.
    #[arg(long)]
    script: PathBuf,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Milliseconds to let the app react before the after-screenshot.
    #[arg(long, default_value_t = 250)]
    settle_ms: u64,
}

pub async fn run(args: RecordArgs) -> anyhow::Result<()> {
    let script = Script::load(&args.script)?;
    let store = Store::open(data_dir(&args.data_dir)?)?;
    let desktop = args.desktop.connect_to_act().await?;
    let options = RecordOptions {
        settle: Duration::from_millis(args.settle_ms),
        ..RecordOptions::default()
    };
    let total = script.steps.len();
    let summary = record(&desktop, &store, &script, &options, |i, outcome| {
        eprintln!("step {}/{total}: {outcome:?}", i + 1);
    })
    .await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
