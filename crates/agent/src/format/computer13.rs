//! OSWorld's computer_13 action space: JSON objects `{"action_type": "CLICK", "parameters":
//! {"x": 10, "y": 20}}` (one, or a list), in a ```json block or bare, in screen pixels; or the
//! words WAIT, DONE, FAIL. MOUSE_DOWN/UP and KEY_DOWN/UP have no internal form and are refused.

use clawdesk_desktop::{Action, MouseButton, NormPoint};
use serde_json::{Map, Value, json};

use super::coords::Scale;
use super::pyautogui::{WAIT_MS, code_of};
use super::{AgentAction, Builder, Frame, Reply, fenced, keys, malformed, thought, unsupported};
use crate::FormatError;

pub(crate) fn parse(format: &'static str, text: &str, frame: &Frame) -> Result<Reply, FormatError> {
    let (before, body) = code_of(text);
    let body = body.trim();
    let mut b = Builder::new(format, frame);
    let scale = Scale::screen(frame);
    match body {
        "WAIT" => b.push(Action::Wait { ms: WAIT_MS }.into()),
        "DONE" => b.push(AgentAction::Terminate { success: true }),
        "FAIL" => b.push(AgentAction::Terminate { success: false }),
        _ => {
            // Bare JSON may follow a thought: read from the first bracket or quote.
            let start = body
                .find(['{', '[', '"'])
                .ok_or(FormatError::NoAction { format })?;
            let value: Value = serde_json::Deserializer::from_str(&body[start..])
                .into_iter::<Value>()
                .next()
                .ok_or(FormatError::NoAction { format })?
                .map_err(|e| malformed(format, format!("not JSON: {e}")))?;
            let items = match value {
                Value::Array(items) => items,
                one => vec![one],
            };
            for item in &items {
                one_action(format, item, scale, &mut b)?;
            }
            let thought_text = format!("{before}\n{}", &body[..start]);
            return b.finish(thought(&thought_text));
        }
    }
    b.finish(thought(&before))
}

fn one_action(
    format: &'static str,
    item: &Value,
    scale: Scale,
    b: &mut Builder,
) -> Result<(), FormatError> {
    if let Some(word) = item.as_str() {
        match word {
            "WAIT" => b.push(Action::Wait { ms: WAIT_MS }.into()),
            "DONE" => b.push(AgentAction::Terminate { success: true }),
            "FAIL" => b.push(AgentAction::Terminate { success: false }),
            other => return Err(malformed(format, format!("the word {other:?}"))),
        }
        return Ok(());
    }
    let Some(object) = item.as_object() else {
        return Err(malformed(format, format!("{item} is not an action object")));
    };
    let kind = object
        .get("action_type")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format, "an action without action_type"))?;
    // Parameters nested under "parameters", or beside action_type.
    let params: &Map<String, Value> = match object.get("parameters") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(malformed(format, "parameters is not an object")),
        None => object,
    };
    let number = |key: &str| {
        params
            .get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
    };
    let point = |b: &Builder| -> Result<NormPoint, FormatError> {
        match (number("x"), number("y")) {
            (Some(x), Some(y)) => scale.to_point(x, y).map_err(|e| malformed(format, e)),
            (None, None) => b.here(kind),
            _ => Err(malformed(format, format!("{kind} has only one of x and y"))),
        }
    };
    let text = |key: &str| -> Result<String, FormatError> {
        params
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(format, format!("{kind} needs a string {key:?}")))
    };
    match kind {
        "MOVE_TO" => {
            let at = point(b)?;
            b.push(Action::Move { at }.into());
        }
        "CLICK" | "RIGHT_CLICK" | "DOUBLE_CLICK" => {
            let at = point(b)?;
            let button = match (kind, params.get("button").and_then(Value::as_str)) {
                ("RIGHT_CLICK", _) => MouseButton::Right,
                (_, None) | (_, Some("left")) => MouseButton::Left,
                (_, Some("right")) => MouseButton::Right,
                (_, Some("middle")) => MouseButton::Middle,
                (_, Some(other)) => return Err(malformed(format, format!("button {other:?}"))),
            };
            let count = match (kind, params.get("num_clicks")) {
                ("DOUBLE_CLICK", _) => 2,
                (_, None) => 1,
                (_, Some(n)) => match n.as_u64() {
                    Some(n @ 1..=3) => n as u8,
                    _ => return Err(malformed(format, format!("num_clicks {n}"))),
                },
            };
            b.push(Action::Click { at, button, count }.into());
        }
        "DRAG_TO" => {
            let to = point(b)?;
            b.drag_to(to, MouseButton::Left)?;
        }
        "SCROLL" => {
            let notch = |key: &str| -> Result<i32, FormatError> {
                match params.get(key) {
                    None => Ok(0),
                    Some(v) => v
                        .as_f64()
                        .filter(|v| v.abs() <= 100.0)
                        .map(|v| v.round() as i32)
                        .ok_or_else(|| malformed(format, format!("SCROLL {key} {v}"))),
                }
            };
            let (dx, dy) = (notch("dx")?, -notch("dy")?);
            b.push(Action::Scroll { at: None, dx, dy }.into());
        }
        "TYPING" => b.push(
            Action::Type {
                text: text("text")?,
                paste: false,
            }
            .into(),
        ),
        "PRESS" => {
            let combo = keys::join(&[text("key")?]).map_err(|e| malformed(format, e))?;
            b.push(Action::Key { combo }.into());
        }
        "HOTKEY" => {
            let list = params
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(format, "HOTKEY needs a list \"keys\""))?;
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            if names.len() != list.len() {
                return Err(malformed(format, "HOTKEY's keys are not all strings"));
            }
            let combo = keys::join(&names).map_err(|e| malformed(format, e))?;
            b.push(Action::Key { combo }.into());
        }
        "WAIT" => b.push(Action::Wait { ms: WAIT_MS }.into()),
        "DONE" => b.push(AgentAction::Terminate { success: true }),
        "FAIL" => b.push(AgentAction::Terminate { success: false }),
        other => return Err(unsupported(format, format!("the action type {other}"))),
    }
    Ok(())
}

pub(crate) fn emit(
    format: &'static str,
    reply: &Reply,
    frame: &Frame,
) -> Result<String, FormatError> {
    let scale = Scale::screen(frame);
    let at = |p: &NormPoint| {
        let (x, y) = scale.to_units(*p);
        json!({"x": x, "y": y})
    };
    let action = |kind: &str, params: Value| json!({"action_type": kind, "parameters": params});
    let mut items = Vec::new();
    for a in &reply.actions {
        match a {
            AgentAction::Desktop { action: desktop } => match desktop {
                Action::Move { at: p } => items.push(action("MOVE_TO", at(p))),
                Action::Click {
                    at: p,
                    button,
                    count,
                } => {
                    let mut params = at(p);
                    let button = match button {
                        MouseButton::Left => "left",
                        MouseButton::Right => "right",
                        MouseButton::Middle => "middle",
                    };
                    params["button"] = json!(button);
                    params["num_clicks"] = json!(count);
                    items.push(action("CLICK", params));
                }
                Action::Drag {
                    from,
                    to,
                    button: MouseButton::Left,
                } => {
                    items.push(action("MOVE_TO", at(from)));
                    items.push(action("DRAG_TO", at(to)));
                }
                Action::Scroll { at: None, dx, dy } => {
                    items.push(action("SCROLL", json!({"dx": dx, "dy": -dy})))
                }
                Action::Type { text, .. } => items.push(action("TYPING", json!({"text": text}))),
                Action::Key { combo } => {
                    let names = keys::pyautogui_names(combo);
                    items.push(match names.as_slice() {
                        [one] => action("PRESS", json!({"key": one})),
                        _ => action("HOTKEY", json!({"keys": names})),
                    });
                }
                Action::Wait { ms } if *ms == WAIT_MS => items.push(json!("WAIT")),
                other => return Err(unsupported(format, other.describe())),
            },
            AgentAction::Terminate { success } => {
                items.push(json!(if *success { "DONE" } else { "FAIL" }))
            }
            AgentAction::Answer { .. } => return Err(unsupported(format, "a text answer")),
            AgentAction::CallUser => return Err(unsupported(format, "handing over to the person")),
        }
    }
    let body = match items.as_slice() {
        [] => return Err(unsupported(format, "a reply without actions")),
        [one] => one.clone(),
        _ => Value::Array(items),
    };
    Ok(fenced(reply.thought.as_deref(), "json", &body.to_string()))
}
