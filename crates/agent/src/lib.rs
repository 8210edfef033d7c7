//! The GUI agent's side of ClawDesk that does not need a window: the action formats of the
//! models it runs (Qwen3-VL and Qwen2.5-VL computer use, UI-TARS, OSWorld's pyautogui and
//! computer_13), each parsed into and emitted from the one internal action form the desktop
//! layer executes; the agent's prompt; and the policy, which owns the model on its own thread
//! and swaps adapters between generations.

#![warn(missing_docs)]

pub mod error;
pub mod format;
pub mod generation;
pub mod policy;
pub mod prompt;
pub mod remote;
pub mod turn;

pub use error::{AgentError, FormatError};
pub use format::{ActionFormat, AgentAction, Frame, Reply};
pub use generation::{Generated, PolicyRequest};
pub use policy::Policy;
pub use prompt::{
    AgentPrompts, PastStep, conversation, is_listed_control, practice_conversation,
    practice_elements,
};
pub use remote::{RemoteConfig, RemotePolicy};
pub use turn::PolicyTurn;
