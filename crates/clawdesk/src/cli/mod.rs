//! The subcommands, one file each.

mod act;
mod adapters;
mod agent;
mod approve;
mod bench;
mod export;
mod gym;
pub(crate) use gym::RecipeArg;
mod judge;
pub(crate) mod learn;
pub(crate) mod load;
mod model;
mod observe;
mod parse;
pub(crate) mod progress;
mod record;
mod sandbox;
mod serve;
mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clawdesk_desktop::{Allowlist, DesktopConfig, GuardConfig, StopKeyName};

/// ClawDesk: observe, act on and record real desktop apps, headless.
#[derive(Debug, Parser)]
#[command(name = "clawdesk", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Save a screenshot, its geometry and the focused (or a named) app's accessibility tree.
    Observe(observe::ObserveArgs),
    /// Run one action on the desktop, through the guard.
    Act(act::ActArgs),
    /// Start a private desktop (Xvfb or Xephyr, window manager, D-Bus, AT-SPI) with apps.
    Sandbox(sandbox::SandboxArgs),
    /// Run a scripted list of actions, recording each as a step.
    Record(record::RecordArgs),
    /// The model as a GUI agent: episodes on the desktop, every step recorded.
    Agent(agent::AgentArgs),
    /// Published adapter versions: list them, export one as a PEFT folder.
    Adapters(adapters::AdaptersArgs),
    /// Measure the observe path beside OSWorld's Python stack.
    Bench(bench::BenchArgs),
    /// The local Qwen3-VL: tiny models, logits, adapters, generation.
    Model(model::ModelArgs),
    /// The step judge: score recorded steps, record a person's verdict, check agreement.
    Judge(judge::JudgeArgs),
    /// The practice gym: the warm-started practice base, recorded practice, held-out success.
    Gym(gym::GymArgs),
    /// The trainer: learn from the store's judged steps.
    Train(train::TrainArgs),
    /// The policy behind an OpenAI-compatible API; sessions' main turns become training data.
    Serve(serve::ServeArgs),
    /// Recorded episodes as OSWorld trajectories or JSONL chat records for other trainers.
    Export(export::ExportArgs),
    /// Print a shell completion script for `clawdesk`, to source or to install in the shell's
    /// completion folder.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Observe(a) => observe::run(a).await,
        Command::Act(a) => act::run(a).await,
        Command::Sandbox(a) => sandbox::run(a).await,
        Command::Record(a) => record::run(a).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Adapters(a) => adapters::run(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Model(a) => tokio::task::block_in_place(|| model::run(a)),
        Command::Judge(a) => judge::run(a).await,
        Command::Gym(a) => tokio::task::block_in_place(|| gym::run(a)),
        Command::Train(a) => tokio::task::block_in_place(|| train::run(a)),
        Command::Serve(a) => serve::run(a).await,
        Command::Export(a) => tokio::task::block_in_place(|| export::run(a)),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "clawdesk", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Which desktop to work on and how to guard it; shared by the acting subcommands.
#[derive(Debug, Args, Clone)]
pub struct DesktopArgs {
    /// X display (default: $DISPLAY).
    #[arg(long)]
    display: Option<String>,
    /// D-Bus session bus address (default: $DBUS_SESSION_BUS_ADDRESS).
    #[arg(long)]
    bus: Option<String>,
    /// Only act in these apps; repeatable. Every name the focused app goes by (its AT-SPI
    /// name, its window's class and instance) must be allowed. Acting on a display needs this
    /// or --sandbox.
    #[arg(long = "allow", value_name = "APP")]
    allow: Vec<String>,
    /// The display is a private sandbox (from `clawdesk sandbox`) that holds only apps meant
    /// for the agent: act in any app but those on the deny-list (terminals, ClawDesk,
    /// password managers), without --allow.
    #[arg(long)]
    sandbox: bool,
    /// Let the agent type into this app although which of its elements has focus cannot be
    /// read (an app without an accessibility tree); repeatable.
    #[arg(long = "allow-unknown-focus", value_name = "APP")]
    allow_unknown_focus: Vec<String>,
    /// The guard refuses every action after this many on this desktop, across episodes.
    #[arg(long, default_value_t = 200)]
    max_actions: u32,
    /// The key that halts the agent: pause, scroll_lock or f12.
    #[arg(long, default_value = "pause")]
    stop_key: StopKeyName,
    /// Do not grab a stop key.
    #[arg(long)]
    no_stop_key: bool,
    /// Ask on the terminal before every action (y runs it; anything else rejects it).
    #[arg(long)]
    approve: bool,
}

impl DesktopArgs {
    /// Connects to act on the desktop: refused unless the person said which apps the agent
    /// may act in (--allow) or that the display is a sandbox (--sandbox).
    async fn connect_to_act(&self) -> anyhow::Result<clawdesk_desktop::Desktop> {
        self.require_allowlist()?;
        self.connect().await
    }

    /// The safe default: no acting on a display until the person said where (checked before
    /// any slow work, such as loading a model, starts).
    fn require_allowlist(&self) -> anyhow::Result<()> {
        if self.allow.is_empty() && !self.sandbox {
            anyhow::bail!(
                "refusing to act on display {} with no app allowlist: name the apps the agent \
                 may act in with --allow APP, or pass --sandbox if this display is a private \
                 sandbox (see `clawdesk sandbox`)",
                self.display
                    .clone()
                    .or_else(|| std::env::var("DISPLAY").ok())
                    .unwrap_or_else(|| "(none)".into())
            );
        }
        Ok(())
    }

    /// Connects to the desktop these flags name, with the approval hook when asked for.
    async fn connect(&self) -> anyhow::Result<clawdesk_desktop::Desktop> {
        let mut desktop = clawdesk_desktop::Desktop::connect(self.config()?).await?;
        if self.approve {
            desktop.set_approver(std::sync::Arc::new(approve::TerminalApprover));
        }
        Ok(desktop)
    }

    fn config(&self) -> anyhow::Result<DesktopConfig> {
        let mut config = match &self.display {
            Some(d) => DesktopConfig {
                display: d.clone(),
                session_bus: None,
                guard: GuardConfig::default(),
                stop_key: None,
                stop_key_also_on: Vec::new(),
            },
            None => DesktopConfig::from_env()?,
        };
        config.session_bus = self.bus.clone();
        config.guard = GuardConfig {
            allowlist: if self.allow.is_empty() {
                Allowlist::Any
            } else {
                Allowlist::Only(self.allow.clone())
            },
            max_steps: Some(self.max_actions),
            unknown_focus: self.allow_unknown_focus.clone(),
        };
        config.stop_key = (!self.no_stop_key).then_some(self.stop_key);
        Ok(config)
    }
}

/// The data directory: the flag, else $CLAWDESK_DATA_DIR, else the data folder chosen in the
/// window's settings, else the XDG data dir; so the command line and the window read one store.
fn data_dir(flag: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d.clone());
    }
    let settings = clawdesk_desk::settings::config_dir()
        .and_then(|config| clawdesk_desk::settings::DeskSettings::load(&config));
    match settings {
        Ok(settings) => Ok(settings.data_folder()?),
        Err(e) => {
            tracing::warn!(error = %e, "the window's settings are unreadable; using the default data folder");
            Ok(clawdesk_store::default_data_dir()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// Flags flattened from shared structs (the learning flags, the desktop's, the judge's)
    /// must not clash: clap only finds out when the subcommand is parsed.
    #[test]
    fn every_subcommand_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every flag and argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn missing(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    out.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                missing(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut out = Vec::new();
        missing(&Cli::command(), "clawdesk", &mut out);
        assert!(
            out.is_empty(),
            "{} without help:\n{}",
            out.len(),
            out.join("\n")
        );
    }

    #[test]
    fn agent_live_offers_the_learning_method_and_its_weights() {
        let cli = Cli::try_parse_from([
            "clawdesk",
            "agent",
            "live",
            "--instruction",
            "x",
            "--model",
            "m",
            "--sandbox",
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--method",
            "opd",
            "--w-rl",
            "0.5",
            "--w-opd",
            "2",
        ]);
        assert!(cli.is_ok(), "{:?}", cli.err());
    }
}
