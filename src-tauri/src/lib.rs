//! The ClawDesk desktop window: a thin Tauri shell over the headless crates.
//!
//! What it is for: opening the store, registering the commands in [`commands`] and handing
//! the window to `ui/`. What it is not for: logic. Every command is a few lines that call a
//! library crate and convert its answer to the wire types in [`wire`].

pub mod commands;
pub mod protocol;
pub mod state;
pub mod wire;

use std::sync::Arc;

use anyhow::Context;
use tauri::{Builder, Runtime};

pub use state::AppState;

/// Builds the app on any runtime, so tests can use `tauri::test::mock_builder()`.
pub fn build_app<R: Runtime>(builder: Builder<R>, state: AppState) -> Builder<R> {
    builder
        .manage(state)
        .register_asynchronous_uri_scheme_protocol("clawdesk", protocol::handle)
        .invoke_handler(tauri::generate_handler![
            commands::app::app_info,
            commands::episodes::list_episodes,
            commands::episodes::episode_steps,
            commands::episodes::export_episodes,
            commands::timeline::timeline,
            commands::timeline::step_detail,
            commands::timeline::set_verdict,
            commands::timeline::agreement,
            commands::timeline::reward_trend,
            commands::training::train_series,
            commands::adapters::list_adapters,
            commands::adapters::activate_adapter,
            commands::adapters::export_adapter_to,
            commands::settings::get_settings,
            commands::settings::save_settings,
            commands::live::agent_start,
            commands::live::agent_pause,
            commands::live::agent_resume,
            commands::live::agent_stop,
            commands::live::agent_mode,
            commands::live::agent_answer,
        ])
}

/// Opens the store in the configured data directory and runs the window until it closes.
pub fn run() -> anyhow::Result<()> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    // A launcher (a desktop menu, a WebDriver) may swallow stderr: CLAWDESK_LOG_FILE keeps
    // the log where a bug report can find it.
    match std::env::var_os("CLAWDESK_LOG_FILE") {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => tracing_subscriber::fmt().with_env_filter(filter()).init(),
    }
    check_display()?;
    let config = clawdesk_desk::settings::config_dir()?;
    let data_dir = data_folder(&config)?;
    tracing::info!(settings = %config.display(), data = %data_dir.display(), "folders");
    let store = clawdesk_store::Store::open(&data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    let state = AppState::new(Arc::new(store), config);
    build_app(tauri::Builder::default(), state)
        .run(tauri::generate_context!())
        .context("running the ClawDesk window")?;
    Ok(())
}

/// The data folder the settings choose. Settings an older version kept in the data folder are
/// adopted first; a settings file that cannot be read leaves the default folder in use (the
/// Settings page then names the problem) rather than keeping the window from starting.
fn data_folder(config: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use clawdesk_desk::settings::DeskSettings;
    let legacy = clawdesk_store::default_data_dir().context("choosing the data directory")?;
    match DeskSettings::load_or_adopt(config, &legacy) {
        Ok(settings) => Ok(settings.data_folder()?),
        Err(e) => {
            tracing::warn!(error = %e, "settings unreadable; using the default data folder");
            Ok(legacy)
        }
    }
}

/// GTK panics deep inside the windowing crates when it has no display; say so plainly first.
#[cfg(target_os = "linux")]
fn check_display() -> anyhow::Result<()> {
    let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    match std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()) {
        Some(display) => {
            if !wayland {
                clawdesk_desktop::x11::screen_size(&display).with_context(|| {
                    format!("the ClawDesk window needs the X display {display}")
                })?;
            }
            Ok(())
        }
        None if wayland => Ok(()),
        None => anyhow::bail!(
            "no display to open the ClawDesk window on: set DISPLAY (for example to a display \
             started with `clawdesk sandbox --visible`), or use the headless `clawdesk` command"
        ),
    }
}

#[cfg(not(target_os = "linux"))]
fn check_display() -> anyhow::Result<()> {
    Ok(())
}
