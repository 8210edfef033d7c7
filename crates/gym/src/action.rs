//! The gym's action text: `click(x,y)` with x and y on the 0-999 grid of the screenshot, and
//! `type("text")`. Short on purpose: a tiny model writes it byte by byte.

use std::fmt;

/// One action in the gym.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GymAction {
    /// A left click at (x, y) on the 0-999 grid.
    Click {
        /// Column on the 0-999 grid, left to right.
        x: u32,
        /// Row on the 0-999 grid, top to bottom.
        y: u32,
    },
    /// Typing into the focused field.
    Type {
        /// The text typed, without quotes (it holds no `"` and no newline).
        text: String,
    },
}

impl fmt::Display for GymAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GymAction::Click { x, y } => write!(f, "click({x},{y})"),
            GymAction::Type { text } => write!(f, "type(\"{text}\")"),
        }
    }
}

impl GymAction {
    /// Reads one action; anything else (extra text, out-of-grid points, quotes inside the text)
    /// is `None`, which the verifier scores as a wrong step.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(args) = text
            .strip_prefix("click(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (x, y) = args.split_once(',')?;
            let x: u32 = x.trim().parse().ok()?;
            let y: u32 = y.trim().parse().ok()?;
            return (x < 1000 && y < 1000).then_some(GymAction::Click { x, y });
        }
        if let Some(args) = text.strip_prefix("type(").and_then(|r| r.strip_suffix(')')) {
            let inner = args.trim().strip_prefix('"')?.strip_suffix('"')?;
            if inner.contains('"') || inner.contains('\n') {
                return None;
            }
            return Some(GymAction::Type {
                text: inner.to_string(),
            });
        }
        None
    }

    /// Reads a reply that may quote, on one line before its action, the element it acts on
    /// (a grounded reply: `green button (375,250)` then `click(375,250)`). The quoted line is
    /// returned as the reply's thought; a reply of more lines, or whose first line is itself
    /// an action, is `None`.
    pub fn parse_reply(text: &str) -> Option<(Option<&str>, Self)> {
        let text = text.trim();
        match text.split_once('\n') {
            None => Some((None, Self::parse(text)?)),
            Some((thought, action)) => {
                let thought = thought.trim();
                let is_action = thought.starts_with("click(") || thought.starts_with("type(");
                if thought.is_empty() || is_action || action.contains('\n') {
                    return None;
                }
                Some((Some(thought), Self::parse(action)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GymAction;

    #[test]
    fn round_trips() {
        for a in [
            GymAction::Click { x: 0, y: 999 },
            GymAction::Click { x: 375, y: 250 },
            GymAction::Type { text: "cat".into() },
            GymAction::Type {
                text: String::new(),
            },
        ] {
            assert_eq!(GymAction::parse(&a.to_string()), Some(a));
        }
    }

    #[test]
    fn a_grounded_reply_quotes_one_element_line_before_its_action() {
        assert_eq!(
            GymAction::parse_reply("green button (375,250)\nclick(375,250)"),
            Some((
                Some("green button (375,250)"),
                GymAction::Click { x: 375, y: 250 }
            ))
        );
        assert_eq!(
            GymAction::parse_reply("type(\"cat\")"),
            Some((None, GymAction::Type { text: "cat".into() }))
        );
        for bad in [
            "click(1,2)\nclick(3,4)",
            "a\nb\nclick(1,2)",
            "\nclick(1,2) x",
            "green button (375,250)\n",
            "green button (375,250)\npress(enter)",
        ] {
            assert_eq!(GymAction::parse_reply(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_one_action() {
        for bad in [
            "",
            "click(1000,3)",
            "click(3)",
            "click(-1,2)",
            "click(1,2) click(3,4)",
            "type(cat)",
            "type(\"a\"b\")",
            "press(enter)",
            "click(1,2",
        ] {
            assert_eq!(GymAction::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            GymAction::parse("  click( 12 , 34 )\n"),
            Some(GymAction::Click { x: 12, y: 34 })
        );
    }
}
