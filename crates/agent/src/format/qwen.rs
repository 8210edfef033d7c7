//! Qwen-VL computer use: an optional `Action: <one sentence>` thought, then one or more
//! `<tool_call>{"name": "computer_use", "arguments": {...}}</tool_call>` blocks. Qwen3-VL puts
//! coordinates on the 0-999 grid, Qwen2.5-VL in the resized image's pixels.

use clawdesk_desktop::{Action, MouseButton};
use serde_json::{Value, json};

use super::coords::Scale;
use super::{AgentAction, Builder, Frame, Reply, keys, malformed, thought, unsupported};
use crate::FormatError;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const THOUGHT: &str = "Action:";

pub(crate) fn parse(
    format: &'static str,
    text: &str,
    scale: Scale,
    frame: &Frame,
) -> Result<Reply, FormatError> {
    let Some(first) = text.find(OPEN) else {
        return Err(FormatError::NoAction { format });
    };
    let before = text[..first].trim();
    let before = before.strip_prefix(THOUGHT).unwrap_or(before);
    let mut b = Builder::new(format, frame);
    let mut rest = &text[first..];
    while let Some(start) = rest.find(OPEN) {
        let body = &rest[start + OPEN.len()..];
        let (call, tail) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            // A reply cut at the token limit may lose its closing tag; the call still counts.
            None => (body, ""),
        };
        one_call(format, call, scale, &mut b)?;
        rest = tail;
    }
    b.finish(thought(before))
}

fn one_call(
    format: &'static str,
    call: &str,
    scale: Scale,
    b: &mut Builder,
) -> Result<(), FormatError> {
    let value: Value = serde_json::from_str(call.trim())
        .map_err(|e| malformed(format, format!("the tool call is not JSON: {e}")))?;
    let name = value.get("name").and_then(Value::as_str).unwrap_or("");
    if name != "computer_use" {
        return Err(unsupported(format, format!("the tool {name:?}")));
    }
    let args = match value.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s)
            .map_err(|e| malformed(format, format!("the arguments are not JSON: {e}")))?,
        Some(v @ Value::Object(_)) => v.clone(),
        _ => return Err(malformed(format, "the tool call has no arguments")),
    };
    let action = args
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format, "the arguments name no action"))?;
    let point = |b: &Builder, what: &str| -> Result<clawdesk_desktop::NormPoint, FormatError> {
        match args.get("coordinate") {
            None | Some(Value::Null) => b.here(what),
            Some(c) => {
                let xy = c
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
                    .ok_or_else(|| malformed(format, format!("coordinate {c} is not [x, y]")))?;
                scale.to_point(xy.0, xy.1).map_err(|e| malformed(format, e))
            }
        }
    };
    let number = |key: &str| -> Result<f64, FormatError> {
        args.get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
            .ok_or_else(|| malformed(format, format!("{action} needs a number {key:?}")))
    };
    let text = |key: &str| -> Result<String, FormatError> {
        args.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(format, format!("{action} needs a string {key:?}")))
    };
    let click = |b: &mut Builder, button, count| -> Result<(), FormatError> {
        let at = point(b, action)?;
        b.push(Action::Click { at, button, count }.into());
        Ok(())
    };
    match action {
        "left_click" => click(b, MouseButton::Left, 1)?,
        "right_click" => click(b, MouseButton::Right, 1)?,
        "middle_click" => click(b, MouseButton::Middle, 1)?,
        "double_click" => click(b, MouseButton::Left, 2)?,
        "triple_click" => click(b, MouseButton::Left, 3)?,
        "mouse_move" => {
            let at = point(b, action)?;
            b.push(Action::Move { at }.into());
        }
        "left_click_drag" => {
            let to = point(b, action)?;
            b.drag_to(to, MouseButton::Left)?;
        }
        "scroll" | "hscroll" => {
            let pixels = wheel(format, number("pixels")?)?;
            let at = match args.get("coordinate") {
                None | Some(Value::Null) => None,
                Some(_) => Some(point(b, action)?),
            };
            let (dx, dy) = if action == "scroll" {
                (0, -pixels)
            } else {
                (pixels, 0)
            };
            b.push(Action::Scroll { at, dx, dy }.into());
        }
        "type" => b.push(
            Action::Type {
                text: text("text")?,
                paste: false,
            }
            .into(),
        ),
        "key" => {
            let list = args
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(format, "key needs a list \"keys\""))?;
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            if names.len() != list.len() {
                return Err(malformed(format, "key's \"keys\" are not all strings"));
            }
            let combo = keys::join(&names).map_err(|e| malformed(format, e))?;
            b.push(Action::Key { combo }.into());
        }
        "wait" => {
            let seconds = number("time")?;
            if !(0.0..=60.0).contains(&seconds) {
                return Err(malformed(format, format!("a wait of {seconds} s")));
            }
            b.push(
                Action::Wait {
                    ms: (seconds * 1000.0).round() as u64,
                }
                .into(),
            );
        }
        "terminate" => {
            let success = match text("status")?.as_str() {
                "success" => true,
                "failure" => false,
                other => return Err(malformed(format, format!("terminate status {other:?}"))),
            };
            b.push(AgentAction::Terminate { success });
        }
        "answer" => b.push(AgentAction::Answer {
            text: text("text")?,
        }),
        other => return Err(unsupported(format, format!("the action {other:?}"))),
    }
    Ok(())
}

/// Wheel notches from a model's number, refusing the absurd.
fn wheel(format: &'static str, v: f64) -> Result<i32, FormatError> {
    if v.abs() > 100.0 {
        return Err(malformed(format, format!("a scroll of {v}")));
    }
    Ok(v.round() as i32)
}

pub(crate) fn emit(
    format: &'static str,
    reply: &Reply,
    scale: Scale,
) -> Result<String, FormatError> {
    let mut out = String::new();
    if let Some(t) = &reply.thought {
        out.push_str(THOUGHT);
        out.push(' ');
        out.push_str(t);
        out.push('\n');
    }
    let point = |p| {
        let (x, y) = scale.to_units(p);
        json!([x, y])
    };
    let mut calls: Vec<Vec<(&str, Value)>> = Vec::new();
    for action in &reply.actions {
        match action {
            AgentAction::Desktop { action } => match action {
                Action::Move { at } => calls.push(vec![
                    ("action", json!("mouse_move")),
                    ("coordinate", point(*at)),
                ]),
                Action::Click { at, button, count } => {
                    let name = match (button, count) {
                        (MouseButton::Left, 1) => "left_click",
                        (MouseButton::Right, 1) => "right_click",
                        (MouseButton::Middle, 1) => "middle_click",
                        (MouseButton::Left, 2) => "double_click",
                        (MouseButton::Left, 3) => "triple_click",
                        _ => return Err(unsupported(format, action.describe())),
                    };
                    calls.push(vec![("action", json!(name)), ("coordinate", point(*at))]);
                }
                Action::Drag {
                    from,
                    to,
                    button: MouseButton::Left,
                } => {
                    calls.push(vec![
                        ("action", json!("mouse_move")),
                        ("coordinate", point(*from)),
                    ]);
                    calls.push(vec![
                        ("action", json!("left_click_drag")),
                        ("coordinate", point(*to)),
                    ]);
                }
                Action::Scroll { at, dx, dy } => {
                    let (name, pixels) = match (dx, dy) {
                        (0, dy) => ("scroll", -dy),
                        (dx, 0) => ("hscroll", *dx),
                        _ => return Err(unsupported(format, "a diagonal scroll")),
                    };
                    let mut call = vec![("action", json!(name)), ("pixels", json!(pixels))];
                    if let Some(at) = at {
                        call.push(("coordinate", point(*at)));
                    }
                    calls.push(call);
                }
                Action::Type { text, .. } => {
                    calls.push(vec![("action", json!("type")), ("text", json!(text))])
                }
                Action::Key { combo } => calls.push(vec![
                    ("action", json!("key")),
                    ("keys", json!(keys::split(combo))),
                ]),
                Action::Wait { ms } => calls.push(vec![
                    ("action", json!("wait")),
                    ("time", json!(*ms as f64 / 1000.0)),
                ]),
                Action::Drag { .. } => return Err(unsupported(format, action.describe())),
            },
            AgentAction::Terminate { success } => calls.push(vec![
                ("action", json!("terminate")),
                (
                    "status",
                    json!(if *success { "success" } else { "failure" }),
                ),
            ]),
            AgentAction::Answer { text } => {
                calls.push(vec![("action", json!("answer")), ("text", json!(text))])
            }
            AgentAction::CallUser => return Err(unsupported(format, "handing over to the person")),
        }
    }
    if calls.is_empty() {
        return Err(unsupported(format, "a reply without actions"));
    }
    let blocks: Vec<String> = calls
        .iter()
        .map(|args| {
            format!(
                "{OPEN}\n{{\"name\": \"computer_use\", \"arguments\": {}}}\n{CLOSE}",
                object(args)
            )
        })
        .collect();
    out.push_str(&blocks.join("\n"));
    Ok(out)
}

/// JSON in the spacing Qwen's chat template writes (`{"a": 1, "b": [2, 3]}`), keys in order.
fn object(pairs: &[(&str, Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(*k), spaced(v)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn spaced(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(spaced).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}
