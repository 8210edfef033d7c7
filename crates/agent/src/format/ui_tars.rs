//! UI-TARS: `Thought: ...` then `Action: click(start_box='(x,y)')`, several actions separated
//! by blank lines. Points may also come as `<|box_start|>(x,y)<|box_end|>`, `<point>x y</point>`
//! or a box `(x1,y1,x2,y2)` (its centre). UI-TARS 1.0 uses a 0-1000 grid, 1.5 the resized
//! image's pixels.

use clawdesk_desktop::{Action, MouseButton, NormPoint};

use super::coords::Scale;
use super::pycall::{Call, Lit, Stmt, quote, statements};
use super::{AgentAction, Builder, Frame, Reply, keys, malformed, thought, unsupported};
use crate::FormatError;

/// Notches a UI-TARS scroll moves; the format gives a direction only.
pub(crate) const SCROLL_NOTCHES: i32 = 5;
/// UI-TARS's `wait()` is documented as sleeping five seconds.
pub(crate) const WAIT_MS: u64 = 5000;

pub(crate) fn parse(
    format: &'static str,
    text: &str,
    scale: Scale,
    frame: &Frame,
) -> Result<Reply, FormatError> {
    // The first line that starts with "Action:" (a thought may mention the word).
    let at = if text.starts_with("Action:") {
        Some(0)
    } else {
        text.find("\nAction:").map(|i| i + 1)
    };
    let Some(at) = at else {
        return Err(FormatError::NoAction { format });
    };
    let before = text[..at].trim();
    let before = before.strip_prefix("Thought:").unwrap_or(before);
    let code = &text[at + "Action:".len()..];
    let stmts = statements(code).map_err(|e| malformed(format, e))?;
    let mut b = Builder::new(format, frame);
    for stmt in stmts {
        let Stmt::Call(call) = stmt else {
            return Err(malformed(
                format,
                "an action must be a call such as click(...)",
            ));
        };
        one_call(format, &call, scale, &mut b)?;
    }
    b.finish(thought(before))
}

fn one_call(
    format: &'static str,
    call: &Call,
    scale: Scale,
    b: &mut Builder,
) -> Result<(), FormatError> {
    let name = call.name.as_str();
    let text = |index: usize, key: &str| -> Result<String, FormatError> {
        call.arg(index, key)
            .and_then(Lit::text)
            .map(str::to_string)
            .ok_or_else(|| malformed(format, format!("{name} needs a string {key}")))
    };
    let point = |index: usize, key: &str| -> Result<NormPoint, FormatError> {
        let keys = [key, "point", "start_point"];
        let raw = keys
            .iter()
            .find_map(|k| call.arg(usize::MAX, k).and_then(Lit::text))
            .or_else(|| call.arg(index, key).and_then(Lit::text))
            .ok_or_else(|| malformed(format, format!("{name} needs {key}")))?;
        box_point(raw, scale).map_err(|e| malformed(format, e))
    };
    let click = |b: &mut Builder, button, count| -> Result<(), FormatError> {
        let at = point(0, "start_box")?;
        b.push(Action::Click { at, button, count }.into());
        Ok(())
    };
    match name {
        "click" | "left_single" => click(b, MouseButton::Left, 1)?,
        "left_double" | "double_click" => click(b, MouseButton::Left, 2)?,
        "right_single" | "right_click" => click(b, MouseButton::Right, 1)?,
        "drag" | "select" => {
            let from = point(0, "start_box")?;
            let to = call
                .arg(1, "end_box")
                .or_else(|| call.arg(usize::MAX, "end_point"))
                .and_then(Lit::text)
                .ok_or_else(|| malformed(format, format!("{name} needs end_box")))
                .and_then(|raw| box_point(raw, scale).map_err(|e| malformed(format, e)))?;
            b.push(
                Action::Drag {
                    from,
                    to,
                    button: MouseButton::Left,
                }
                .into(),
            );
        }
        "hotkey" | "press" => {
            let combo = text(0, "key")?;
            let names: Vec<&str> = combo.split_whitespace().collect();
            let combo = keys::join(&names).map_err(|e| malformed(format, e))?;
            b.push(Action::Key { combo }.into());
        }
        "type" => {
            let content = text(0, "content")?;
            b.push(
                Action::Type {
                    text: content,
                    paste: false,
                }
                .into(),
            );
        }
        "scroll" => {
            let direction = text(1, "direction")?;
            let n = SCROLL_NOTCHES;
            let (dx, dy) = match direction.as_str() {
                "down" => (0, n),
                "up" => (0, -n),
                "right" => (n, 0),
                "left" => (-n, 0),
                other => return Err(malformed(format, format!("scroll direction {other:?}"))),
            };
            let at = match call
                .arg(0, "start_box")
                .or_else(|| call.arg(usize::MAX, "point"))
            {
                Some(_) => Some(point(0, "start_box")?),
                None => None,
            };
            b.push(Action::Scroll { at, dx, dy }.into());
        }
        "wait" => b.push(Action::Wait { ms: WAIT_MS }.into()),
        "finished" => {
            let content = call.arg(0, "content").and_then(Lit::text).unwrap_or("");
            if !content.is_empty() {
                b.push(AgentAction::Answer {
                    text: content.to_string(),
                });
            }
            b.push(AgentAction::Terminate { success: true });
        }
        "call_user" => b.push(AgentAction::CallUser),
        other => return Err(unsupported(format, format!("the action {other:?}"))),
    }
    Ok(())
}

/// The point a box string names: two numbers are a point, four a box whose centre is taken.
fn box_point(raw: &str, scale: Scale) -> Result<NormPoint, String> {
    let numbers = numbers_in(raw)?;
    let (x, y) = match numbers.as_slice() {
        [x, y] => (*x, *y),
        [x1, y1, x2, y2] => ((x1 + x2) / 2.0, (y1 + y2) / 2.0),
        _ => return Err(format!("{raw:?} is neither a point nor a box")),
    };
    scale.to_point(x, y)
}

/// The numbers in a box string, skipping the markup around them (`<|box_start|>`, `<point>`).
fn numbers_in(raw: &str) -> Result<Vec<f64>, String> {
    let mut cleaned = raw.to_string();
    for tag in [
        "<|box_start|>",
        "<|box_end|>",
        "<point>",
        "</point>",
        "<bbox>",
        "</bbox>",
    ] {
        cleaned = cleaned.replace(tag, " ");
    }
    let mut out = Vec::new();
    for piece in cleaned.split(|c: char| {
        c == ',' || c == '(' || c == ')' || c == '[' || c == ']' || c.is_whitespace()
    }) {
        if piece.is_empty() {
            continue;
        }
        let v: f64 = piece
            .parse()
            .map_err(|_| format!("{piece:?} in {raw:?} is not a number"))?;
        out.push(v);
        if out.len() > 4 {
            return Err(format!("{raw:?} has too many numbers"));
        }
    }
    Ok(out)
}

pub(crate) fn emit(
    format: &'static str,
    reply: &Reply,
    scale: Scale,
) -> Result<String, FormatError> {
    let point = |p: &NormPoint| {
        let (x, y) = scale.to_units(*p);
        quote(&format!("({x},{y})"))
    };
    let mut calls = Vec::new();
    let mut actions = reply.actions.iter().peekable();
    while let Some(action) = actions.next() {
        let call = match action {
            AgentAction::Desktop { action } => match action {
                Action::Click { at, button, count } => {
                    let name = match (button, count) {
                        (MouseButton::Left, 1) => "click",
                        (MouseButton::Left, 2) => "left_double",
                        (MouseButton::Right, 1) => "right_single",
                        _ => return Err(unsupported(format, action.describe())),
                    };
                    format!("{name}(start_box={})", point(at))
                }
                Action::Drag {
                    from,
                    to,
                    button: MouseButton::Left,
                } => format!("drag(start_box={}, end_box={})", point(from), point(to)),
                Action::Key { combo } => {
                    format!("hotkey(key={})", quote(&keys::split(combo).join(" ")))
                }
                Action::Type { text, .. } => format!("type(content={})", quote(text)),
                Action::Scroll { at, dx, dy } => {
                    let n = SCROLL_NOTCHES;
                    let direction = match (*dx, *dy) {
                        (0, d) if d == n => "down",
                        (0, d) if d == -n => "up",
                        (d, 0) if d == n => "right",
                        (d, 0) if d == -n => "left",
                        _ => {
                            return Err(unsupported(
                                format,
                                format!("{} (only {n} notches one way)", action.describe()),
                            ));
                        }
                    };
                    match at {
                        Some(at) => {
                            format!("scroll(start_box={}, direction='{direction}')", point(at))
                        }
                        None => format!("scroll(direction='{direction}')"),
                    }
                }
                Action::Wait { ms } if *ms == WAIT_MS => "wait()".to_string(),
                other => return Err(unsupported(format, other.describe())),
            },
            AgentAction::Answer { text } => {
                if text.is_empty() {
                    return Err(unsupported(format, "an empty answer"));
                }
                if actions.peek() != Some(&&AgentAction::Terminate { success: true }) {
                    return Err(unsupported(
                        format,
                        "an answer that does not finish the task",
                    ));
                }
                actions.next();
                format!("finished(content={})", quote(text))
            }
            AgentAction::Terminate { success: true } => "finished(content='')".to_string(),
            AgentAction::Terminate { success: false } => {
                return Err(unsupported(format, "giving up"));
            }
            AgentAction::CallUser => "call_user()".to_string(),
        };
        calls.push(call);
    }
    if calls.is_empty() {
        return Err(unsupported(format, "a reply without actions"));
    }
    let mut out = String::new();
    if let Some(t) = &reply.thought {
        out.push_str("Thought: ");
        out.push_str(t);
        out.push('\n');
    }
    out.push_str("Action: ");
    out.push_str(&calls.join("\n\n"));
    Ok(out)
}
