use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clawdesk_desktop::{
    CaptureBackend, CaptureTarget, Desktop, KeepTrees, ObserveOptions, WalkLimits,
};

use super::DesktopArgs;

#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    desktop: DesktopArgs,
    /// Folder to write screenshot.png, surface.json, tree.json and tree.txt into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Read this app's tree instead of the focused app's.
    #[arg(long)]
    app: Option<String>,
    /// Capture the active window instead of the whole screen.
    #[arg(long)]
    window: bool,
    /// Capture with xcap on $DISPLAY (the portable backend; a build with the `xcap` feature)
    /// instead of X11 GetImage.
    #[arg(long)]
    xcap: bool,
    /// Most nodes to read from the tree.
    #[arg(long, default_value_t = 5000)]
    max_nodes: usize,
}

pub async fn run(args: ObserveArgs) -> anyhow::Result<()> {
    let mut config = args.desktop.config()?;
    config.stop_key = None;
    let desktop = Desktop::connect(config).await?;
    let options = ObserveOptions {
        target: if args.window {
            CaptureTarget::ActiveWindow
        } else {
            CaptureTarget::Screen
        },
        app: args.app.clone(),
        skip_tree: false,
        limits: WalkLimits {
            max_nodes: args.max_nodes,
            ..WalkLimits::default()
        },
        // One observation: nothing to keep it for.
        keep: KeepTrees::never(),
    };
    let mut observation = desktop.observe(&options).await?;
    if args.xcap {
        observation.screenshot = CaptureBackend::Xcap.capture(&options.target)?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let png = clawdesk_desktop::observe::encode_png(&observation.screenshot.image)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("screenshot.png", &png)?;
    write(
        "surface.json",
        serde_json::to_string_pretty(&observation.screenshot.surface)?.as_bytes(),
    )?;
    match &observation.tree {
        Some(tree) => {
            write("tree.json", serde_json::to_string(tree)?.as_bytes())?;
            write("tree.txt", tree.linearise().as_bytes())?;
        }
        None => tracing::warn!("no app has focus; saved the screenshot only"),
    }
    let s = &observation.screenshot;
    println!(
        "{}x{} screenshot, {} tree nodes{} -> {} (capture {:.1} ms, tree {:.1} ms)",
        s.image.width(),
        s.image.height(),
        observation.tree.as_ref().map_or(0, |t| t.len()),
        observation
            .tree
            .as_ref()
            .map(|t| format!(" of {}", t.app.name))
            .unwrap_or_default(),
        args.out.display(),
        observation.timings.capture_ms,
        observation.timings.tree_ms,
    );
    Ok(())
}
