//! The stored record of one generation, as the agent's episode loop and the API server write
//! it into a step's `response` column and the trainer and exports read it back: the prompt as
//! chat messages with its images as blobs, and the reply as generated token ids with their
//! log-probabilities (never re-tokenised).
//!
//! It lives with the policy that produces it so that a reader (the trainer, the server, an
//! export) names the shape without depending on another reader.

use clawdesk_model::chat::Message;
use clawdesk_store::BlobId;
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// One policy turn: the context it saw and what it generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTurn {
    /// The prompt's messages; each image part is the next entry of `images`.
    pub messages: Vec<Message>,
    /// The prompt's images, as blob ids, in order.
    pub images: Vec<BlobId>,
    /// The tool schemas the prompt was rendered with (the agent's `computer_use`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<serde_json::Value>,
    /// The reply as text (for people; the tokens are what trains).
    pub text: String,
    /// The reply as generated token ids, as they were sampled (what trains).
    pub tokens: Vec<u32>,
    /// Per token, the log-probability under the distribution it was sampled from.
    pub logprobs: Vec<f32>,
}

impl PolicyTurn {
    /// The turn stored with a step; `None` for a step no model chose (a person's, a script's).
    pub fn of_step(response: Option<&serde_json::Value>) -> Result<Option<Self>, AgentError> {
        let Some(value) = response else {
            return Ok(None);
        };
        if value.get("tokens").is_none() {
            return Ok(None);
        }
        let turn: PolicyTurn = serde_json::from_value(value.clone())
            .map_err(|e| AgentError::StoredTurn(e.to_string()))?;
        if turn.tokens.is_empty() || turn.tokens.len() != turn.logprobs.len() {
            return Err(AgentError::StoredTurn(format!(
                "{} tokens and {} log-probabilities",
                turn.tokens.len(),
                turn.logprobs.len()
            )));
        }
        Ok(Some(turn))
    }

    /// The turn as the JSON stored in a step's `response` column, read back by
    /// [`Self::of_step`].
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_with_mismatched_logprobs_is_refused() {
        let bad = serde_json::json!({
            "messages": [], "images": [], "text": "x", "tokens": [1, 2], "logprobs": [-0.1]
        });
        assert!(PolicyTurn::of_step(Some(&bad)).is_err());
        let scripted = serde_json::json!({"text": "typed by a script"});
        assert!(PolicyTurn::of_step(Some(&scripted)).expect("ok").is_none());
        assert!(PolicyTurn::of_step(None).expect("ok").is_none());
    }
}
