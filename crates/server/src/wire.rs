//! The chat-completions request as clients send it, read leniently where OpenAI is lenient
//! (content as a string or parts, `stop` as a string or a list), plus the session fields
//! that make a served turn trainable.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// vLLM's extension; OpenAI has none.
    pub top_k: Option<usize>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<usize>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    pub n: Option<u32>,
    /// vLLM's extension: tokens in `logprobs` as `token_id:<id>`, which a remote trainer needs.
    #[serde(default)]
    pub return_tokens_as_token_ids: bool,
    /// The same as the `X-Session-Id`, `X-Turn-Type` and `X-Session-Done` headers.
    pub session_id: Option<String>,
    pub turn_type: Option<String>,
    pub session_done: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallIn>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ContentPart {
    #[serde(rename = "text")]
    Text { text: String },
    #[serde(rename = "image_url")]
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ImageUrl {
    Object { url: String },
    Bare(String),
}

impl ImageUrl {
    pub fn url(&self) -> &str {
        match self {
            ImageUrl::Object { url } | ImageUrl::Bare(url) => url,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    pub function: FunctionIn,
}

#[derive(Debug, Deserialize)]
pub struct FunctionIn {
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
