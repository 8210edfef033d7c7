//! `clawdesk train run`: the training loop over the store, resumable from its checkpoints.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use clawdesk_store::Store;
use clawdesk_trainer::UpdateMetrics;
use clawdesk_trainer::run::{TrainLoop, Turn};
use clawdesk_trainer::teacher::HintTemplate;

use super::data_dir;

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: TrainCommand,
}

#[derive(Debug, Subcommand)]
enum TrainCommand {
    /// Train the policy's LoRA on the store's judged steps, checkpointing as it goes; a
    /// restart (after a crash or kill) resumes from the newest checkpoint.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The base model: a folder or hub id.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Checkpoint folder (default: <data dir>/checkpoints/<run>).
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// The run's name in the store's training figures.
    #[arg(long, default_value = "main")]
    run: String,
    #[command(flatten)]
    learn: super::learn::LearnArgs,
    /// Seed of the adapter's initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Learn only from steps whose adapter is at most this many updates older than the one
    /// being trained (default: every step; their recorded log-probabilities keep the ratio right).
    #[arg(long)]
    max_staleness: Option<u64>,
    /// Stop after this many updates in all (restored ones count).
    #[arg(long)]
    until_updates: Option<u64>,
    /// Stop when no full batch is ready instead of waiting for more judged steps.
    #[arg(long)]
    until_idle: bool,
    /// A folder of prompt templates that override the built-in ones (see prompts/README.md).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Write the adapter as a PEFT folder here when the run stops.
    #[arg(long)]
    export: Option<PathBuf>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let TrainCommand::Run(a) = args.command;
    let data = data_dir(&a.data_dir)?;
    let store = Store::open(&data)?;
    let mut loaded = super::load::model(&a.model, None, &a.on)?;
    loaded.model.attach_lora(a.learn.lora(), a.seed)?;
    let checkpoints = a
        .checkpoints
        .clone()
        .unwrap_or_else(|| data.join("checkpoints").join(&a.run));
    let settings = a.learn.choices(a.max_staleness).train_loop(&a.run);
    let base_model = base_id(&a.model, &loaded.dir)?;
    let mut train = TrainLoop::open(
        &store,
        &loaded,
        &base_model,
        &checkpoints,
        HintTemplate::load(&clawdesk_prompts::search_path(
            a.prompts.as_deref(),
            Some(&data),
        ))?,
        settings,
    )?;
    loop {
        if a.until_updates.is_some_and(|n| train.steps() >= n) {
            break;
        }
        match train.turn()? {
            // One line per update on stderr, whatever the log filter: updates are minutes
            // apart on a CPU, and a silent terminal looks like a hung one.
            Turn::Updated { step, metrics } => eprintln!("{}", update_line(step, &metrics)),
            Turn::Skipped { step, reason } => tracing::warn!(step, %reason, "update skipped"),
            Turn::Waiting { ready } => {
                if a.until_idle {
                    tracing::info!(ready, "no full batch ready; stopping");
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    train.checkpoint()?;
    if let Some(dir) = &a.export {
        clawdesk_model::peft::export_adapter(&loaded.model, dir, &a.model)?;
        tracing::info!(dir = %dir.display(), "adapter exported");
    }
    println!(
        "{} updates, cursor at step {}",
        train.steps(),
        train.cursor().0
    );
    Ok(())
}

/// An update's one-line summary: the loss, the mean reward of its samples, the mean
/// teacher-policy gap when OPD had hints, the gradient norm and the speed.
fn update_line(step: u64, m: &UpdateMetrics) -> String {
    let gap = m
        .mean_gap
        .map(|g| format!(", gap {g:+.3}"))
        .unwrap_or_default();
    format!(
        "update {step}: loss {:.4}, reward {:+.2}{gap}, grad norm {:.3}, {} samples, {:.0} tokens/s",
        m.loss, m.mean_reward, m.grad_norm, m.samples, m.tokens_per_second
    )
}

/// The base model's identity for checkpoints: its name plus a digest of its config, so a
/// checkpoint of one tiny model is refused by another of the same folder name.
fn base_id(spec: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    let config = std::fs::read(dir.join("config.json"))?;
    let digest = blake3::hash(&config).to_hex();
    Ok(format!("{spec}#{}", &digest[..16]))
}
