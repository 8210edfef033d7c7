//! `clawdesk adapters`: the adapter versions the trainer published, and exporting one as a PEFT
//! folder for HF PEFT and vLLM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use clawdesk_store::Store;

use super::data_dir;

#[derive(Debug, Args)]
pub struct AdaptersArgs {
    #[command(subcommand)]
    command: AdaptersCommand,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR or the XDG data dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AdaptersCommand {
    /// Every published version with its base model, folder and training figures.
    List,
    /// Copy version N's PEFT folder to a folder of your choice (refused if it is not empty).
    Export {
        version: i64,
        #[arg(long)]
        to: PathBuf,
    },
}

pub fn run(args: AdaptersArgs) -> anyhow::Result<()> {
    let store = Store::open(data_dir(&args.data_dir)?)?;
    match args.command {
        AdaptersCommand::List => {
            for a in store.adapters()? {
                let loss = a
                    .metrics
                    .as_ref()
                    .and_then(|m| m.get("loss"))
                    .and_then(|l| l.as_f64())
                    .map_or("-".to_owned(), |l| format!("{l:.4}"));
                println!("v{}\t{}\tloss {loss}\t{}", a.version, a.base_model, a.path);
            }
            Ok(())
        }
        AdaptersCommand::Export { version, to } => {
            let adapter = store
                .adapters()?
                .into_iter()
                .find(|a| a.version == version)
                .with_context(|| format!("no adapter version {version} in the store"))?;
            let from = Path::new(&adapter.path);
            // Refuse a folder that does not hold a readable PEFT adapter before copying it.
            clawdesk_model::peft::read_adapter_config(from)
                .with_context(|| format!("version {version}'s folder {}", from.display()))?;
            if to.exists() && to.read_dir()?.next().is_some() {
                anyhow::bail!(
                    "{} is not empty; choose an empty or new folder",
                    to.display()
                );
            }
            std::fs::create_dir_all(&to)?;
            for entry in std::fs::read_dir(from)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    std::fs::copy(entry.path(), to.join(entry.file_name()))
                        .with_context(|| format!("copying {}", entry.path().display()))?;
                }
            }
            let dir = to.display();
            println!("exported v{version} to {dir}");
            println!(
                "HF PEFT: PeftModel.from_pretrained(Qwen3VLForConditionalGeneration.from_pretrained(\"{}\"), \"{dir}\")",
                adapter.base_model
            );
            println!(
                "vLLM:    vllm serve {} --enable-lora --lora-modules clawdesk-v{version}={dir}",
                adapter.base_model
            );
            Ok(())
        }
    }
}
