use std::path::PathBuf;

use clap::{Args, Subcommand};
use clawdesk_agent::{ActionFormat, AgentPrompts, Policy};
use clawdesk_engine::agent::{AgentSettings, StopOnLoop, run_agent};
use clawdesk_store::Store;

use super::{DesktopArgs, data_dir};

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Run the model as an agent for one episode, recording every step.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    desktop: DesktopArgs,
    /// What the agent is to do.
    #[arg(long)]
    instruction: String,
    /// The policy: a model folder or hub id.
    #[arg(long)]
    model: String,
    /// A PEFT adapter folder to serve on top of the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The version number the adapter's steps are recorded under.
    #[arg(long, default_value_t = 1, requires = "adapter")]
    adapter_version: i64,
    /// The app the episode is about (its accessibility tree is read).
    #[arg(long)]
    app: Option<String>,
    /// The model's action format: qwen3-vl, qwen2.5-vl, ui-tars-1000, ui-tars-pixels,
    /// pyautogui, computer-13.
    #[arg(long, default_value = "qwen3-vl")]
    format: ActionFormat,
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Past screenshots kept in the prompt.
    #[arg(long, default_value_t = 2)]
    window: usize,
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR or the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A folder of prompt templates that override the built-in ones (see prompts/README.md).
    #[arg(long)]
    prompts: Option<PathBuf>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let AgentCommand::Run(a) = args.command;
    let data = data_dir(&a.data_dir)?;
    let store = Store::open(&data)?;
    let dirs = clawdesk_prompts::search_path(a.prompts.as_deref(), Some(&data));
    let prompts = AgentPrompts::load(&dirs)?;
    let loaded = tokio::task::block_in_place(|| super::gym::load(&a.model, None))?;
    let policy = Policy::spawn(loaded);
    if let Some(dir) = &a.adapter {
        policy.activate(a.adapter_version, dir.clone()).await?;
    }
    let desktop = a.desktop.connect().await?;
    let mut settings = AgentSettings::new(a.instruction.clone());
    settings.app = a.app.clone();
    settings.format = a.format;
    settings.max_steps = a.steps;
    settings.window = a.window;
    settings.sampling.temperature = a.temperature;
    settings.sampling.max_tokens = a.max_tokens;
    settings.sampling.seed = a.seed;
    let summary = run_agent(
        &desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |report| {
            eprintln!(
                "step {}: {:?} in {:.1} s (generation {:.1} s, adapter {:?})",
                report.index + 1,
                report.outcome,
                report.step_seconds,
                report.generate_seconds,
                report.version
            );
        },
    )
    .await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
