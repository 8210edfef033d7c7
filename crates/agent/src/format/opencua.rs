//! OpenCUA's replies (OpenCUA-7B and -32B, built on Qwen2.5-VL): `## Thought:` and `## Action:`
//! in words, then `## Code:` with a fenced block of pyautogui calls in the resized image's
//! pixels, plus `computer.triple_click(x, y)`, `computer.terminate(status=...)` and
//! `computer.wait()`. The last fenced block is the code, as OpenCUA's own agent reads it.

use clawdesk_desktop::{Action, NormPoint};

use super::coords::Scale;
use super::pyautogui::{WAIT_MS, click_call, drag_calls, one_call};
use super::pycall::{Call, Lit, Stmt, quote, statements};
use super::{AgentAction, Builder, Frame, Reply, keys, malformed, thought, unsupported};
use crate::FormatError;

/// The last fenced block of a reply and the text before it.
fn last_block(text: &str) -> Option<(&str, &str)> {
    let close = text.rfind("```")?;
    let open = text[..close].rfind("```")?;
    let body = &text[open + 3..close];
    // Skip the language tag (python, code, or none) on the opening line.
    let body = match body.find('\n') {
        Some(nl) if body[..nl].trim().chars().all(|c| c.is_ascii_alphanumeric()) => &body[nl + 1..],
        _ => body,
    };
    Some((&text[..open], body))
}

/// The words before the code, without the `## Code:` header that introduces it.
fn words_before(before: &str) -> Option<String> {
    let trimmed = before.trim_end();
    let trimmed = trimmed.strip_suffix("## Code:").unwrap_or(trimmed);
    thought(trimmed)
}

pub(crate) fn parse(format: &'static str, text: &str, frame: &Frame) -> Result<Reply, FormatError> {
    let Some((before, code)) = last_block(text) else {
        return Err(FormatError::NoAction { format });
    };
    let stmts = statements(code).map_err(|e| malformed(format, e))?;
    let scale = Scale::image(frame);
    let mut b = Builder::new(format, frame);
    for stmt in stmts {
        let call = match stmt {
            Stmt::Call(call) => call,
            Stmt::Name(word) => return Err(malformed(format, format!("the bare name {word:?}"))),
        };
        match call.name.as_str() {
            "computer.terminate" => {
                let success = match call.arg(0, "status").and_then(Lit::text) {
                    Some("success") => true,
                    Some("failure" | "fail") => false,
                    other => {
                        return Err(malformed(
                            format,
                            format!("terminate with status {other:?}"),
                        ));
                    }
                };
                b.push(AgentAction::Terminate { success });
            }
            "computer.wait" => b.push(Action::Wait { ms: WAIT_MS }.into()),
            "computer.triple_click" => {
                let as_pyautogui = Call {
                    name: "tripleClick".into(),
                    ..call.clone()
                };
                one_call(format, &as_pyautogui, scale, &mut b)?;
            }
            name if name.starts_with("computer.") => {
                return Err(unsupported(format, format!("the call {name}")));
            }
            _ => {
                one_call(format, &call, scale, &mut b)?;
                fold_scroll_into_move(&mut b);
            }
        }
    }
    b.finish(words_before(before))
}

/// OpenCUA scrolls where the pointer was just moved: `moveTo(x, y)` then `scroll(n)`.
fn fold_scroll_into_move(b: &mut Builder) {
    let n = b.actions.len();
    if n < 2 {
        return;
    }
    if let (
        AgentAction::Desktop {
            action: Action::Move { at },
        },
        AgentAction::Desktop {
            action: Action::Scroll { at: None, dx, dy },
        },
    ) = (&b.actions[n - 2], &b.actions[n - 1])
    {
        let folded = Action::Scroll {
            at: Some(*at),
            dx: *dx,
            dy: *dy,
        };
        b.actions.truncate(n - 2);
        b.actions.push(folded.into());
    }
}

pub(crate) fn emit(
    format: &'static str,
    reply: &Reply,
    frame: &Frame,
) -> Result<String, FormatError> {
    let scale = Scale::image(frame);
    let xy = |p: &NormPoint| {
        let (x, y) = scale.to_units(*p);
        format!("x={x}, y={y}")
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
                    "computer.triple_click",
                )),
                Action::Drag { from, to, button } => {
                    lines.extend(drag_calls(&xy(from), &xy(to), *button))
                }
                Action::Scroll { at, dx, dy } => {
                    if *dx == 0 && *dy == 0 {
                        return Err(unsupported(format, "a scroll by nothing"));
                    }
                    if *dx != 0 && *dy != 0 {
                        return Err(unsupported(format, "a scroll on both axes"));
                    }
                    if let Some(at) = at {
                        lines.push(format!("pyautogui.moveTo({})", xy(at)));
                    }
                    lines.push(if *dy != 0 {
                        format!("pyautogui.scroll({})", -dy)
                    } else {
                        format!("pyautogui.hscroll({dx})")
                    });
                }
                Action::Type { text, .. } => {
                    lines.push(format!("pyautogui.write(message={})", quote(text)))
                }
                Action::Key { combo } => {
                    let names = keys::pyautogui_names(combo);
                    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
                    let call = if quoted.len() == 1 { "press" } else { "hotkey" };
                    lines.push(format!("pyautogui.{call}(keys=[{}])", quoted.join(", ")));
                }
                Action::Wait { ms } if *ms == WAIT_MS => lines.push("computer.wait()".into()),
                Action::Wait { ms } => lines.push(format!("time.sleep({})", *ms as f64 / 1000.0)),
            },
            AgentAction::Terminate { success } => lines.push(format!(
                "computer.terminate(status='{}')",
                if *success { "success" } else { "failure" }
            )),
            AgentAction::Answer { .. } => return Err(unsupported(format, "a text answer")),
            AgentAction::CallUser => return Err(unsupported(format, "handing over to the person")),
        }
    }
    if lines.is_empty() {
        return Err(unsupported(format, "a reply without actions"));
    }
    let mut out = String::new();
    if let Some(t) = &reply.thought {
        out.push_str(t);
        out.push_str("\n\n");
    }
    out.push_str("## Code:\n```python\n");
    out.push_str(&lines.join("\n"));
    out.push_str("\n```");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawdesk_desktop::MouseButton;

    fn frame() -> Frame {
        Frame {
            image: (1932, 1092),
            screen: (1920, 1080),
            pointer: None,
        }
    }

    /// A reply in the shape of OpenCUA's training targets (L2: thought, action, code).
    #[test]
    fn reads_an_l2_reply() {
        let text = "## Thought:\nI need the search box first.\n\n## Action:\nClick the search box \
                    at the top.\n\n## Code:\n```python\npyautogui.click(x=966, y=546)\n\
                    pyautogui.write(message='cats')\npyautogui.press(keys=['enter'])\n```";
        let reply = parse("opencua", text, &frame()).expect("parses");
        let thought = reply.thought.as_deref().expect("a thought");
        assert!(thought.starts_with("## Thought:") && thought.ends_with("at the top."));
        assert_eq!(
            reply.actions,
            vec![
                Action::Click {
                    at: NormPoint::new(0.5, 0.5),
                    button: MouseButton::Left,
                    count: 1
                }
                .into(),
                Action::Type {
                    text: "cats".into(),
                    paste: false
                }
                .into(),
                Action::Key {
                    combo: "enter".into()
                }
                .into(),
            ]
        );
    }

    #[test]
    fn reads_computer_calls_and_a_scroll_where_the_pointer_moved() {
        let text = "## Code:\n```code\ncomputer.triple_click(x=0, y=1092)\n```";
        let reply = parse("opencua", text, &frame()).expect("parses");
        assert_eq!(
            reply.actions,
            vec![
                Action::Click {
                    at: NormPoint::new(0.0, 1.0),
                    button: MouseButton::Left,
                    count: 3
                }
                .into()
            ]
        );
        for (status, success) in [("success", true), ("failure", false), ("fail", false)] {
            let text = format!("```code\ncomputer.terminate(status='{status}')\n```");
            let reply = parse("opencua", &text, &frame()).expect("parses");
            assert_eq!(reply.actions, vec![AgentAction::Terminate { success }]);
        }
        let text = "```python\npyautogui.moveTo(x=483, y=273)\npyautogui.scroll(-3)\n```";
        let reply = parse("opencua", text, &frame()).expect("parses");
        assert_eq!(
            reply.actions,
            vec![
                Action::Scroll {
                    at: Some(NormPoint::new(0.25, 0.25)),
                    dx: 0,
                    dy: 3
                }
                .into()
            ]
        );
        assert!(
            parse(
                "opencua",
                "```code\ncomputer.terminate(status='maybe')\n```",
                &frame()
            )
            .is_err()
        );
        assert!(parse("opencua", "## Action:\nClick OK.", &frame()).is_err());
    }
}
