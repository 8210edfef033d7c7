use anyhow::Context;
use clap::Args;
use clawdesk_desktop::{Action, ObserveOptions};

use super::DesktopArgs;

#[derive(Debug, Args)]
pub struct ActArgs {
    #[command(flatten)]
    desktop: DesktopArgs,
    /// The action as JSON, for example '{"kind":"click","at":{"x":0.5,"y":0.5}}' or
    /// '{"kind":"type","text":"hello"}'. Coordinates are normalised on the screen.
    action: String,
}

pub async fn run(args: ActArgs) -> anyhow::Result<()> {
    let action: Action = serde_json::from_str(&args.action).context("reading the action JSON")?;
    let desktop = args.desktop.connect_to_act().await?;
    let observation = desktop.observe(&ObserveOptions::default()).await?;
    desktop.act(&action, &observation).await?;
    println!("done: {}", action.describe());
    Ok(())
}
