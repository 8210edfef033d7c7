use anyhow::Context;
use clap::Args;
use clawdesk_desktop::{Sandbox, SandboxOptions};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Screen size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x800", value_parser = clawdesk_runtime::parse_size)]
    size: (u32, u32),
    /// Show the sandbox in a window (Xephyr) instead of running it invisibly (Xvfb).
    #[arg(long)]
    visible: bool,
    /// Do not start a window manager.
    #[arg(long)]
    no_wm: bool,
    /// Apps to start, each as one shell-quoted command line, for example 'mousepad' or
    /// 'zenity --entry'.
    apps: Vec<String>,
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let options = SandboxOptions {
        width: args.size.0,
        height: args.size.1,
        visible: args.visible,
        window_manager: !args.no_wm,
        ..SandboxOptions::default()
    };
    let mut sandbox = tokio::task::spawn_blocking(move || Sandbox::start(&options)).await??;
    for app in &args.apps {
        let words: Vec<&str> = app.split_whitespace().collect();
        let (program, rest) = words.split_first().context("an empty app command")?;
        sandbox.launch(program, rest)?;
    }
    println!("export DISPLAY={}", sandbox.display());
    println!(
        "export DBUS_SESSION_BUS_ADDRESS='{}'",
        sandbox.dbus_address()
    );
    eprintln!("sandbox running; press Ctrl-C to stop it");
    // Stop cleanly on Ctrl-C, kill's SIGTERM or a closed terminal's SIGHUP alike, so no
    // X server or bus outlives the command.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    sandbox.stop();
    Ok(())
}
