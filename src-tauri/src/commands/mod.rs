//! Tauri commands, one file per area of the window.

pub mod adapters;
pub mod app;
pub mod episodes;
pub mod live;
pub mod settings;
pub mod timeline;
pub mod training;
