//! Acting on the desktop: the action form and the input executor.

pub mod action;
mod executor;

pub use action::{Action, KeyCombo, MouseButton};
pub use executor::Executor;
