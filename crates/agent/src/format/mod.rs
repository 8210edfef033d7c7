//! The action formats of the models the agent runs. Each format parses a model's reply into
//! [`Reply`] (its thought and its actions in the internal form) and emits a [`Reply`] back as
//! the text that model would write — for a person's correction stored as a training target,
//! and for the round-trip tests that hold every parser to its emitter.
//!
//! Coordinates: the internal form is a [`NormPoint`] in [0,1]² of the observed surface; each
//! format has its own scale ([`Frame`] gives the pixel sizes the pixel formats need).

mod computer13;
mod coords;
mod keys;
mod opencua;
mod practice;
mod pyautogui;
mod pycall;
mod qwen;
mod ui_tars;

use clawdesk_desktop::Action;
use clawdesk_desktop::geometry::NormPoint;
use serde::{Deserialize, Serialize};

use crate::FormatError;

/// What a model asks for in one step, beyond the desktop actions themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentAction {
    /// Something done to the desktop.
    Desktop {
        /// The desktop action, in the internal form the desktop layer executes.
        action: Action,
    },
    /// The model says the task is over, done or given up.
    Terminate {
        /// `true` when the model says the task is done, `false` when it gives up.
        success: bool,
    },
    /// The model answers the instruction in words (Qwen3-VL `answer`, UI-TARS `finished`).
    Answer {
        /// The answer as the model wrote it.
        text: String,
    },
    /// The model hands control to the person (UI-TARS `call_user`).
    CallUser,
}

impl From<Action> for AgentAction {
    fn from(action: Action) -> Self {
        AgentAction::Desktop { action }
    }
}

/// A parsed reply: the model's thought (the text around its actions) and the actions in order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reply {
    /// The text around the actions, trimmed; `None` when there is none.
    pub thought: Option<String>,
    /// The actions, in the order the model wrote them; a parsed reply has at least one.
    pub actions: Vec<AgentAction>,
}

/// The sizes a format's coordinates refer to, and where the pointer is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// The screenshot as the model saw it, after its processor resized it (Qwen2.5-VL and
    /// UI-TARS address these pixels).
    pub image: (u32, u32),
    /// The screen in the pixels pyautogui and computer_13 address.
    pub screen: (u32, u32),
    /// Where the pointer is before the reply, for drags and clicks that start "here".
    pub pointer: Option<NormPoint>,
}

/// A model family's way of writing actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionFormat {
    /// Qwen3-VL's `computer_use` tool call, coordinates on the 0-999 grid.
    Qwen3Vl,
    /// Qwen2.5-VL's `computer_use` tool call, coordinates in the resized image's pixels.
    Qwen25Vl,
    /// UI-TARS `click(start_box='(x,y)')`, coordinates on a 0-1000 grid (UI-TARS 1.0).
    UiTars1000,
    /// UI-TARS with coordinates in the resized image's pixels (UI-TARS 1.5).
    UiTarsPixels,
    /// OSWorld's pyautogui code, screen pixels, with WAIT/DONE/FAIL.
    PyAutoGui,
    /// OSWorld's computer_13 JSON actions, screen pixels.
    Computer13,
    /// OpenCUA's thought, action and pyautogui code, in the resized image's pixels.
    OpenCua,
    /// The practice gym's `click(x,y)` / `type("text")`, the one format the practice base
    /// (a tiny model warm-started on the gym) writes. Not a model family's: not in [`Self::ALL`].
    Practice,
}

impl ActionFormat {
    /// Every model family's format; [`Self::Practice`] is left out.
    pub const ALL: [ActionFormat; 7] = [
        ActionFormat::Qwen3Vl,
        ActionFormat::Qwen25Vl,
        ActionFormat::UiTars1000,
        ActionFormat::UiTarsPixels,
        ActionFormat::PyAutoGui,
        ActionFormat::Computer13,
        ActionFormat::OpenCua,
    ];

    /// The format a model's id or folder name says it writes, when it says: UI-TARS-1.5 (and
    /// 1.5's kin) the resized image's pixels, earlier UI-TARS the 0-1000 grid, OpenCUA its
    /// thought/action/code, Qwen2.5-VL its pixel tool calls, Qwen3-VL its 0-999 grid. `None` for a name that says none of these.
    pub fn named_by(model: &str) -> Option<ActionFormat> {
        // The last two path parts: a hub id's "org/name", or a folder's parent and name.
        let tail: Vec<&str> = model.trim_end_matches('/').rsplit('/').take(2).collect();
        let name: String = tail
            .iter()
            .rev()
            .flat_map(|p| p.chars())
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.contains("uitars15") || name.contains("uitars1p5") {
            Some(ActionFormat::UiTarsPixels)
        } else if name.contains("uitars") {
            Some(ActionFormat::UiTars1000)
        } else if name.contains("opencua") {
            Some(ActionFormat::OpenCua)
        } else if name.contains("qwen25vl") {
            Some(ActionFormat::Qwen25Vl)
        } else if name.contains("qwen3vl") {
            Some(ActionFormat::Qwen3Vl)
        } else {
            None
        }
    }

    /// The name used in settings and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ActionFormat::Qwen3Vl => "qwen3-vl",
            ActionFormat::Qwen25Vl => "qwen2.5-vl",
            ActionFormat::UiTars1000 => "ui-tars-1000",
            ActionFormat::UiTarsPixels => "ui-tars-pixels",
            ActionFormat::PyAutoGui => "pyautogui",
            ActionFormat::Computer13 => "computer-13",
            ActionFormat::OpenCua => "opencua",
            ActionFormat::Practice => "practice",
        }
    }

    /// Reads a model's reply. Anything that is not a well-formed action in this format is an
    /// error that says what was wrong; no input panics.
    pub fn parse(self, text: &str, frame: &Frame) -> Result<Reply, FormatError> {
        let name = self.name();
        let reply = match self {
            ActionFormat::Qwen3Vl => qwen::parse(name, text, coords::Scale::Grid(999), frame),
            ActionFormat::Qwen25Vl => qwen::parse(name, text, coords::Scale::image(frame), frame),
            ActionFormat::UiTars1000 => {
                ui_tars::parse(name, text, coords::Scale::Grid(1000), frame)
            }
            ActionFormat::UiTarsPixels => {
                ui_tars::parse(name, text, coords::Scale::image(frame), frame)
            }
            ActionFormat::PyAutoGui => pyautogui::parse(name, text, frame),
            ActionFormat::Computer13 => computer13::parse(name, text, frame),
            ActionFormat::OpenCua => opencua::parse(name, text, frame),
            ActionFormat::Practice => practice::parse(name, text),
        }?;
        for action in &reply.actions {
            if let AgentAction::Desktop { action } = action {
                action.validate().map_err(|e| FormatError::Malformed {
                    format: name,
                    detail: e.to_string(),
                })?;
            }
        }
        Ok(reply)
    }

    /// Writes a reply as this model would. Fails for actions the format has no words for.
    pub fn emit(self, reply: &Reply, frame: &Frame) -> Result<String, FormatError> {
        let name = self.name();
        match self {
            ActionFormat::Qwen3Vl => qwen::emit(name, reply, coords::Scale::Grid(999)),
            ActionFormat::Qwen25Vl => qwen::emit(name, reply, coords::Scale::image(frame)),
            ActionFormat::UiTars1000 => ui_tars::emit(name, reply, coords::Scale::Grid(1000)),
            ActionFormat::UiTarsPixels => ui_tars::emit(name, reply, coords::Scale::image(frame)),
            ActionFormat::PyAutoGui => pyautogui::emit(name, reply, frame),
            ActionFormat::Computer13 => computer13::emit(name, reply, frame),
            ActionFormat::OpenCua => opencua::emit(name, reply, frame),
            ActionFormat::Practice => practice::emit(name, reply),
        }
    }
}

impl std::fmt::Display for ActionFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ActionFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ActionFormat::ALL
            .into_iter()
            .chain([ActionFormat::Practice])
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ActionFormat::ALL
                    .iter()
                    .chain(&[ActionFormat::Practice])
                    .map(|f| f.name())
                    .collect();
                format!(
                    "unknown action format {s:?}: use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Tracks the pointer through a reply so that "drag from here" and "click here" resolve, and
/// fuses a move followed by a drag into one drag from the moved-to point.
pub(crate) struct Builder {
    format: &'static str,
    pointer: Option<NormPoint>,
    actions: Vec<AgentAction>,
}

impl Builder {
    pub(crate) fn new(format: &'static str, frame: &Frame) -> Self {
        Builder {
            format,
            pointer: frame.pointer,
            actions: Vec::new(),
        }
    }

    /// The pointer, or an error naming what needed it.
    pub(crate) fn here(&self, what: &str) -> Result<NormPoint, FormatError> {
        self.pointer.ok_or_else(|| FormatError::Malformed {
            format: self.format,
            detail: format!("{what} has no point and the pointer's position is unknown"),
        })
    }

    pub(crate) fn push(&mut self, action: AgentAction) {
        if let AgentAction::Desktop { action } = &action
            && let Some(end) = action.points().last()
        {
            self.pointer = Some(*end);
        }
        self.actions.push(action);
    }

    /// A drag to `to` from the pointer; a move just before it is folded in as the start.
    pub(crate) fn drag_to(
        &mut self,
        to: NormPoint,
        button: clawdesk_desktop::MouseButton,
    ) -> Result<(), FormatError> {
        let from = match self.actions.last() {
            Some(AgentAction::Desktop {
                action: Action::Move { at },
            }) => {
                let at = *at;
                self.actions.pop();
                at
            }
            _ => self.here("a drag")?,
        };
        self.push(Action::Drag { from, to, button }.into());
        Ok(())
    }

    pub(crate) fn finish(self, thought: Option<String>) -> Result<Reply, FormatError> {
        if self.actions.is_empty() {
            return Err(FormatError::NoAction {
                format: self.format,
            });
        }
        Ok(Reply {
            thought,
            actions: self.actions,
        })
    }
}

/// A reply written as the thought (if any) and then a fenced code block.
pub(crate) fn fenced(thought: Option<&str>, language: &str, body: &str) -> String {
    let mut out = String::new();
    if let Some(t) = thought {
        out.push_str(t);
        out.push('\n');
    }
    out.push_str("```");
    out.push_str(language);
    out.push('\n');
    out.push_str(body);
    out.push_str("\n```");
    out
}

/// A thought as kept: trimmed, `None` when empty.
pub(crate) fn thought(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub(crate) fn unsupported(format: &'static str, what: impl Into<String>) -> FormatError {
    FormatError::Unsupported {
        format,
        what: what.into(),
    }
}

pub(crate) fn malformed(format: &'static str, detail: impl Into<String>) -> FormatError {
    FormatError::Malformed {
        format,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::ActionFormat;

    #[test]
    fn a_models_name_says_which_format_it_writes() {
        let cases = [
            (
                "ByteDance-Seed/UI-TARS-1.5-7B",
                Some(ActionFormat::UiTarsPixels),
            ),
            ("/models/ui_tars_1.5_7b/", Some(ActionFormat::UiTarsPixels)),
            (
                "bytedance-research/UI-TARS-7B-DPO",
                Some(ActionFormat::UiTars1000),
            ),
            ("Qwen/Qwen2.5-VL-7B-Instruct", Some(ActionFormat::Qwen25Vl)),
            ("/data/qwen2_5_vl_3b", Some(ActionFormat::Qwen25Vl)),
            ("Qwen/Qwen3-VL-2B-Instruct", Some(ActionFormat::Qwen3Vl)),
            (
                "/home/me/checkpoints/qwen3-vl-sft/step-200",
                Some(ActionFormat::Qwen3Vl),
            ),
            ("xlangai/OpenCUA-7B", Some(ActionFormat::OpenCua)),
            ("/models/opencua_32b", Some(ActionFormat::OpenCua)),
            ("clawdesk", None),
        ];
        for (model, format) in cases {
            assert_eq!(ActionFormat::named_by(model), format, "{model}");
        }
    }
}
