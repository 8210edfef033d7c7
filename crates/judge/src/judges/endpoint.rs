//! A judge behind any OpenAI-compatible chat-completions endpoint with vision: vLLM, SGLang,
//! Ollama, OpenAI. Votes are sampled as parallel requests, each retried on transient faults
//! with exponential backoff and full jitter.

use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, try_join_all};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::case::StepCase;
use crate::error::{JudgeError, Result};
use crate::image::{EncodedImage, encode_for_endpoint};
use crate::judge::{Judge, Judgement, VoteSettings};
use crate::parse::shorten;
use crate::prompt::{JudgePrompts, PromptPart, Screen};
use crate::secret::{ApiKey, Secret};
use crate::votes::Vote;

/// How a vote's request is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Tries per vote, the first included.
    pub attempts: u32,
    /// The first backoff's ceiling; each retry doubles it.
    #[serde(with = "crate::millis")]
    pub base: Duration,
    /// No wait is longer, whatever the server's `Retry-After` says.
    #[serde(with = "crate::millis")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `retry` (1 = the first retry): the server's `Retry-After` when given,
    /// else a uniformly random time up to `base·2^(retry-1)` ("full jitter"), so that many
    /// clients rate-limited at once do not come back at once.
    pub fn delay(&self, retry: u32, error: &JudgeError) -> Duration {
        if let Some(after) = error.retry_after() {
            return after.min(self.max);
        }
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

/// Where the endpoint is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    /// The API root, e.g. `http://127.0.0.1:8000/v1` or `https://api.openai.com/v1`.
    pub base_url: String,
    /// The model name sent with each request; it must be given.
    pub model: String,
    /// Where the API key comes from, if the endpoint needs one.
    pub api_key: ApiKey,
    /// The whole request, answer included.
    #[serde(with = "crate::millis")]
    pub timeout: Duration,
    #[serde(with = "crate::millis")]
    /// How long opening the connection may take.
    pub connect_timeout: Duration,
    /// Answers larger than this are refused (and retried) rather than read into memory.
    pub max_response_bytes: usize,
    /// How each vote's request is retried on transient faults.
    pub retry: RetryPolicy,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            api_key: ApiKey::None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 32 << 20,
            retry: RetryPolicy::default(),
        }
    }
}

/// The endpoint judge.
pub struct EndpointJudge {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as shown in errors and stored verdicts: no credentials, no query.
    shown: String,
    config: EndpointConfig,
    settings: VoteSettings,
    prompts: JudgePrompts,
    key: Option<Secret>,
    name: String,
}

impl EndpointJudge {
    /// Checks the settings and looks up the API key.
    pub async fn new(
        config: EndpointConfig,
        settings: VoteSettings,
        prompts: JudgePrompts,
    ) -> Result<Self> {
        settings.validate()?;
        if config.model.trim().is_empty() {
            return Err(JudgeError::Config(
                "the judge endpoint needs a model name".into(),
            ));
        }
        if config.retry.attempts == 0 {
            return Err(JudgeError::Config(
                "retry attempts must be at least 1".into(),
            ));
        }
        let base = config.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/chat/completions")).map_err(|e| {
            JudgeError::Config(format!(
                "judge endpoint {:?} is not a URL: {e}",
                config.base_url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(JudgeError::Config(format!(
                "judge endpoint {} must be http or https",
                config.base_url
            )));
        }
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        let shown = shown.to_string();
        let key = config.api_key.resolve().await?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("ClawDesk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| JudgeError::Config(format!("HTTP client: {e}")))?;
        let name = format!("{} @ {}", config.model, shown);
        Ok(Self {
            client,
            url,
            shown,
            config,
            settings,
            prompts,
            key,
            name,
        })
    }

    /// The request body shared by a step's votes.
    /// `screens` is `None` for a conversation turn, whose prompt places no screenshots.
    fn body(&self, parts: &[PromptPart], screens: Option<&(EncodedImage, EncodedImage)>) -> Value {
        let content: Vec<Value> = parts
            .iter()
            .filter_map(|part| match part {
                PromptPart::Text(text) => Some(json!({"type": "text", "text": text})),
                PromptPart::Image(screen) => {
                    let (before, after) = screens?;
                    let image = match screen {
                        Screen::Before => before,
                        Screen::After => after,
                    };
                    Some(json!({"type": "image_url", "image_url": {"url": image.data_url}}))
                }
            })
            .collect();
        json!({
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "n": 1,
            "stream": false,
        })
    }

    /// One vote, retried on transient faults.
    async fn vote(&self, body: &Bytes, step: i64, index: usize) -> Result<Vote> {
        let mut retry = 0;
        loop {
            match self.request(body).await {
                Ok(answer) => return Ok(Vote::from_answer(&answer)),
                Err(e) if e.is_transient() && retry + 1 < self.config.retry.attempts => {
                    retry += 1;
                    let wait = self.config.retry.delay(retry, &e);
                    tracing::debug!(step, vote = index, retry, ?wait, error = %e, "judge request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request; the answer's text.
    async fn request(&self, body: &Bytes) -> Result<String> {
        let endpoint = || self.shown.clone();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose());
        }
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                JudgeError::Timeout {
                    endpoint: endpoint(),
                    timeout: self.config.timeout,
                }
            } else {
                JudgeError::Network {
                    endpoint: endpoint(),
                    // Without the URL: reqwest's text names it, and ours is shown already.
                    reason: error_chain(&e.without_url()),
                }
            }
        };
        let mut response = request.send().await.map_err(net)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let limit = self.config.max_response_bytes;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(net)? {
            if bytes.len() + chunk.len() > limit {
                return Err(JudgeError::Protocol {
                    endpoint: endpoint(),
                    reason: format!("the answer is larger than {limit} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(JudgeError::Status {
                endpoint: endpoint(),
                status: status.as_u16(),
                body: shorten(&String::from_utf8_lossy(&bytes), 300),
                retry_after,
            });
        }
        completion_text(&bytes).map_err(|reason| JudgeError::Protocol {
            endpoint: endpoint(),
            reason,
        })
    }
}

impl Judge for EndpointJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn judge<'a>(&'a self, case: &'a StepCase) -> BoxFuture<'a, Result<Judgement>> {
        Box::pin(async move {
            let parts = self.prompts.render(case, self.settings.hints)?;
            let (budget, encoding, step) = (
                self.settings.pixel_budget,
                self.settings.encoding,
                case.step.0,
            );
            let screens = if case.conversation.is_some() {
                None
            } else {
                let (before, after) = (case.before_png.clone(), case.after_png.clone());
                Some(
                    tokio::task::spawn_blocking(move || {
                        Ok::<_, JudgeError>((
                            encode_for_endpoint(&before, budget, encoding, step)?,
                            encode_for_endpoint(&after, budget, encoding, step)?,
                        ))
                    })
                    .await
                    .map_err(|e| JudgeError::Task(e.to_string()))??,
                )
            };
            let body = Bytes::from(self.body(&parts, screens.as_ref()).to_string());
            let votes =
                try_join_all((0..self.settings.votes).map(|i| self.vote(&body, step, i))).await?;
            Ok(Judgement::from_votes(votes))
        })
    }
}

/// The assistant's text in a chat-completions answer. `Err` names what is wrong with the body.
pub fn completion_text(body: &[u8]) -> std::result::Result<String, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not JSON ({e}); it starts {:?}",
            shorten(&String::from_utf8_lossy(&body[..body.len().min(512)]), 80)
        )
    })?;
    if let Some(error) = value.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string());
        return Err(format!("an error object: {}", shorten(&message, 200)));
    }
    let choice = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("no choices")?;
    let message = choice.get("message").ok_or("a choice without a message")?;
    Ok(match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        // Some servers send content as parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        // null: a refusal or a tool call; no text, so an invalid vote rather than a retry.
        Some(Value::Null) | None => String::new(),
        Some(other) => return Err(format!("message content is {other}, not text")),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_text_reads_the_usual_shapes() {
        let ok = br#"{"choices":[{"message":{"role":"assistant","content":"\\boxed{1}"}}]}"#;
        assert_eq!(completion_text(ok).unwrap(), "\\boxed{1}");
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(completion_text(parts).unwrap(), "ab");
        let null = br#"{"choices":[{"message":{"content":null}}]}"#;
        assert_eq!(completion_text(null).unwrap(), "");
    }

    #[test]
    fn completion_text_names_what_is_wrong() {
        for (body, says) in [
            (&b"<html>502 Bad Gateway</html>"[..], "not JSON"),
            (br#"{"choices":[]}"#, "no choices"),
            (br#"{"object":"chat.completion"}"#, "no choices"),
            (
                br#"{"error":{"message":"model not found"}}"#,
                "model not found",
            ),
            (br#"{"choices":[{"text":"x"}]}"#, "without a message"),
            (br#"{"choices":[{"message":{"content":7}}]}"#, "not text"),
            (b"\xff\xfe{\"choices\"", "not JSON"),
        ] {
            let err = completion_text(body).unwrap_err();
            assert!(err.contains(says), "{err} lacks {says}");
        }
    }

    #[test]
    fn settings_read_from_json_with_defaults_and_no_key_inside() {
        let config: EndpointConfig = serde_json::from_value(json!({
            "base_url": "https://api.openai.com/v1",
            "model": "gpt-4.1-mini",
            "api_key": {"from": "env", "var": "OPENAI_API_KEY"},
            "timeout": 5000
        }))
        .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(
            config.api_key,
            ApiKey::Env {
                var: "OPENAI_API_KEY".into()
            }
        );
        let back = serde_json::to_value(&config).unwrap();
        assert_eq!(back["timeout"], 5000);
        assert_eq!(back["retry"]["base"], 500);
    }

    #[test]
    fn backoff_grows_with_jitter_and_obeys_retry_after() {
        let policy = RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        let net = JudgeError::Network {
            endpoint: "x".into(),
            reason: "reset".into(),
        };
        for retry in 1..6 {
            let ceiling = Duration::from_millis((100u64 << (retry - 1)).min(350));
            let waits: Vec<Duration> = (0..200).map(|_| policy.delay(retry, &net)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling));
            // Jittered: not all the same.
            assert!(waits.iter().any(|w| *w != waits[0]));
        }
        let limited = JudgeError::Status {
            endpoint: "x".into(),
            status: 429,
            body: String::new(),
            retry_after: Some(Duration::from_millis(200)),
        };
        assert_eq!(policy.delay(1, &limited), Duration::from_millis(200));
        let long = JudgeError::Status {
            endpoint: "x".into(),
            status: 503,
            body: String::new(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(policy.delay(1, &long), Duration::from_millis(350));
    }
}
