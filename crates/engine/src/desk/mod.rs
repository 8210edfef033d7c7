//! What the desktop app drives, as library code that runs and is tested without a window:
//! its settings, a live session a person can pause, stop and approve step by step, and the
//! export of adapters.

pub mod adapters;
pub mod review;
pub mod session;
pub mod settings;
