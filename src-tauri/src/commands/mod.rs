//! Tauri commands, one file per area of the window.

pub mod app;
pub mod episodes;
