//! The model's reply in OpenAI's shape: `<tool_call>` blocks (Qwen's tool format) as
//! `tool_calls`, token log-probabilities, and, while streaming, how much text is safe to send
//! before a stop string or a tool call could still begin.

use serde_json::{Value, json};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The reply split into the text a person reads and the tool calls a client runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The text around the tool calls; `None` only when tool calls are all there is.
    pub content: Option<String>,
    /// OpenAI's `tool_calls` entries (arguments as a JSON string).
    pub tool_calls: Vec<Value>,
}

/// Splits `text` at well-formed `<tool_call>{"name": .., "arguments": ..}</tool_call>` blocks;
/// a block that does not parse stays in the text, so nothing the model wrote is lost.
pub fn split(text: &str, tools_offered: bool, id_prefix: &str) -> Reply {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut rest = text;
    while tools_offered && let Some(open) = rest.find(OPEN) {
        let after = &rest[open + OPEN.len()..];
        let Some(close) = after.find(CLOSE) else {
            break;
        };
        let call: Option<Value> = serde_json::from_str(after[..close].trim()).ok();
        match call
            .as_ref()
            .and_then(|c| Some((c.get("name")?.as_str()?, c)))
        {
            Some((name, call)) => {
                content.push_str(&rest[..open]);
                let arguments = call.get("arguments").cloned().unwrap_or(json!({}));
                tool_calls.push(json!({
                    "id": format!("{id_prefix}_{}", tool_calls.len()),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()},
                }));
            }
            None => content.push_str(&rest[..open + OPEN.len() + close + CLOSE.len()]),
        }
        rest = &after[close + CLOSE.len()..];
    }
    content.push_str(rest);
    let content = if tool_calls.is_empty() {
        content
    } else {
        content.trim_end().to_owned()
    };
    Reply {
        content: (!content.is_empty() || tool_calls.is_empty()).then_some(content),
        tool_calls,
    }
}

/// How many bytes of `text` (the reply so far) may be streamed: not past the start of a
/// stop string or a tool call, nor into a tail that could be the beginning of one, nor into
/// an unfinished UTF-8 character.
pub fn safe_prefix(text: &str, held: &[&str]) -> usize {
    let mut end = text.len();
    if text.ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    for pattern in held.iter().filter(|p| !p.is_empty()) {
        if let Some(at) = text.find(pattern) {
            end = end.min(at);
        }
        for k in (1..pattern.len()).rev() {
            if pattern.is_char_boundary(k) && text.ends_with(&pattern[..k]) {
                end = end.min(text.len() - k);
                break;
            }
        }
    }
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The text stops and tool calls hold back while streaming.
pub fn held_patterns(stops: &[String], tools_offered: bool) -> Vec<&str> {
    let mut held: Vec<&str> = stops.iter().map(String::as_str).collect();
    if tools_offered {
        held.push(OPEN);
    }
    held
}

/// OpenAI's `logprobs.content`: each token with its log-probability and alternatives.
pub fn logprobs_json(
    tokens: &[u32],
    logprobs: &[f32],
    top: &[Vec<(u32, f32)>],
    top_n: usize,
    token_text: &dyn Fn(u32) -> String,
) -> Value {
    let entry = |id: u32, lp: f32| {
        let text = token_text(id);
        json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
    };
    let content: Vec<Value> = tokens
        .iter()
        .zip(logprobs)
        .enumerate()
        .map(|(i, (&id, &lp))| {
            let mut e = entry(id, lp);
            let alternatives: Vec<Value> = top
                .get(i)
                .map(|alts| alts.iter().take(top_n).map(|&(t, l)| entry(t, l)).collect())
                .unwrap_or_default();
            e["top_logprobs"] = Value::Array(alternatives);
            e
        })
        .collect();
    json!({ "content": content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_come_out_of_the_text() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        let reply = split(text, true, "call_x");
        assert_eq!(reply.content.as_deref(), Some("Let me check."));
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0]["function"]["name"], "weather");
        assert_eq!(
            reply.tool_calls[0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(reply.tool_calls[0]["id"], "call_x_0");
        // Without tools offered, or when the block is not JSON, the text is left whole.
        assert_eq!(split(text, false, "c").content.as_deref(), Some(text));
        let broken = "a <tool_call>not json</tool_call> b";
        assert_eq!(split(broken, true, "c").content.as_deref(), Some(broken));
        assert!(split(broken, true, "c").tool_calls.is_empty());
        let only = split("<tool_call>{\"name\": \"f\"}</tool_call>", true, "c");
        assert_eq!(only.content, None);
        assert_eq!(only.tool_calls[0]["function"]["arguments"], "{}");
    }

    #[test]
    fn streaming_holds_back_what_may_become_a_stop() {
        let held = ["END", "<tool_call>"];
        assert_eq!(safe_prefix("hello", &held), 5);
        assert_eq!(safe_prefix("hello E", &held), 6);
        assert_eq!(safe_prefix("hello EN", &held), 6);
        assert_eq!(safe_prefix("hello END more", &held), 6);
        assert_eq!(safe_prefix("call <tool", &held), 5);
        assert_eq!(safe_prefix("é\u{FFFD}", &held), 'é'.len_utf8());
        assert_eq!(safe_prefix("plain", &[]), 5);
    }

    #[test]
    fn logprobs_carry_alternatives() {
        let value = logprobs_json(
            &[5, 6],
            &[-0.5, -0.1],
            &[vec![(5, -0.5), (9, -1.5)], vec![(6, -0.1)]],
            1,
            &|id| format!("t{id}"),
        );
        let content = value["content"].as_array().expect("list");
        assert_eq!(content[0]["token"], "t5");
        assert_eq!(content[0]["top_logprobs"].as_array().map(Vec::len), Some(1));
        assert_eq!(content[1]["bytes"], json!([116, 54]));
    }
}
