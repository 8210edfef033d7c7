//! Observing the desktop: screenshots with geometry, accessibility trees, and both together.

pub mod atspi;
pub mod capture;
mod events;
mod facts;
pub mod kept;
pub mod tree;

pub use atspi::{Accessibility, WalkLimits};
pub use capture::{CaptureBackend, CaptureTarget, Screenshot, encode_png};
pub use kept::{KeepTrees, TreeRead, WalkReason};
pub use tree::{AccessTree, AppRef, Element, Truncation};
