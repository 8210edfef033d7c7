//! What the server allows, with defaults safe for a laptop: loopback only, bounded bodies,
//! images and queue, and a deadline on every request.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ServerError;

/// The server's settings: where it listens, what it serves, and its limits.
#[derive(Clone)]
pub struct ServerConfig {
    /// The address and port to listen on (default 127.0.0.1:8000).
    pub bind: SocketAddr,
    /// Required as `Authorization: Bearer <token>` when set; must be set to bind anything but
    /// loopback.
    pub token: Option<String>,
    /// The model id `/v1/models` lists and requests name.
    pub model_name: String,
    /// The largest request body, and the largest fetched image, in bytes; more gets 413.
    pub max_body_bytes: usize,
    /// Images in one request; more gets 413.
    pub max_images: usize,
    /// Pixels per image (width × height), checked from the header before decoding.
    pub max_image_pixels: u64,
    /// Pixels of decoded images held by all requests in flight together (each decoded once,
    /// shared by the generation and a turn to be stored); a request that would go over gets
    /// 429, one whose images alone are over gets 413.
    pub max_pixels_in_flight: u64,
    /// Requests waiting for or using the model; one more gets 429.
    pub queue: usize,
    /// How long a reply may take once the request is read, waiting for the model included;
    /// past it the client gets a timeout error.
    pub request_timeout: Duration,
    /// How long a client may take to send its request body; counted before it takes a place
    /// in the queue.
    pub body_timeout: Duration,
    /// The folder `/v1/load_lora_adapter` may load adapters from (default: the store's
    /// `adapters` folder; without either, only adapters the store published).
    pub adapters_dir: Option<std::path::PathBuf>,
    /// Fetch `http(s)://` image URLs (off: only data URLs).
    pub allow_remote_images: bool,
    /// `max_tokens` when a request gives none, and the most it may ask for.
    pub default_max_tokens: usize,
    /// The most `max_tokens` a request may ask for.
    pub max_tokens_limit: usize,
}

/// Debug output leaves the token out: settings end up in logs.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("model_name", &self.model_name)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_images", &self.max_images)
            .field("max_image_pixels", &self.max_image_pixels)
            .field("max_pixels_in_flight", &self.max_pixels_in_flight)
            .field("queue", &self.queue)
            .field("request_timeout", &self.request_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("adapters_dir", &self.adapters_dir)
            .field("allow_remote_images", &self.allow_remote_images)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("max_tokens_limit", &self.max_tokens_limit)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            token: None,
            model_name: "clawdesk".into(),
            max_body_bytes: 32 << 20,
            max_images: 8,
            max_image_pixels: 4096 * 4096,
            // About a gigabyte of RGBA.
            max_pixels_in_flight: 256 << 20,
            queue: 32,
            request_timeout: Duration::from_secs(300),
            body_timeout: Duration::from_secs(30),
            adapters_dir: None,
            allow_remote_images: false,
            default_max_tokens: 1024,
            max_tokens_limit: 8192,
        }
    }
}

impl ServerConfig {
    /// Refuses settings that would expose the model or cannot work.
    pub fn check(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if let Some(token) = &self.token {
            // Clients' headers are trimmed before comparing, so a token with spaces around it
            // could never match.
            if token.trim() != token {
                return bad("the API token must not begin or end with white space".into());
            }
            if token.len() < 8 {
                return bad("the API token must be at least 8 characters".into());
            }
        }
        if !self.bind.ip().is_loopback() && self.token.is_none() {
            return bad(format!(
                "refusing to serve on {} without a token: anyone on the network could use the \
                 model and write training data; set a token (--token or CLAWDESK_API_TOKEN) or \
                 bind 127.0.0.1",
                self.bind
            ));
        }
        if self.max_pixels_in_flight < self.max_image_pixels
            || self.max_pixels_in_flight > u64::from(u32::MAX)
        {
            return bad(format!(
                "the pixels in flight ({}) must hold one image of the most pixels allowed ({}) and \
                 be at most {}",
                self.max_pixels_in_flight,
                self.max_image_pixels,
                u32::MAX
            ));
        }
        if self.queue == 0 || self.max_images == 0 || self.max_body_bytes < 1024 {
            return bad("queue, max images and body limit must be positive".into());
        }
        if self.default_max_tokens == 0 || self.default_max_tokens > self.max_tokens_limit {
            return bad(format!(
                "default max tokens {} must be 1 to the limit {}",
                self.default_max_tokens, self.max_tokens_limit
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_needs_a_token() {
        let open = ServerConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 8000)),
            ..ServerConfig::default()
        };
        let err = open.check().expect_err("refused");
        assert!(err.to_string().contains("without a token"), "{err}");
        let with_token = ServerConfig {
            token: Some("a-long-secret".into()),
            ..open.clone()
        };
        with_token.check().expect("a token makes it fine");
        let short = ServerConfig {
            token: Some("abc".into()),
            ..open
        };
        assert!(short.check().is_err());
        let padded = ServerConfig {
            token: Some("a-long-secret\n".into()),
            ..ServerConfig::default()
        };
        assert!(padded.check().is_err(), "a token that could never match");
        ServerConfig::default()
            .check()
            .expect("loopback needs none");
    }
}
