//! `clawdesk adapters`: the adapter versions the trainer published; choosing the one to serve
//! (rollback), scoring one on the gym, and exporting one as a PEFT folder for HF PEFT and vLLM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use clawdesk_store::Store;

use super::data_dir;

#[derive(Debug, Args)]
pub struct AdaptersArgs {
    #[command(subcommand)]
    command: AdaptersCommand,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AdaptersCommand {
    /// Every published version with its base model, folder, training loss and gym score; the
    /// active one is starred.
    List,
    /// Serve version N from now on (`base`: no adapter). `clawdesk agent run` picks it up;
    /// earlier choices stay on record.
    Activate { version: String },
    /// Score version N on held-out gym tasks and record the score on its row.
    Score {
        version: i64,
        /// Held-out tasks to play.
        #[arg(long, default_value_t = 60)]
        tasks: usize,
        #[command(flatten)]
        on: super::load::DeviceArgs,
    },
    /// Copy version N's PEFT folder to a folder of your choice (refused if it is not empty).
    Export {
        version: i64,
        /// The folder to write the PEFT adapter into: a new or empty one (`--out`, as every
        /// command that writes files spells it; `--to` is kept as an alias).
        #[arg(long = "out", visible_alias = "to")]
        to: PathBuf,
    },
    /// Load version N on a running vLLM (or ClawDesk) server with dynamic LoRA loading
    /// (`/v1/load_lora_adapter`); the server must be able to read the adapter's folder.
    Push {
        version: i64,
        /// The server's API root, e.g. http://gpu-box:8000/v1.
        #[arg(long)]
        to: String,
        /// The name it is served under (default: clawdesk-vN).
        #[arg(long)]
        name: Option<String>,
        /// Read the server's API key from this environment variable.
        #[arg(long, value_name = "VAR")]
        api_key_env: Option<String>,
    },
}

pub async fn run(args: AdaptersArgs) -> anyhow::Result<()> {
    let store = Store::open(data_dir(&args.data_dir)?)?;
    match args.command {
        AdaptersCommand::List => {
            let active = store.active_adapter()?.map(|a| a.version);
            for a in store.adapters()? {
                let loss = a
                    .metrics
                    .as_ref()
                    .and_then(|m| m.get("loss"))
                    .and_then(|l| l.as_f64())
                    .map_or("-".to_owned(), |l| format!("{l:.4}"));
                let gym = a.gym_score.map_or("-".to_owned(), |g| format!("{g:.2}"));
                let mark = if active == Some(a.version) { "*" } else { " " };
                println!(
                    "{mark}v{}\t{}\tloss {loss}\tgym {gym}\t{}",
                    a.version, a.base_model, a.path
                );
            }
            Ok(())
        }
        AdaptersCommand::Activate { version } => {
            let chosen = match version.as_str() {
                "base" => None,
                v => Some(
                    v.trim_start_matches('v')
                        .parse::<i64>()
                        .with_context(|| format!("{v:?} is neither a version number nor base"))?,
                ),
            };
            store.activate_adapter(chosen)?;
            match chosen {
                Some(v) => println!("v{v} is active"),
                None => println!("the base model is active (no adapter)"),
            }
            Ok(())
        }
        AdaptersCommand::Score { version, tasks, on } => {
            let adapter = find(&store, version)?;
            let dir = PathBuf::from(&adapter.path);
            let score = tokio::task::block_in_place(|| {
                let loaded = super::load::model(&adapter.base_model, Some(&dir), &on)?;
                let shown =
                    super::progress::bar(tasks.max(1) as u64, "scoring on gym tasks", false);
                let score =
                    clawdesk_runtime::gym_score::gym_score_shown(&loaded, tasks, &mut |n| {
                        shown.set_position(n as u64)
                    })?;
                shown.finish_and_clear();
                anyhow::Ok(score)
            })?;
            store.set_adapter_gym_score(version, score)?;
            println!("v{version}: {score:.2} of {tasks} held-out gym tasks");
            Ok(())
        }
        AdaptersCommand::Export { version, to } => {
            find(&store, version)?;
            let done =
                clawdesk_runtime::adapters::export_adapter(&store, version, &to, &mut |_, _| {})?;
            println!(
                "exported v{version} to {} ({} files, {} bytes)",
                done.folder,
                done.files.len(),
                done.bytes
            );
            println!("HF PEFT:\n{}", done.peft_command);
            println!("vLLM:\n{}", done.vllm_command);
            Ok(())
        }
        AdaptersCommand::Push {
            version,
            to,
            name,
            api_key_env,
        } => {
            let adapter = find(&store, version)?;
            let dir = std::fs::canonicalize(&adapter.path)
                .with_context(|| format!("version {version}'s folder {}", adapter.path))?;
            clawdesk_model::peft::read_adapter_config(&dir)
                .with_context(|| format!("version {version}'s folder {}", dir.display()))?;
            let key = match api_key_env {
                Some(var) => {
                    Some(std::env::var(&var).with_context(|| format!("${var} is not set"))?)
                }
                None => None,
            };
            let name = name.unwrap_or_else(|| format!("clawdesk-v{version}"));
            clawdesk_agent::remote::push_adapter(
                &reqwest::Client::new(),
                &to,
                key.as_deref(),
                &name,
                &dir,
            )
            .await?;
            println!("v{version} is loaded on {to} as {name}");
            Ok(())
        }
    }
}

fn find(store: &Store, version: i64) -> anyhow::Result<clawdesk_store::Adapter> {
    clawdesk_runtime::adapters::find_adapter(store, version)
        .with_context(|| format!("no adapter version {version} in the store"))
}
