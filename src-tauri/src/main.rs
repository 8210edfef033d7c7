// Keeps a release build on Windows from opening a console beside the window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> anyhow::Result<()> {
    clawdesk_app::run()
}
