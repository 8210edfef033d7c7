//! The desktop window's back end, as library code that runs and is tested without a window:
//! its [`settings`], a live [`session`] a person can pause, stop and approve step by step, and
//! the [`review`] of each step on the timeline.
//!
//! The Tauri crate (`src-tauri`) is a thin shell over this one: it turns commands into calls
//! here and [`session::DeskEvent`]s into window events. This crate must not depend on Tauri,
//! on any window toolkit, or on the `clawdesk` binary crate; the headless loops it runs live in
//! `clawdesk-runtime`.

#![warn(missing_docs)]

mod error;
pub mod review;
pub mod session;
pub mod settings;

pub use error::DeskError;
