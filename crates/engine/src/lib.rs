//! The headless ClawDesk engine: what ties the desktop, the store and (later) the model
//! together, usable from the `clawdesk` command line, the desktop app and tests alike.
//!
//! What it is for: running the model as an agent on the desktop ([`agent`]), running a script
//! of actions as a recorded episode ([`record`]), saving
//! observations into the store ([`persist`]), and measuring the observe path ([`bench`]).
//! What it is not for: drawing anything; the Tauri shell and the CLI are thin callers.

pub mod agent;
pub mod bench;
pub mod desk;
mod error;
pub mod export;
pub mod gym_score;
pub mod live;
pub mod persist;
pub mod practice;
pub mod record;
pub mod rules;
pub mod script;
mod size;

pub use size::parse_size;

pub use error::EngineError;
