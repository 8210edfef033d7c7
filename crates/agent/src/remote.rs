//! A policy served elsewhere: any OpenAI-compatible endpoint (vLLM serving a Qwen3-VL, another
//! ClawDesk), asked for log-probabilities and, where the server offers them (vLLM's
//! `return_tokens_as_token_ids`, which ClawDesk's server also honours), the token ids, so the
//! steps it takes are trainable here. A new adapter is pushed to the server with vLLM's dynamic
//! LoRA loading (`/v1/load_lora_adapter`) and named in the requests that follow.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use clawdesk_model::chat::{Message, Part};
use clawdesk_model::generate::Finish;
use clawdesk_model::preprocess::smart_resize;
use serde_json::{Value, json};

use crate::error::AgentError;
use crate::generation::{Generated, PolicyRequest};

/// Where the remote policy is and how to talk to it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The API root, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The served model's name (the base; a pushed adapter is named instead while active).
    pub model: String,
    /// Sent as a bearer token when set; never shown in debug output.
    pub api_key: Option<String>,
    /// How long one request may take in all before it fails (300 seconds by default).
    pub timeout: Duration,
    /// How the server's processor resizes images (Qwen3-VL's: factor 32, 65,536 to
    /// 16,777,216 pixels), for formats that address the resized image's pixels.
    pub resize_factor: u32,
    /// The fewest pixels the server's processor resizes an image to.
    pub min_pixels: usize,
    /// The most pixels the server's processor resizes an image to.
    pub max_pixels: usize,
}

/// Debug output leaves the API key out: configs end up in logs.
impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("resize_factor", &self.resize_factor)
            .field("min_pixels", &self.min_pixels)
            .field("max_pixels", &self.max_pixels)
            .finish()
    }
}

/// The largest reply body read from a remote policy; a chat completion with log-probabilities
/// for a few thousand tokens is well under it.
const MAX_REPLY_BYTES: usize = 32 << 20;

impl RemoteConfig {
    /// A config for the API root `base_url` (a trailing `/` is dropped) and the served `model`,
    /// with no API key, a 300-second timeout and Qwen3-VL's resizing.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(300),
            resize_factor: 32,
            min_pixels: 65_536,
            max_pixels: 16_777_216,
        }
    }
}

/// The remote policy; its active adapter is the model name it asks for.
#[derive(Debug)]
pub struct RemotePolicy {
    config: RemoteConfig,
    http: reqwest::Client,
    /// The adapter version and its served name, when one was pushed.
    active: Mutex<Option<(i64, String)>>,
}

fn remote_error(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::Remote(format!("{what}: {e}"))
}

impl RemotePolicy {
    /// A client for `config`; no request is sent until the first generation.
    pub fn new(config: RemoteConfig) -> Result<Self, AgentError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| remote_error("an HTTP client", e))?;
        Ok(Self {
            config,
            http,
            active: Mutex::new(None),
        })
    }

    fn active(&self) -> Option<(i64, String)> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, AgentError> {
        let url = format!("{}/{path}", self.config.base_url);
        let mut request = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| remote_error(&url, e))?;
        let status = response.status();
        let bytes = read_capped(response, MAX_REPLY_BYTES)
            .await
            .map_err(|e| remote_error(&url, e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(AgentError::Remote(format!(
                "{url} answered {status}: {}",
                text.chars().take(500).collect::<String>()
            )));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// One generation: the request's messages with its images as PNG data URLs.
    pub async fn generate(&self, request: &PolicyRequest) -> Result<Generated, AgentError> {
        let start = Instant::now();
        let images = request
            .images
            .iter()
            .map(|image| {
                // The fast PNG settings screenshots are stored with.
                let png = clawdesk_png::encode(&image.to_rgba8())
                    .map_err(|e| remote_error("encoding a screenshot", e))?;
                Ok(format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                ))
            })
            .collect::<Result<Vec<_>, AgentError>>()?;
        let messages = openai_messages(&request.messages, &images)?;
        let active = self.active();
        let model = active
            .as_ref()
            .map_or(self.config.model.as_str(), |(_, name)| name.as_str());
        let s = &request.sampling;
        let mut body = json!({
            "model": model,
            "messages": messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "logprobs": true,
            "return_tokens_as_token_ids": true,
        });
        if s.top_logprobs > 0 {
            body["top_logprobs"] = json!(s.top_logprobs.min(20));
        }
        if s.top_k > 0 {
            body["top_k"] = json!(s.top_k);
        }
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(request.tools.clone());
        }
        if !request.stop_text.is_empty() {
            body["stop"] = json!(request.stop_text);
        }
        let answer = self.post("chat/completions", &body).await?;
        let mut generated = parse_completion(&answer)?;
        generated.version = active.map(|(v, _)| v);
        generated.image_size = match request.images.last() {
            Some(image) => {
                let (h, w) = smart_resize(
                    image.height(),
                    image.width(),
                    self.config.resize_factor,
                    self.config.min_pixels,
                    self.config.max_pixels,
                )?;
                (w, h)
            }
            None => (0, 0),
        };
        generated.seconds = start.elapsed().as_secs_f64();
        Ok(generated)
    }

    /// Loads the PEFT adapter at `dir` on the server (vLLM's dynamic LoRA loading; the path
    /// must be readable by the server) and asks for it by name from now on.
    pub async fn activate(&self, version: i64, dir: &std::path::Path) -> Result<(), AgentError> {
        let name = format!("{}-v{version}", self.config.model);
        push_adapter(
            &self.http,
            &self.config.base_url,
            self.config.api_key.as_deref(),
            &name,
            dir,
        )
        .await?;
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, name));
        Ok(())
    }

    /// Asks for the base model again (the adapter stays loaded on the server).
    pub fn deactivate(&self) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A response body of at most `limit` bytes; a larger one is an error, not a memory spike.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("the reply is larger than {limit} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            return Err(format!("the reply is larger than {limit} bytes"));
        }
    }
    Ok(bytes)
}

/// `POST {base}/load_lora_adapter` with `{lora_name, lora_path}`, as vLLM takes it (started
/// with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` and `--enable-lora`).
pub async fn push_adapter(
    http: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
    name: &str,
    dir: &std::path::Path,
) -> Result<(), AgentError> {
    let url = format!("{}/load_lora_adapter", base_url.trim_end_matches('/'));
    let mut request = http
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({"lora_name": name, "lora_path": dir.display().to_string()}).to_string());
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| remote_error(&url, e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(AgentError::Remote(format!(
            "{url} refused adapter {name}: {status}: {}",
            text.chars().take(500).collect::<String>()
        )));
    }
    tracing::info!(%url, name, dir = %dir.display(), "adapter pushed");
    Ok(())
}

/// The messages in OpenAI's shape, each image placeholder replaced by the next data URL.
fn openai_messages(messages: &[Message], images: &[String]) -> Result<Vec<Value>, AgentError> {
    let mut next = images.iter();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let role = m.role.as_str();
        let parts = m
            .content
            .iter()
            .map(|p| match p {
                Part::Text { text } => Ok(json!({"type": "text", "text": text})),
                Part::Image => next
                    .next()
                    .map(|url| json!({"type": "image_url", "image_url": {"url": url}}))
                    .ok_or_else(|| {
                        AgentError::Remote("more image placeholders than images".into())
                    }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut message = json!({"role": role, "content": parts});
        if !m.tool_calls.is_empty() {
            message["tool_calls"] = m
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_{i}"), "type": "function", "function": {
                        "name": c.function.name, "arguments": c.function.arguments.to_string()}})
                })
                .collect();
        }
        out.push(message);
    }
    Ok(out)
}

/// The reply as the agent's parsers read it: the text, with any `tool_calls` the server split
/// off written back in Qwen's `<tool_call>` form; token ids when the server gave them.
pub fn parse_completion(answer: &Value) -> Result<Generated, AgentError> {
    let choice = answer
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| AgentError::Remote(format!("an answer without choices: {answer}")))?;
    let message = &choice["message"];
    let mut text = message["content"].as_str().unwrap_or_default().to_owned();
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let function = &call["function"];
        let arguments = match &function["arguments"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            other => other.clone(),
        };
        let block = json!({"name": function["name"], "arguments": arguments});
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("<tool_call>\n{block}\n</tool_call>"));
    }
    let entries = choice["logprobs"]["content"].as_array();
    let mut tokens = Vec::new();
    let mut logprobs = Vec::new();
    for entry in entries.into_iter().flatten() {
        let id = entry["token"]
            .as_str()
            .and_then(|t| t.strip_prefix("token_id:"))
            .and_then(|n| n.parse::<u32>().ok());
        let lp = entry["logprob"].as_f64();
        match (id, lp) {
            (Some(id), Some(lp)) => {
                tokens.push(id);
                logprobs.push(lp as f32);
            }
            // A server without token ids: the reply acts, but cannot be trained on here.
            _ => {
                tokens.clear();
                logprobs.clear();
                break;
            }
        }
    }
    let finish = match choice["finish_reason"].as_str() {
        Some("length") => Finish::MaxTokens,
        _ => Finish::Stop(tokens.last().copied().unwrap_or_default()),
    };
    let prompt_tokens = answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize;
    Ok(Generated {
        text,
        tokens,
        logprobs,
        top_logprobs: Vec::new(),
        finish,
        version: None,
        image_size: (0, 0),
        prompt_tokens,
        seconds: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawdesk_model::chat::Role;

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let mut config = RemoteConfig::new("http://127.0.0.1:9/v1", "m");
        config.api_key = Some("sk-very-secret-key".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret-key"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn a_completion_with_token_ids_and_tool_calls_reads_back() {
        let answer = json!({"choices": [{"message": {"content": "Clicking.", "tool_calls": [
            {"type": "function", "function": {"name": "computer_use",
             "arguments": "{\"action\": \"left_click\", \"coordinate\": [10, 20]}"}}]},
            "logprobs": {"content": [
                {"token": "token_id:5", "logprob": -0.5},
                {"token": "token_id:9", "logprob": -0.25}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 33}});
        let g = parse_completion(&answer).expect("parses");
        assert!(g.text.starts_with("Clicking.\n<tool_call>\n"), "{}", g.text);
        assert!(g.text.contains("\"coordinate\":[10,20]"), "{}", g.text);
        assert_eq!((g.tokens, g.logprobs), (vec![5, 9], vec![-0.5, -0.25]));
        assert_eq!(g.prompt_tokens, 33);
        // Without token ids the reply still acts but carries nothing to train on.
        let plain = json!({"choices": [{"message": {"content": "hi"},
            "logprobs": {"content": [{"token": "hi", "logprob": -0.1}]}}]});
        let g = parse_completion(&plain).expect("parses");
        assert!(g.tokens.is_empty() && g.logprobs.is_empty());
        assert!(parse_completion(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn messages_carry_their_images_in_order() {
        let messages = vec![
            Message::text(Role::System, "sys"),
            Message::images_then_text(Role::User, 2, "go"),
        ];
        let urls = vec!["data:a".to_owned(), "data:b".to_owned()];
        let out = openai_messages(&messages, &urls).expect("converts");
        assert_eq!(out[1]["content"][0]["image_url"]["url"], "data:a");
        assert_eq!(out[1]["content"][1]["image_url"]["url"], "data:b");
        assert_eq!(out[1]["content"][2]["text"], "go");
        assert!(openai_messages(&messages, &urls[..1]).is_err());
    }
}
