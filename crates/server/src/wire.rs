//! The chat-completions request as clients send it, read leniently where OpenAI is lenient
//! (content as a string or parts, `stop` as a string or a list), plus the session fields
//! that make a served turn trainable.

use serde::Deserialize;
use serde_json::Value;

/// A `POST /v1/chat/completions` body: OpenAI's fields, a few of vLLM's, and the session's.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The model id to answer with; when given, the served model's name or its loaded adapter's.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Send the reply as server-sent event chunks instead of one body.
    #[serde(default)]
    pub stream: bool,
    /// Settings for a streamed reply.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// The sampling temperature, 0 to 2; 0 picks the likeliest token.
    pub temperature: Option<f64>,
    /// Nucleus sampling: draw only from the likeliest tokens whose probabilities sum to this.
    pub top_p: Option<f64>,
    /// vLLM's extension; OpenAI has none.
    pub top_k: Option<usize>,
    /// The most tokens to generate (OpenAI's older name for `max_completion_tokens`).
    pub max_tokens: Option<usize>,
    /// The most tokens to generate; wins over `max_tokens` when both are given.
    pub max_completion_tokens: Option<usize>,
    /// Up to 4 strings that end the reply when generated; the reply stops before them.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// The sampling seed, for repeatable replies; random when absent.
    pub seed: Option<u64>,
    /// Return each generated token's log-probability.
    #[serde(default)]
    pub logprobs: bool,
    /// How many likeliest alternatives to return per token, 0 to 20; needs `logprobs`.
    pub top_logprobs: Option<usize>,
    /// The tools the model may call, each OpenAI's `{"type": "function", "function": ...}`.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// Whether and which tool to call: `"none"` withholds the tools, `"auto"` is the default;
    /// forcing a call (`"required"`, a named function) is refused.
    #[serde(default)]
    pub tool_choice: Option<Value>,
    /// How many replies to generate; only 1 is served.
    pub n: Option<u32>,
    /// OpenAI's presence penalty. Not served: anything but 0 is refused by name rather than
    /// ignored.
    pub presence_penalty: Option<f64>,
    /// OpenAI's frequency penalty; as `presence_penalty`, only 0 is served.
    pub frequency_penalty: Option<f64>,
    /// OpenAI's per-token bias on the logits; only an empty one is served.
    pub logit_bias: Option<Value>,
    /// OpenAI's output format; only `{"type": "text"}` is served (JSON mode is refused).
    pub response_format: Option<Value>,
    /// vLLM's extension: tokens in `logprobs` as `token_id:<id>`, which a remote trainer needs.
    #[serde(default)]
    pub return_tokens_as_token_ids: bool,
    /// The session the turn belongs to (OpenClaw-RL's field; the `X-Session-Id` header says the
    /// same).
    pub session_id: Option<String>,
    /// `main` or `side`, as in `X-Turn-Type`; the header wins when both are sent.
    pub turn_type: Option<String>,
    /// Whether this request ends the session, as in `X-Session-Done`; the header wins.
    pub session_done: Option<bool>,
    /// Every other field the client sent. None is served: each is refused by name (but the
    /// few that cannot change a reply), never accepted and ignored.
    #[serde(flatten)]
    pub unknown: serde_json::Map<String, Value>,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// End the stream with a chunk that carries the token usage and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// OpenAI's `stop`: one string or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop string.
    One(String),
    /// A list of stop strings.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings as a list, whichever form they came in.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it: `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message's text or parts; null on an assistant message that only calls tools.
    #[serde(default)]
    pub content: Option<Content>,
    /// The tool calls an assistant message made.
    #[serde(default)]
    pub tool_calls: Vec<ToolCallIn>,
}

/// A message's content: a plain string or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts, in order.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content, told apart by its `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ContentPart {
    /// A piece of text.
    #[serde(rename = "text")]
    Text {
        /// The part's text.
        text: String,
    },
    /// An image, by URL.
    #[serde(rename = "image_url")]
    ImageUrl {
        /// Where the image is.
        image_url: ImageUrl,
    },
}

/// An image part's URL: OpenAI's `{"url": ...}` object, or the bare string some clients send.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    /// OpenAI's form; other keys, such as `detail`, are ignored.
    Object {
        /// A `data:` URL (base64) or an `http(s)://` URL.
        url: String,
    },
    /// The URL as a plain string.
    Bare(String),
}

impl ImageUrl {
    /// The URL, whichever form it came in.
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url } | ImageUrl::Bare(url) => url,
        }
    }
}

/// A tool call in an earlier assistant message; only its function is read.
#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    /// The function called and its arguments.
    pub function: FunctionIn,
}

/// The function a tool call names.
#[derive(Debug, Deserialize)]
pub struct FunctionIn {
    /// The function's name.
    pub name: String,
    /// OpenAI sends a JSON string; some clients send the object itself.
    #[serde(default)]
    pub arguments: Value,
}

impl ChatMessage {
    /// The message's text parts joined, images left out (what a judge reads of it).
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    ContentPart::ImageUrl { .. } => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// How many image parts the message carries.
    pub fn image_count(&self) -> usize {
        match &self.content {
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter(|p| matches!(p, ContentPart::ImageUrl { .. }))
                .count(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_openai_client_sends() {
        let body = serde_json::json!({
            "model": "clawdesk",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "f", "arguments": "{\"x\": 1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ],
            "stop": "END", "logprobs": true, "top_logprobs": 2, "stream": true,
            "stream_options": {"include_usage": true}
        });
        let req: ChatRequest = serde_json::from_value(body).expect("parses");
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[1].image_count(), 1);
        assert_eq!(req.messages[1].text(), "what is this?");
        assert_eq!(req.messages[2].tool_calls[0].function.name, "f");
        assert_eq!(req.stop.map(Stop::into_vec), Some(vec!["END".to_string()]));
        assert!(req.stream && req.logprobs);
    }
}
