//! What one generation asks and answers, the same for the local model and a remote endpoint
//! (both backends of [`crate::Policy`] take a [`PolicyRequest`] and give a [`Generated`]).

use std::sync::Arc;

use clawdesk_model::chat::Message;
use clawdesk_model::generate::{Finish, Sampling};
use image::DynamicImage;
use tokio::sync::mpsc;

/// One generation asked of the policy.
#[derive(Debug, Clone)]
pub struct PolicyRequest {
    /// The conversation; each image part takes the next of `images`.
    pub messages: Vec<Message>,
    /// Tool schemas rendered into the system prompt (the agent's `computer_use`).
    pub tools: Vec<serde_json::Value>,
    /// Shared, so that whoever also keeps them (a turn to be stored) holds no second copy.
    pub images: Vec<Arc<DynamicImage>>,
    /// How tokens are drawn (temperature, top-p, top-k, seed, the token limit); a local
    /// policy given no stop tokens uses the processor's.
    pub sampling: Sampling,
    /// Text that ends the reply where it first appears (OpenAI's `stop`); the reply's text
    /// leaves it out, its tokens keep everything generated.
    pub stop_text: Vec<String>,
    /// Sees each token as it is generated (for streaming). When the receiver is dropped (a
    /// client that went away, a timeout) the generation halts at the next token.
    pub tokens: Option<mpsc::UnboundedSender<u32>>,
}

impl PolicyRequest {
    /// A request with no stop text and no token stream.
    pub fn new(
        messages: Vec<Message>,
        tools: Vec<serde_json::Value>,
        images: Vec<DynamicImage>,
        sampling: Sampling,
    ) -> Self {
        Self {
            messages,
            tools,
            images: images.into_iter().map(Arc::new).collect(),
            sampling,
            stop_text: Vec::new(),
            tokens: None,
        }
    }
}

/// What the policy generated, with what the trainer and the parsers need to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The reply as text, cut before any stop text.
    pub text: String,
    /// The generated token ids, everything generated included; empty when a remote server
    /// gave no token ids (the reply then acts but cannot be trained on).
    pub tokens: Vec<u32>,
    /// Per token, the log-probability under the distribution it was sampled from.
    pub logprobs: Vec<f32>,
    /// Per token, the most likely alternatives when the sampling asked for them.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    /// Why the generation ended: a stop token or stop text, the token limit, a full context,
    /// or a halt.
    pub finish: Finish,
    /// The adapter version that was active; `None` for the base model.
    pub version: Option<i64>,
    /// The last image's size after the processor resized it (what pixel formats address).
    pub image_size: (u32, u32),
    /// The prompt's length in tokens (image tokens included).
    pub prompt_tokens: usize,
    /// Wall-clock seconds the request took, preparing the prompt included.
    pub seconds: f64,
}
