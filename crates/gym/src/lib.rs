//! A synthetic GUI gym: small seeded tasks (click a coloured target among distractors, type into
//! a field, a two-step menu) drawn as screenshots with accesskit trees, judged by rule verifiers
//! that also write the hindsight hint a judge would. It trains and measures policies without a
//! desktop (`bench learn`), gives the tiny base its warm start, and is a regression suite for
//! adapters: the held-out split never shares a layout with the train split. [`status`] is what
//! the practice window (`clawdesk-practice`) and the runtime's rule agree on: the window's status
//! line.
//!
//! It must not depend on the model (candle) or the trainer: the GTK practice window links it.

#![warn(missing_docs)]

pub mod action;
pub mod error;
pub mod prompt;
pub mod screen;
pub mod split;
pub mod status;
pub mod task;

pub use action::GymAction;
pub use error::{GymError, Result};
pub use prompt::GymPrompts;
pub use screen::{Cell, Colour, Screen, Widget, WidgetRole};
pub use split::{Split, sample_task};
pub use task::{StepOutcome, Task, TaskKind};
