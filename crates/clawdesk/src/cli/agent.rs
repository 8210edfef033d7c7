use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use clawdesk_agent::{ActionFormat, AgentPrompts, Policy, RemoteConfig};
use clawdesk_runtime::episode::{AgentSettings, StepReport, StopOnLoop, run_agent};
use clawdesk_runtime::live::{LiveSettings, run_live};
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
    Run(Box<RunArgs>),
    /// Run the agent while the judge scores its steps and the trainer learns from them,
    /// publishing adapter versions that the agent picks up between steps.
    Live(Box<LiveArgs>),
    /// Read a model's reply on stdin and print the actions it parses to and the pyautogui code
    /// they amount to, for debugging a model's output.
    Parse(super::parse::ParseArgs),
}

#[derive(Debug, Args)]
struct LiveArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    judge: super::judge::JudgeChoice,
    /// Episodes to run (the stop key ends the current one and the run).
    #[arg(long, default_value_t = 1)]
    episodes: usize,
    #[command(flatten)]
    learn: super::learn::LearnArgs,
    /// Publish the adapter to the agent every this many updates.
    #[arg(long, default_value_t = 1)]
    publish_every: u64,
    /// Keep the folders of this many newest adapter versions (0: all); older ones are pruned,
    /// except versions a person exported or activated.
    #[arg(long, default_value_t = 50)]
    keep_adapters: usize,
    /// Learn only from steps whose adapter is at most this many updates older than the one
    /// being trained.
    #[arg(long, default_value_t = 8)]
    max_staleness: u64,
    /// CPU threads of the policy's own pool (default: shared with the trainer).
    #[arg(long)]
    policy_threads: Option<usize>,
    /// CPU threads of the trainer's own pool (default: shared with the policy).
    #[arg(long)]
    trainer_threads: Option<usize>,
    /// Held-out gym tasks each published adapter is scored on (0: none).
    #[arg(long, default_value_t = 24)]
    gym_tasks: usize,
    /// Also serve the live policy over the OpenAI-compatible API on this address; sessions'
    /// main turns are judged and trained on with the agent's steps.
    #[arg(long, value_name = "ADDR")]
    serve: Option<std::net::SocketAddr>,
    /// The bearer token for --serve (default: $CLAWDESK_API_TOKEN); required off loopback.
    #[arg(long, requires = "serve")]
    token: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    desktop: DesktopArgs,
    /// What the agent is to do.
    #[arg(long)]
    instruction: String,
    /// The policy: a model folder or hub id.
    #[arg(long, required_unless_present = "remote")]
    model: Option<String>,
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Or a policy served elsewhere: an OpenAI-compatible API root (vLLM, `clawdesk serve`),
    /// asked for log-probabilities and token ids so its steps train here.
    #[arg(long, conflicts_with = "model", value_name = "URL")]
    remote: Option<String>,
    /// The remote server's model name.
    #[arg(long, default_value = "clawdesk", requires = "remote")]
    remote_model: String,
    /// Read the remote server's API key from this environment variable.
    #[arg(long, value_name = "VAR", requires = "remote")]
    remote_key_env: Option<String>,
    /// A PEFT adapter folder to serve on top of the model (default: the adapter activated
    /// with `clawdesk adapters activate`, if any).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The version number the adapter's steps are recorded under.
    #[arg(long, default_value_t = 1, requires = "adapter")]
    adapter_version: i64,
    /// The app the episode is about (its accessibility tree is read).
    #[arg(long)]
    app: Option<String>,
    /// The model's action format: qwen3-vl, qwen2.5-vl, ui-tars-1000, ui-tars-pixels,
    /// pyautogui, computer-13, opencua. Default: the one the model's name says (UI-TARS-1.5,
    /// OpenCUA, Qwen2.5-VL, ...), else the one a local folder's config.json says, else
    /// qwen3-vl.
    #[arg(long)]
    format: Option<ActionFormat>,
    /// Steps before the episode ends unfinished (the window's "Steps per episode").
    #[arg(long, default_value_t = 30)]
    max_steps: usize,
    /// Past screenshots kept in the prompt.
    #[arg(long, default_value_t = 2)]
    window: usize,
    /// The sampling temperature of the agent's replies; 0 picks the likeliest token.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// The most tokens a reply may have.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// The sampling seed of the first step (each step adds its index).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A folder of prompt templates that override the built-in ones (see prompts/README.md).
    #[arg(long)]
    prompts: Option<PathBuf>,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    match args.command {
        AgentCommand::Run(a) => run_one(*a).await,
        AgentCommand::Live(a) => live(*a).await,
        AgentCommand::Parse(a) => super::parse::run(a),
    }
}

/// The format asked for, else the one the policy's name says, else the one a local model
/// folder's `config.json` says, else Qwen3-VL's; said on stderr when it was not asked for,
/// since a wrong format makes every reply unreadable.
fn format_of(a: &RunArgs) -> ActionFormat {
    if let Some(format) = a.format {
        return format;
    }
    let model = a.model.as_deref().unwrap_or(&a.remote_model);
    let found = ActionFormat::named_by(model)
        .map(|format| (format, format!("named by the model {model}")))
        .or_else(|| a.model.as_deref().and_then(format_from_config));
    match found {
        Some((format, why)) => {
            eprintln!("action format {format} ({why}; --format to change)");
            format
        }
        None => ActionFormat::Qwen3Vl,
    }
}

/// What a model folder's `config.json` says of its format: the name it was saved under
/// (`_name_or_path`, which fine-tunes such as UI-TARS keep), else its family, since a
/// Qwen2.5-VL model not otherwise named was taught Qwen2.5-VL's own tool calls.
fn format_from_config(folder: &str) -> Option<(ActionFormat, String)> {
    let path = std::path::Path::new(folder).join("config.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    if let Some(name) = config.get("_name_or_path").and_then(|v| v.as_str())
        && let Some(format) = ActionFormat::named_by(name)
    {
        return Some((format, format!("its config.json names it {name}")));
    }
    match clawdesk_model::Family::from_model_type(config.get("model_type")?.as_str()?)? {
        clawdesk_model::Family::Qwen25Vl => Some((
            ActionFormat::Qwen25Vl,
            "its config.json says Qwen2.5-VL".into(),
        )),
        clawdesk_model::Family::Qwen3Vl => None,
    }
}

fn settings_of(a: &RunArgs) -> AgentSettings {
    let mut settings = AgentSettings::new(a.instruction.clone());
    settings.app = a.app.clone();
    settings.format = format_of(a);
    settings.max_steps = a.max_steps;
    settings.window = a.window;
    settings.sampling.temperature = a.temperature;
    settings.sampling.max_tokens = a.max_tokens;
    settings.sampling.seed = a.seed;
    settings
}

fn report_step(report: &StepReport) {
    eprintln!(
        "step {}: {:?} in {:.1} s (generation {:.1} s, adapter {:?})",
        report.index + 1,
        report.outcome,
        report.step_seconds,
        report.generate_seconds,
        report.version
    );
}

async fn live(a: LiveArgs) -> anyhow::Result<()> {
    a.run.desktop.require_allowlist()?;
    if a.run.adapter.is_some() {
        anyhow::bail!("agent live trains its own adapter from the base model; drop --adapter");
    }
    let Some(model) = a.run.model.clone() else {
        anyhow::bail!("agent live trains a local model: give --model, not --remote");
    };
    let data = data_dir(&a.run.data_dir)?;
    let store = std::sync::Arc::new(Store::open(&data)?);
    let dirs = clawdesk_prompts::search_path(a.run.prompts.as_deref(), Some(&data));
    let prompts = AgentPrompts::load(&dirs)?;
    let hints = clawdesk_trainer::teacher::HintTemplate::load(&dirs)?;
    let base = tokio::task::block_in_place(|| super::load::model(&model, None, &a.run.on))?;
    let judge = a
        .judge
        .build(&dirs, &a.run.on, Some((&model, &base)))
        .await?;
    let desktop = a.run.desktop.connect_to_act().await?;
    let settings = LiveSettings {
        episodes: a.episodes,
        publish_every: a.publish_every,
        keep_adapters: a.keep_adapters,
        policy_threads: a.policy_threads,
        trainer_threads: a.trainer_threads,
        gym_tasks: a.gym_tasks,
        serve: a.serve.map(|bind| clawdesk_server::ServerConfig {
            bind,
            token: super::serve::api_token(&a.token),
            ..clawdesk_server::ServerConfig::default()
        }),
        ..LiveSettings::new(
            settings_of(&a.run),
            model,
            a.learn.lora(),
            a.learn.choices(Some(a.max_staleness)).train_loop("main"),
            &data,
        )
    };
    let report = run_live(
        &desktop,
        store,
        base,
        Some(judge),
        &prompts,
        hints,
        &settings,
        &StopOnLoop,
    )
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn run_one(a: RunArgs) -> anyhow::Result<()> {
    a.desktop.require_allowlist()?;
    let data = data_dir(&a.data_dir)?;
    let store = Store::open(&data)?;
    let dirs = clawdesk_prompts::search_path(a.prompts.as_deref(), Some(&data));
    let prompts = AgentPrompts::load(&dirs)?;
    let policy = match (&a.remote, &a.model) {
        (Some(url), _) => {
            let mut config = RemoteConfig::new(url.clone(), a.remote_model.clone());
            if let Some(var) = &a.remote_key_env {
                config.api_key =
                    Some(std::env::var(var).with_context(|| format!("${var} is not set"))?);
            }
            Policy::remote(config)?
        }
        (None, Some(model)) => Policy::spawn(tokio::task::block_in_place(|| {
            super::load::model(model, None, &a.on)
        })?),
        (None, None) => anyhow::bail!("give --model or --remote"),
    };
    super::load::activate_adapter(&policy, &store, a.adapter.as_ref(), a.adapter_version).await?;
    let desktop = a.desktop.connect_to_act().await?;
    let settings = settings_of(&a);
    let summary = run_agent(
        &desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        report_step,
    )
    .await?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_model_folder_s_config_says_its_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |config: serde_json::Value| {
            std::fs::write(dir.path().join("config.json"), config.to_string()).expect("write");
        };
        let folder = dir.path().to_str().expect("utf8");
        write(serde_json::json!({"model_type": "qwen2_5_vl"}));
        assert_eq!(
            format_from_config(folder).map(|f| f.0),
            Some(ActionFormat::Qwen25Vl)
        );
        write(serde_json::json!({"model_type": "qwen2_5_vl",
            "_name_or_path": "ByteDance-Seed/UI-TARS-1.5-7B"}));
        assert_eq!(
            format_from_config(folder).map(|f| f.0),
            Some(ActionFormat::UiTarsPixels)
        );
        write(serde_json::json!({"model_type": "qwen3_vl"}));
        assert_eq!(format_from_config(folder), None);
        assert_eq!(format_from_config("/nonexistent"), None);
    }
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn format(args: &[&str]) -> ActionFormat {
        let mut argv = vec!["x", "--instruction", "do it"];
        argv.extend_from_slice(args);
        format_of(&Cli::parse_from(argv).run)
    }

    #[test]
    fn the_format_is_the_one_asked_for_else_the_one_the_model_names() {
        assert_eq!(
            format(&["--model", "ByteDance-Seed/UI-TARS-1.5-7B"]),
            ActionFormat::UiTarsPixels
        );
        assert_eq!(
            format(&[
                "--model",
                "ByteDance-Seed/UI-TARS-1.5-7B",
                "--format",
                "pyautogui"
            ]),
            ActionFormat::PyAutoGui
        );
        assert_eq!(
            format(&[
                "--remote",
                "http://127.0.0.1:8000/v1",
                "--remote-model",
                "Qwen/Qwen2.5-VL-7B-Instruct"
            ]),
            ActionFormat::Qwen25Vl
        );
        assert_eq!(format(&["--model", "/models/mine"]), ActionFormat::Qwen3Vl);
    }
}
