//! The internal form of an action: what to do, where on the observed surface, in normalised
//! coordinates. Parsers for the models' own formats convert into this; the executor runs it.

use serde::{Deserialize, Serialize};

use crate::DesktopError;
use crate::geometry::NormPoint;

/// A mouse button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MouseButton {
    /// The left (primary) button; the default.
    #[default]
    Left,
    /// The right button, which usually opens a context menu.
    Right,
    /// The middle button (pressing the wheel).
    Middle,
}

/// One thing the agent does to the desktop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Move the pointer without pressing anything.
    Move {
        /// Where to move the pointer, normalised to the observed surface.
        at: NormPoint,
    },
    /// Press and release a button `count` times (2 = double click, 3 = triple click).
    Click {
        /// Where to click, normalised to the observed surface.
        at: NormPoint,
        /// Which button to press; left when not given.
        #[serde(default)]
        button: MouseButton,
        /// How many clicks in a row, 1 to 3; 1 when not given.
        #[serde(default = "one")]
        count: u8,
    },
    /// Press at `from`, move to `to` in small steps, release.
    Drag {
        /// Where to press the button, normalised to the observed surface.
        from: NormPoint,
        /// Where to release it, normalised to the observed surface.
        to: NormPoint,
        /// Which button to hold down; left when not given.
        #[serde(default)]
        button: MouseButton,
    },
    /// Scroll by wheel notches: `dy` > 0 down, `dx` > 0 right; over `at` when given.
    Scroll {
        /// Where to put the pointer first; `None` scrolls wherever the pointer is.
        #[serde(default)]
        at: Option<NormPoint>,
        /// Horizontal wheel notches: positive scrolls right, negative left (at most 100 either way).
        #[serde(default)]
        dx: i32,
        /// Vertical wheel notches: positive scrolls down, negative up (at most 100 either way).
        #[serde(default)]
        dy: i32,
    },
    /// Type Unicode text into whatever has keyboard focus. With `paste`, the text goes through
    /// the clipboard and ctrl+v instead (fast for long texts); typing falls back to pasting for
    /// any character the keyboard cannot produce.
    Type {
        /// The text to enter; when typed, `\n` presses Return and `\t` presses Tab.
        text: String,
        /// Put the text on the clipboard and press ctrl+v instead of typing it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        paste: bool,
    },
    /// Press a key combination such as `ctrl+shift+t`, `Return` or `alt+F4`.
    Key {
        /// Key names joined by `+`, modifiers first, as [`KeyCombo::parse`] reads them.
        combo: String,
    },
    /// Do nothing for a while (let an app catch up).
    Wait {
        /// How long to wait, in milliseconds (at most 60 000).
        ms: u64,
    },
}

fn one() -> u8 {
    1
}

impl Action {
    /// The points the action touches, for the guard's checks.
    pub fn points(&self) -> Vec<NormPoint> {
        match self {
            Action::Move { at } | Action::Click { at, .. } => vec![*at],
            Action::Drag { from, to, .. } => vec![*from, *to],
            Action::Scroll { at, .. } => at.iter().copied().collect(),
            Action::Type { .. } | Action::Key { .. } | Action::Wait { .. } => Vec::new(),
        }
    }

    /// Whether the action sends keystrokes (and so must not go into a password field).
    pub fn types_text(&self) -> bool {
        matches!(self, Action::Type { .. } | Action::Key { .. })
    }

    /// Whether the action goes to the window under the pointer (X11 sends pointer events
    /// there, whatever has keyboard focus).
    pub fn is_pointer(&self) -> bool {
        matches!(
            self,
            Action::Move { .. }
                | Action::Click { .. }
                | Action::Drag { .. }
                | Action::Scroll { .. }
        )
    }

    /// The action in the pieces the guard checks one by one: typed text is cut before and
    /// after each character that moves focus (Tab, Return), so that what follows one is
    /// checked against the element that then has focus. Every other action is one piece.
    pub fn segments(&self) -> Vec<Action> {
        let Action::Type { text, paste: false } = self else {
            return vec![self.clone()];
        };
        let mut pieces = Vec::new();
        let mut current = String::new();
        for c in text.chars() {
            if matches!(c, '\t' | '\n' | '\r') {
                if !current.is_empty() {
                    pieces.push(std::mem::take(&mut current));
                }
                pieces.push(c.to_string());
            } else {
                current.push(c);
            }
        }
        if !current.is_empty() || pieces.is_empty() {
            pieces.push(current);
        }
        pieces
            .into_iter()
            .map(|text| Action::Type { text, paste: false })
            .collect()
    }

    /// Checks the fields that serde cannot: counts, combos, durations.
    pub fn validate(&self) -> Result<(), DesktopError> {
        match self {
            Action::Click { count, .. } if !(1..=3).contains(count) => Err(
                DesktopError::InvalidAction(format!("a click's count is 1, 2 or 3, not {count}")),
            ),
            Action::Key { combo } => KeyCombo::parse(combo).map(|_| ()),
            Action::Wait { ms } if *ms > 60_000 => Err(DesktopError::InvalidAction(format!(
                "a wait of {ms} ms is longer than the 60 s allowed"
            ))),
            Action::Scroll { dx, dy, .. } if dx.abs() > 100 || dy.abs() > 100 => {
                Err(DesktopError::InvalidAction(format!(
                    "scroll of ({dx}, {dy}) notches is more than 100"
                )))
            }
            _ => Ok(()),
        }
    }

    /// A short human description for logs and approval prompts.
    pub fn describe(&self) -> String {
        let p = |p: &NormPoint| format!("({:.3}, {:.3})", p.x, p.y);
        match self {
            Action::Move { at } => format!("move to {}", p(at)),
            Action::Click { at, button, count } => {
                let times = match count {
                    1 => "",
                    2 => "double ",
                    _ => "triple ",
                };
                format!("{times}{button:?} click at {}", p(at)).to_lowercase()
            }
            Action::Drag { from, to, .. } => format!("drag from {} to {}", p(from), p(to)),
            Action::Scroll { dx, dy, .. } => format!("scroll by ({dx}, {dy})"),
            Action::Type { text, paste: false } => format!("type {text:?}"),
            Action::Type { text, paste: true } => format!("paste {text:?}"),
            Action::Key { combo } => format!("press {combo}"),
            Action::Wait { ms } => format!("wait {ms} ms"),
        }
    }
}

/// A named key, independent of the input backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedKey {
    /// The Control modifier (`ctrl`, `control`, `ctl`).
    Control,
    /// The Shift modifier (`shift`).
    Shift,
    /// The Alt modifier (`alt`, `option`).
    Alt,
    /// The Super (Windows, Command) modifier, sent as Meta (`super`, `meta`, `win`, `cmd`, `command`).
    Super,
    /// Return, also called Enter (`return`, `enter`).
    Return,
    /// Tab, which usually moves focus to the next element (`tab`).
    Tab,
    /// Escape (`escape`, `esc`).
    Escape,
    /// Backspace, which deletes before the cursor (`backspace`).
    Backspace,
    /// Delete, which deletes after the cursor (`delete`, `del`).
    Delete,
    /// Insert (`insert`, `ins`).
    Insert,
    /// The space bar (`space`).
    Space,
    /// The up arrow (`up`, `arrowup`).
    Up,
    /// The down arrow (`down`, `arrowdown`).
    Down,
    /// The left arrow (`left`, `arrowleft`).
    Left,
    /// The right arrow (`right`, `arrowright`).
    Right,
    /// Home, usually to the start of the line (`home`).
    Home,
    /// End, usually to the end of the line (`end`).
    End,
    /// Page Up, one screen up (`pageup`, `page_up`, `pgup`).
    PageUp,
    /// Page Down, one screen down (`pagedown`, `page_down`, `pgdn`).
    PageDown,
    /// Caps Lock (`capslock`).
    CapsLock,
    /// The context-menu key (`menu`).
    Menu,
    /// Pause (`pause`).
    Pause,
    /// Print Screen (`print`, `printscreen`).
    PrintScreen,
    /// A function key by its number, F1 to F24 (`f1` to `f24`).
    F(u8),
}

/// One key of a combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName {
    /// A key with a name: a modifier, an arrow, a function key and the like.
    Named(NamedKey),
    /// A character key, as it is typed (`a`, `7`, `/`).
    Char(char),
}

/// A parsed combination: modifiers held in order, then the last key tapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCombo {
    /// The keys in the order written: modifiers first, the tapped key last.
    pub keys: Vec<KeyName>,
}

impl KeyCombo {
    /// Parses `ctrl+shift+t`, `Return`, `alt+F4`, `super`, `ctrl+plus`. Case-insensitive for
    /// names; a single character stands for itself.
    pub fn parse(combo: &str) -> Result<KeyCombo, DesktopError> {
        let bad =
            |why: String| DesktopError::InvalidAction(format!("key combination {combo:?}: {why}"));
        if combo.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        let mut keys = Vec::new();
        // "ctrl++" means ctrl and plus; split on '+' that follows a key name.
        let mut rest = combo.trim();
        while !rest.is_empty() {
            let (part, tail) = match rest.char_indices().skip(1).find(|&(_, c)| c == '+') {
                Some((i, _)) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            keys.push(Self::key(part.trim()).ok_or_else(|| bad(format!("unknown key {part:?}")))?);
            rest = tail;
        }
        Ok(KeyCombo { keys })
    }

    fn key(name: &str) -> Option<KeyName> {
        let mut chars = name.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return Some(KeyName::Char(c));
        }
        let lower = name.to_ascii_lowercase();
        let named = match lower.as_str() {
            "ctrl" | "control" | "ctl" => NamedKey::Control,
            "shift" => NamedKey::Shift,
            "alt" | "option" => NamedKey::Alt,
            "super" | "meta" | "win" | "cmd" | "command" => NamedKey::Super,
            "return" | "enter" => NamedKey::Return,
            "tab" => NamedKey::Tab,
            "escape" | "esc" => NamedKey::Escape,
            "backspace" => NamedKey::Backspace,
            "delete" | "del" => NamedKey::Delete,
            "insert" | "ins" => NamedKey::Insert,
            "space" => NamedKey::Space,
            "up" | "arrowup" => NamedKey::Up,
            "down" | "arrowdown" => NamedKey::Down,
            "left" | "arrowleft" => NamedKey::Left,
            "right" | "arrowright" => NamedKey::Right,
            "home" => NamedKey::Home,
            "end" => NamedKey::End,
            "pageup" | "page_up" | "pgup" => NamedKey::PageUp,
            "pagedown" | "page_down" | "pgdn" => NamedKey::PageDown,
            "capslock" => NamedKey::CapsLock,
            "menu" => NamedKey::Menu,
            "pause" => NamedKey::Pause,
            "print" | "printscreen" => NamedKey::PrintScreen,
            "plus" => return Some(KeyName::Char('+')),
            "minus" => return Some(KeyName::Char('-')),
            f if f.starts_with('f') => match f[1..].parse::<u8>() {
                Ok(n @ 1..=24) => NamedKey::F(n),
                _ => return None,
            },
            _ => return None,
        };
        Some(KeyName::Named(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_is_cut_at_every_key_that_moves_focus() {
        let typed = |t: &str| Action::Type {
            text: t.into(),
            paste: false,
        };
        let texts = |a: &Action| -> Vec<String> {
            a.segments()
                .into_iter()
                .map(|s| match s {
                    Action::Type { text, .. } => text,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(texts(&typed("alice\thunter2")), ["alice", "\t", "hunter2"]);
        assert_eq!(texts(&typed("a\n\nb\t")), ["a", "\n", "\n", "b", "\t"]);
        assert_eq!(texts(&typed("plain")), ["plain"]);
        assert_eq!(texts(&typed("")), [""]);
        let wait = Action::Wait { ms: 1 };
        assert_eq!(wait.segments().as_slice(), std::slice::from_ref(&wait));
    }

    #[test]
    fn combos_parse() {
        use KeyName::*;
        use NamedKey::*;
        assert_eq!(
            KeyCombo::parse("ctrl+shift+t").unwrap().keys,
            [Named(Control), Named(Shift), Char('t')]
        );
        assert_eq!(
            KeyCombo::parse("Return").unwrap().keys,
            [Named(NamedKey::Return)]
        );
        assert_eq!(
            KeyCombo::parse("alt+F4").unwrap().keys,
            [Named(Alt), Named(F(4))]
        );
        assert_eq!(
            KeyCombo::parse("ctrl++").unwrap().keys,
            [Named(Control), Char('+')]
        );
        assert_eq!(KeyCombo::parse("+").unwrap().keys, [Char('+')]);
        assert!(KeyCombo::parse("ctrl+banana").is_err());
        assert!(KeyCombo::parse("F99").is_err());
        assert!(KeyCombo::parse(" ").is_err());
    }

    #[test]
    fn actions_read_from_json() {
        let a: Action =
            serde_json::from_str(r#"{"kind":"click","at":{"x":0.5,"y":0.25}}"#).unwrap();
        assert_eq!(
            a,
            Action::Click {
                at: NormPoint::new(0.5, 0.25),
                button: MouseButton::Left,
                count: 1
            }
        );
        let a: Action = serde_json::from_str(r#"{"kind":"scroll","dy":3}"#).unwrap();
        assert_eq!(
            a,
            Action::Scroll {
                at: None,
                dx: 0,
                dy: 3
            }
        );
        assert!(serde_json::from_str::<Action>(r#"{"kind":"teleport"}"#).is_err());
    }

    #[test]
    fn type_reads_without_paste() {
        let a: Action = serde_json::from_str(r#"{"kind":"type","text":"hi"}"#).unwrap();
        assert_eq!(
            a,
            Action::Type {
                text: "hi".into(),
                paste: false
            }
        );
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"kind":"type","text":"hi"}"#
        );
    }

    #[test]
    fn validation_catches_what_serde_cannot() {
        let click = |count| Action::Click {
            at: NormPoint::new(0.1, 0.1),
            button: MouseButton::Left,
            count,
        };
        assert!(click(3).validate().is_ok());
        assert!(click(4).validate().is_err());
        assert!(
            Action::Key {
                combo: "ctrl+nope".into()
            }
            .validate()
            .is_err()
        );
        assert!(Action::Wait { ms: 120_000 }.validate().is_err());
    }
}
