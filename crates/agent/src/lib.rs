//! The GUI agent's side of ClawDesk that does not need a window: the action formats of the
//! models it runs (Qwen3-VL and Qwen2.5-VL computer use, UI-TARS, OSWorld's pyautogui and
//! computer_13), each parsed into and emitted from the one internal action form the desktop
//! layer executes and the store keeps.

pub mod error;
pub mod format;

pub use error::FormatError;
pub use format::{ActionFormat, AgentAction, Frame, Reply};
