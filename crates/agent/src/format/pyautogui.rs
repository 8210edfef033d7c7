//! OSWorld's pyautogui action space: Python code (in a ```python block or bare) calling
//! pyautogui with screen-pixel coordinates, or one of the special words WAIT, DONE, FAIL.

use clawdesk_desktop::{Action, MouseButton, NormPoint};

use super::coords::Scale;
use super::pycall::{Call, Lit, Stmt, quote, statements};
use super::{AgentAction, Builder, Frame, Reply, fenced, keys, malformed, thought, unsupported};
use crate::FormatError;

/// How long WAIT pauses: OSWorld leaves it to the runner; ClawDesk waits this long.
pub(crate) const WAIT_MS: u64 = 2000;

/// The code of a reply and the text before it: the fenced blocks if there are any, else all.
pub(crate) fn code_of(text: &str) -> (String, String) {
    let Some(first) = text.find("```") else {
        return (String::new(), text.to_string());
    };
    let mut code = String::new();
    let mut rest = &text[first..];
    while let Some(open) = rest.find("```") {
        let body = &rest[open + 3..];
        // Skip the language tag on the opening line.
        let body = match body.find('\n') {
            Some(nl) if !body[..nl].contains("```") => &body[nl + 1..],
            _ => body,
        };
        let (block, tail) = match body.find("```") {
            Some(close) => (&body[..close], &body[close + 3..]),
            None => (body, ""),
        };
        code.push_str(block);
        code.push('\n');
        rest = tail;
    }
    (text[..first].to_string(), code)
}

pub(crate) fn parse(format: &'static str, text: &str, frame: &Frame) -> Result<Reply, FormatError> {
    let (before, code) = code_of(text);
    let stmts = statements(&code).map_err(|e| malformed(format, e))?;
    let scale = Scale::screen(frame);
    let mut b = Builder::new(format, frame);
    for stmt in stmts {
        match stmt {
            Stmt::Name(word) => match word.as_str() {
                "WAIT" => b.push(Action::Wait { ms: WAIT_MS }.into()),
                "DONE" => b.push(AgentAction::Terminate { success: true }),
                "FAIL" => b.push(AgentAction::Terminate { success: false }),
                other => return Err(malformed(format, format!("the bare name {other:?}"))),
            },
            Stmt::Call(call) => one_call(format, &call, scale, &mut b)?,
        }
    }
    b.finish(thought(&before))
}

pub(crate) fn one_call(
    format: &'static str,
    call: &Call,
    scale: Scale,
    b: &mut Builder,
) -> Result<(), FormatError> {
    let name = call.name.strip_prefix("pyautogui.").unwrap_or(&call.name);
    let number = |index: usize, key: &str| call.arg(index, key).and_then(Lit::number);
    // (x, y) from positional or keyword arguments, or a tuple in the first place.
    let point = |first: usize| -> Result<Option<NormPoint>, FormatError> {
        let (x, y) = match call.arg(first, "x") {
            Some(Lit::List(xy)) if xy.len() == 2 => (xy[0].number(), xy[1].number()),
            Some(Lit::None) | None => return Ok(None),
            Some(x) => (x.number(), number(first + 1, "y")),
        };
        let (Some(x), Some(y)) = (x, y) else {
            return Err(malformed(
                format,
                format!("{name} has a point that is not two numbers"),
            ));
        };
        scale
            .to_point(x, y)
            .map(Some)
            .map_err(|e| malformed(format, e))
    };
    let at_or_here = |b: &Builder| -> Result<NormPoint, FormatError> {
        match point(0)? {
            Some(p) => Ok(p),
            None => b.here(name),
        }
    };
    let button = |default: MouseButton| -> Result<MouseButton, FormatError> {
        match call.arg(usize::MAX, "button").and_then(Lit::text) {
            None => Ok(default),
            Some("left") | Some("primary") => Ok(MouseButton::Left),
            Some("right") | Some("secondary") => Ok(MouseButton::Right),
            Some("middle") => Ok(MouseButton::Middle),
            Some(other) => Err(malformed(format, format!("button {other:?}"))),
        }
    };
    let clicks = |default: i64| -> Result<u8, FormatError> {
        match call.arg(usize::MAX, "clicks") {
            None => Ok(default as u8),
            Some(Lit::Int(n @ 1..=3)) => Ok(*n as u8),
            Some(other) => Err(malformed(format, format!("clicks={other:?}"))),
        }
    };
    match name {
        "click" | "doubleClick" | "tripleClick" | "rightClick" | "middleClick" => {
            let (default_button, default_count) = match name {
                "doubleClick" => (MouseButton::Left, 2),
                "tripleClick" => (MouseButton::Left, 3),
                "rightClick" => (MouseButton::Right, 1),
                "middleClick" => (MouseButton::Middle, 1),
                _ => (MouseButton::Left, 1),
            };
            let at = at_or_here(b)?;
            let action = Action::Click {
                at,
                button: button(default_button)?,
                count: clicks(default_count)?,
            };
            b.push(action.into());
        }
        "moveTo" => {
            let at = at_or_here(b)?;
            b.push(Action::Move { at }.into());
        }
        "dragTo" => {
            let to = at_or_here(b)?;
            b.drag_to(to, button(MouseButton::Left)?)?;
        }
        "scroll" | "hscroll" | "vscroll" => {
            let clicks = number(0, "clicks")
                .ok_or_else(|| malformed(format, format!("{name} needs a number of clicks")))?;
            if clicks.abs() > 100.0 {
                return Err(malformed(format, format!("a scroll of {clicks}")));
            }
            let clicks = clicks.round() as i32;
            let at = point(1)?;
            let (dx, dy) = if name == "hscroll" {
                (clicks, 0)
            } else {
                (0, -clicks)
            };
            b.push(Action::Scroll { at, dx, dy }.into());
        }
        "typewrite" | "write" => {
            let text = match call.arg(0, "message") {
                Some(Lit::Str(s)) => s.clone(),
                _ => return Err(unsupported(format, format!("{name} without a string"))),
            };
            b.push(Action::Type { text, paste: false }.into());
        }
        // OpenCUA writes the keys as a list: `press(keys=['enter'])`, `hotkey(keys=['ctrl',
        // 'c'])`. pyautogui's press takes a list too, and presses each key in turn.
        "press" | "hotkey" if matches!(call.arg(0, "keys"), Some(Lit::List(_))) => {
            let Some(Lit::List(items)) = call.arg(0, "keys") else {
                return Err(malformed(format, format!("{name} takes key names")));
            };
            let names = items
                .iter()
                .map(|k| k.text().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| malformed(format, format!("{name} takes key names")))?;
            let combos = if name == "hotkey" {
                vec![names]
            } else {
                names.into_iter().map(|n| vec![n]).collect()
            };
            for keys in combos {
                let combo = keys::join(&keys).map_err(|e| malformed(format, e))?;
                b.push(Action::Key { combo }.into());
            }
        }
        "press" | "hotkey" => {
            let names: Vec<String> = if name == "hotkey" {
                let names: Vec<String> = call
                    .args
                    .iter()
                    .filter_map(|a| a.text().map(str::to_string))
                    .collect();
                if names.len() != call.args.len() {
                    return Err(malformed(format, "hotkey takes key names"));
                }
                names
            } else {
                match call.arg(0, "keys") {
                    Some(Lit::Str(s)) => vec![s.clone()],
                    _ => return Err(unsupported(format, "press without one key name")),
                }
            };
            let combo = keys::join(&names).map_err(|e| malformed(format, e))?;
            b.push(Action::Key { combo }.into());
        }
        "time.sleep" | "sleep" => {
            let seconds = number(0, "secs")
                .filter(|s| (0.0..=60.0).contains(s))
                .ok_or_else(|| malformed(format, "sleep needs 0 to 60 seconds"))?;
            b.push(
                Action::Wait {
                    ms: (seconds * 1000.0).round() as u64,
                }
                .into(),
            );
        }
        other => return Err(unsupported(format, format!("the call {other}"))),
    }
    Ok(())
}

/// A click as pyautogui code at `xy` (the format's own argument text); `triple` names the
/// triple click, which OpenCUA writes as a function of its own.
pub(crate) fn click_call(xy: &str, button: MouseButton, count: u8, triple: &str) -> String {
    match (button, count) {
        (MouseButton::Left, 1) => format!("pyautogui.click({xy})"),
        (MouseButton::Left, 2) => format!("pyautogui.doubleClick({xy})"),
        (MouseButton::Left, 3) => format!("{triple}({xy})"),
        (MouseButton::Right, 1) => format!("pyautogui.rightClick({xy})"),
        (MouseButton::Middle, 1) => format!("pyautogui.middleClick({xy})"),
        (button, count) => format!(
            "pyautogui.click({xy}, clicks={count}, button='{}')",
            format!("{button:?}").to_lowercase()
        ),
    }
}

/// A drag as pyautogui writes it: a move to the start, then a drag to the end.
pub(crate) fn drag_calls(from: &str, to: &str, button: MouseButton) -> [String; 2] {
    [
        format!("pyautogui.moveTo({from})"),
        format!(
            "pyautogui.dragTo({to}, button='{}')",
            format!("{button:?}").to_lowercase()
        ),
    ]
}

pub(crate) fn emit(
    format: &'static str,
    reply: &Reply,
    frame: &Frame,
) -> Result<String, FormatError> {
    let scale = Scale::screen(frame);
    let xy = |p: &NormPoint| {
        let (x, y) = scale.to_units(*p);
        format!("{x}, {y}")
    };
    let mut lines = Vec::new();
    for action in &reply.actions {
        match action {
            AgentAction::Desktop { action } => match action {
                Action::Move { at } => lines.push(format!("pyautogui.moveTo({})", xy(at))),
                Action::Click { at, button, count } => lines.push(click_call(
                    &xy(at),
                    *button,
                    *count,
                    "pyautogui.tripleClick",
                )),
                Action::Drag { from, to, button } => {
                    lines.extend(drag_calls(&xy(from), &xy(to), *button))
                }
                Action::Scroll { at, dx, dy } => {
                    let at = at.map(|p| {
                        let (x, y) = scale.to_units(p);
                        format!(", x={x}, y={y}")
                    });
                    let at = at.unwrap_or_default();
                    if *dy != 0 {
                        lines.push(format!("pyautogui.scroll({}{at})", -dy));
                    }
                    if *dx != 0 {
                        lines.push(format!("pyautogui.hscroll({dx}{at})"));
                    }
                    if *dx == 0 && *dy == 0 {
                        return Err(unsupported(format, "a scroll by nothing"));
                    }
                }
                Action::Type { text, .. } => {
                    lines.push(format!("pyautogui.typewrite({})", quote(text)))
                }
                Action::Key { combo } => {
                    let names = keys::pyautogui_names(combo);
                    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
                    lines.push(if quoted.len() == 1 {
                        format!("pyautogui.press({})", quoted[0])
                    } else {
                        format!("pyautogui.hotkey({})", quoted.join(", "))
                    });
                }
                Action::Wait { ms } => lines.push(format!("time.sleep({})", *ms as f64 / 1000.0)),
            },
            AgentAction::Terminate { success } => {
                lines.push(if *success { "DONE" } else { "FAIL" }.to_string())
            }
            AgentAction::Answer { .. } => return Err(unsupported(format, "a text answer")),
            AgentAction::CallUser => return Err(unsupported(format, "handing over to the person")),
        }
    }
    if lines.is_empty() {
        return Err(unsupported(format, "a reply without actions"));
    }
    Ok(fenced(
        reply.thought.as_deref(),
        "python",
        &lines.join("\n"),
    ))
}
