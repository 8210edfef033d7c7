//! Tauri commands, one file per area of the window.
//!
//! None runs on the UI thread: async ones on the runtime, and the plain ones are declared
//! `#[tauri::command(async)]`, since Tauri runs a plain command on the main thread and a store
//! query there would freeze the window.

pub mod adapters;
pub mod app;
pub mod episodes;
pub mod live;
pub mod settings;
pub mod timeline;
pub mod training;
