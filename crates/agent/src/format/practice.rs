//! The practice gym's own action format, which the practice base (a tiny model warm-started
//! on the gym) writes: one `click(x,y)` on a 0-999 grid of the screen (x/1000 of its width),
//! or one `type("text")`, on the reply's last line. A grounded reply first quotes, on one line,
//! the element it acts on (`green button (375,250)`); that line is the thought. Nothing else:
//! the gym's verifier scores anything else as a wrong step, and so does this parser.

use clawdesk_desktop::{Action, MouseButton, NormPoint};

use super::{AgentAction, Reply, malformed, unsupported};
use crate::FormatError;

/// Points are written in thousandths of the screen, as the gym's grid counts them.
const GRID: f64 = 1000.0;

pub(crate) fn parse(format: &'static str, text: &str) -> Result<Reply, FormatError> {
    let (thought, text) = match text.trim().split_once('\n') {
        Some((line, rest)) => {
            let line = line.trim();
            if line.starts_with("click(") || line.starts_with("type(") || rest.contains('\n') {
                return Err(malformed(
                    format,
                    "the reply must be one click(x,y) or type(\"text\"), after at most one line quoting the element",
                ));
            }
            (super::thought(line), rest.trim())
        }
        None => (None, text.trim()),
    };
    let action = if let Some(args) = text.strip_prefix("click(") {
        let args = args
            .strip_suffix(')')
            .ok_or_else(|| malformed(format, "click( without its closing parenthesis"))?;
        let (x, y) = args
            .split_once(',')
            .ok_or_else(|| malformed(format, "click needs two numbers, click(x,y)"))?;
        let number = |v: &str| -> Result<u32, FormatError> {
            let n: u32 = v
                .trim()
                .parse()
                .map_err(|_| malformed(format, format!("{v:?} is not a whole number")))?;
            if n >= GRID as u32 {
                return Err(malformed(format, format!("{n} lies off the 0-999 grid")));
            }
            Ok(n)
        };
        let (x, y) = (number(x)?, number(y)?);
        Action::Click {
            at: NormPoint::new(f64::from(x) / GRID, f64::from(y) / GRID),
            button: MouseButton::Left,
            count: 1,
        }
    } else if let Some(args) = text.strip_prefix("type(") {
        let inner = args
            .strip_suffix(')')
            .map(str::trim)
            .and_then(|a| a.strip_prefix('"'))
            .and_then(|a| a.strip_suffix('"'))
            .ok_or_else(|| malformed(format, "type needs one quoted text, type(\"...\")"))?;
        if inner.contains('"') || inner.contains('\n') {
            return Err(malformed(
                format,
                "the typed text may hold no quote and no line break",
            ));
        }
        Action::Type {
            text: inner.to_owned(),
            paste: false,
        }
    } else if text.is_empty() {
        return Err(FormatError::NoAction { format });
    } else {
        return Err(malformed(
            format,
            "the reply must be one click(x,y) or type(\"text\") and nothing else",
        ));
    };
    Ok(Reply {
        thought,
        actions: vec![AgentAction::Desktop { action }],
    })
}

pub(crate) fn emit(format: &'static str, reply: &Reply) -> Result<String, FormatError> {
    let line = match reply.thought.as_deref() {
        Some(t) if t.contains('\n') => {
            return Err(unsupported(format, "a thought of more than one line"));
        }
        Some(t) => format!("{t}\n"),
        None => String::new(),
    };
    let [AgentAction::Desktop { action }] = reply.actions.as_slice() else {
        return Err(unsupported(
            format,
            "anything but exactly one click or type",
        ));
    };
    match action {
        Action::Click {
            at,
            button: MouseButton::Left,
            count: 1,
        } => {
            let unit = |v: f64| ((v.clamp(0.0, 1.0) * GRID).round() as u32).min(999);
            Ok(format!("{line}click({},{})", unit(at.x), unit(at.y)))
        }
        Action::Type { text, paste: false } if !text.contains('"') && !text.contains('\n') => {
            Ok(format!("{line}type(\"{text}\")"))
        }
        other => Err(unsupported(format, other.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(x: u32, y: u32) -> Reply {
        Reply {
            thought: None,
            actions: vec![
                Action::Click {
                    at: NormPoint::new(f64::from(x) / 1000.0, f64::from(y) / 1000.0),
                    button: MouseButton::Left,
                    count: 1,
                }
                .into(),
            ],
        }
    }

    #[test]
    fn reads_back_what_it_writes() {
        for (x, y) in [(0, 0), (125, 250), (875, 750), (999, 999), (1, 998)] {
            let text = emit("practice", &click(x, y)).expect("emits");
            assert_eq!(text, format!("click({x},{y})"));
            assert_eq!(parse("practice", &text).expect("parses"), click(x, y));
        }
        let typed = Reply {
            thought: None,
            actions: vec![
                Action::Type {
                    text: "cat".into(),
                    paste: false,
                }
                .into(),
            ],
        };
        let text = emit("practice", &typed).expect("emits");
        assert_eq!(text, "type(\"cat\")");
        assert_eq!(
            parse("practice", " type( \"cat\" )\n").expect("parses"),
            typed
        );
    }

    #[test]
    fn a_grounded_reply_keeps_its_element_line_as_the_thought() {
        let text = "green button (375,250)\nclick(375,250)";
        let mut grounded = click(375, 250);
        grounded.thought = Some("green button (375,250)".into());
        assert_eq!(parse("practice", text).expect("parses"), grounded);
        assert_eq!(emit("practice", &grounded).expect("emits"), text);
        for bad in [
            "click(1,2)\nclick(3,4)",
            "one\ntwo\nclick(1,2)",
            "green button (375,250)\n",
        ] {
            assert!(parse("practice", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn anything_else_is_an_error() {
        for bad in [
            "",
            "click(1000,5)",
            "click(5)",
            "click(-1,5)",
            "click(1,2) then more",
            "Click(1,2)",
            "type(cat)",
            "type(\"a\"b\")",
            "type(\"a",
            "I will click(1,2)",
        ] {
            assert!(parse("practice", bad).is_err(), "{bad:?}");
        }
        let right = Reply {
            thought: None,
            actions: vec![
                Action::Click {
                    at: NormPoint::new(0.5, 0.5),
                    button: MouseButton::Right,
                    count: 1,
                }
                .into(),
            ],
        };
        assert!(emit("practice", &right).is_err());
        let mut two = click(1, 2);
        two.actions.extend(click(3, 4).actions);
        assert!(emit("practice", &two).is_err());
    }
}
