//! `clawdesk agent parse`: a model's reply, read from stdin, as the actions the agent would
//! take and the pyautogui code they amount to — for seeing why a model's output did what it did.

use std::io::Read;

use anyhow::Context;
use clap::Args;
use clawdesk_agent::{ActionFormat, AgentAction, Frame, Reply};

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The reply's action format: qwen3-vl, qwen2.5-vl, ui-tars-1000, ui-tars-pixels,
    /// pyautogui, computer-13, opencua, practice.
    #[arg(long)]
    format: ActionFormat,
    /// The screenshot's size as the model saw it, after its processor resized it, WIDTHxHEIGHT
    /// (the pixel formats, qwen2.5-vl, ui-tars-pixels and opencua, count in it). Default: the screen's.
    #[arg(long, value_parser = size)]
    image: Option<(u32, u32)>,
    /// The screen's size in pixels, WIDTHxHEIGHT: what pyautogui addresses.
    #[arg(long, value_parser = size, default_value = "1920x1080")]
    screen: (u32, u32),
    /// Print one JSON object (thought, actions, pyautogui) instead of the readable form.
    #[arg(long)]
    json: bool,
}

/// A size written `WIDTHxHEIGHT`, both at least 1.
fn size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT, e.g. 1920x1080"))?;
    let dim = |s: &str| match s.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} in {text:?} is not a positive whole number")),
    };
    Ok((dim(w)?, dim(h)?))
}

/// The pyautogui lines of each action; an action pyautogui cannot do (an answer in words,
/// handing over to the person) becomes a comment that says so.
fn pyautogui_lines(reply: &Reply, frame: &Frame) -> Vec<String> {
    let mut lines = Vec::new();
    for action in &reply.actions {
        let one = Reply {
            thought: None,
            actions: vec![action.clone()],
        };
        match ActionFormat::PyAutoGui.emit(&one, frame) {
            Ok(code) => lines.extend(
                code.lines()
                    .filter(|l| !l.trim_start().starts_with("```"))
                    .map(str::to_owned),
            ),
            Err(_) => lines.push(match action {
                AgentAction::Answer { text } => format!("# answer: {text:?}"),
                AgentAction::CallUser => "# hand over to the person".to_owned(),
                other => format!("# no pyautogui form: {}", serde_json::json!(other)),
            }),
        }
    }
    lines
}

pub fn run(a: ParseArgs) -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the reply from stdin")?;
    let frame = Frame {
        image: a.image.unwrap_or(a.screen),
        screen: a.screen,
        pointer: None,
    };
    let reply = a
        .format
        .parse(&text, &frame)
        .with_context(|| format!("the reply is not a {} action", a.format))?;
    let code = pyautogui_lines(&reply, &frame);
    if a.json {
        let out = serde_json::json!({
            "thought": reply.thought,
            "actions": reply.actions,
            "pyautogui": code,
        });
        println!("{out}");
        return Ok(());
    }
    if let Some(thought) = &reply.thought {
        println!("thought: {thought}");
    }
    println!("actions:");
    for action in &reply.actions {
        println!("  {}", serde_json::json!(action));
    }
    println!("pyautogui:");
    for line in code {
        println!("  {line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_say_why() {
        assert_eq!(size("1920x1080"), Ok((1920, 1080)));
        assert_eq!(size("800X600"), Ok((800, 600)));
        assert!(size("1920").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(size("0x10").unwrap_err().contains("positive"));
    }

    #[test]
    fn a_ui_tars_reply_becomes_screen_pixels_and_an_answer_a_comment() {
        let frame = Frame {
            image: (1000, 500),
            screen: (2000, 1000),
            pointer: None,
        };
        let reply = ActionFormat::UiTarsPixels
            .parse(
                "Thought: the button.\nAction: click(start_box='(100,50)')\n\nfinished(content='ok')",
                &frame,
            )
            .expect("parses");
        let lines = pyautogui_lines(&reply, &frame);
        assert_eq!(lines[0], "pyautogui.click(200, 100)", "{lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("# answer")), "{lines:?}");
    }
}
