//! ClawDesk's headless loops: what ties the desktop, the policy, the judge, the trainer and the
//! store together, with no window and no command line.
//!
//! - [`episode`]: the agent's collect loop: observe, ask the policy, act through the guard,
//!   observe again, and commit the step with its policy turn.
//! - [`live`]: the episode loop, the judge loop and the training loop at once, publishing each
//!   new adapter version (and optionally serving the policy over HTTP).
//! - [`record`] and [`script`]: a scripted list of actions run as a recorded episode.
//! - [`persist`]: saving an observation's screenshot and tree into the store.
//! - [`practice_window`]: a gym task opened in the `clawdesk-practice` window, and the rule that
//!   reads its verdict from the accessibility tree; [`gym_score`] scores a model on the gym.
//! - [`rules`]: rule judges over the accessibility tree.
//! - [`adapters`] and [`export`]: adapters and trajectories written for other tools.
//! - [`paths`]: where the runtime keeps its own files (the practice base's cache).
//!
//! It must not depend on a window toolkit, on clap, or on the `clawdesk` binary crate; the
//! window's back end (`clawdesk-desk`) and the command line call into it, never the reverse.

#![warn(missing_docs)]

pub mod adapters;
pub mod episode;
mod error;
pub mod export;
pub mod gym_score;
pub mod live;
pub mod paths;
pub mod persist;
pub mod practice_window;
pub mod record;
pub mod rules;
pub mod script;
mod size;

pub use error::RuntimeError;
pub use size::parse_size;
