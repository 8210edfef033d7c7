//! What the policy stores with a step so the trainer can learn from it later: the prompt as
//! chat messages with its images as blobs, and the reply as generated token ids with their
//! log-probabilities (never re-tokenised). Kept in the step's `response` column as JSON.

use clawdesk_model::chat::{Message, Part, Role};
use clawdesk_model::processor::Processor;
use clawdesk_model::{ModelInput, preprocess};
use clawdesk_store::{BlobId, Store, Verdict};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};
use crate::teacher::HintTemplate;
use crate::update::TrainSample;

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
    pub tokens: Vec<u32>,
    /// Per token, the log-probability under the distribution it was sampled from.
    pub logprobs: Vec<f32>,
}

impl PolicyTurn {
    /// The turn stored with a step; `None` for a step no model chose (a person's, a script's).
    pub fn of_step(response: Option<&serde_json::Value>) -> Result<Option<Self>> {
        let Some(value) = response else {
            return Ok(None);
        };
        if value.get("tokens").is_none() {
            return Ok(None);
        }
        let turn: PolicyTurn = serde_json::from_value(value.clone())
            .map_err(|e| TrainerError::Input(format!("a stored policy turn: {e}")))?;
        if turn.tokens.is_empty() || turn.tokens.len() != turn.logprobs.len() {
            return Err(TrainerError::Input(format!(
                "a stored policy turn has {} tokens and {} log-probabilities",
                turn.tokens.len(),
                turn.logprobs.len()
            )));
        }
        Ok(Some(turn))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The training sample for this turn under `verdict`: reward from its score (0 is
    /// undecided), the teacher's prompt when it wrote a hint. `None` when the verdict gives
    /// nothing to learn from.
    pub fn sample(
        &self,
        store: &Store,
        processor: &Processor,
        hints: &HintTemplate,
        verdict: &Verdict,
    ) -> Result<Option<TrainSample>> {
        if let Some(id) = self
            .tokens
            .iter()
            .find(|t| processor.vision_token_ids().contains(t))
        {
            return Err(TrainerError::Input(format!(
                "the stored reply holds the vision placeholder id {id}, which no image fills"
            )));
        }
        let reward = (verdict.score != 0).then_some(f32::from(verdict.score));
        let hint = verdict.hint.as_deref().filter(|h| !h.trim().is_empty());
        if reward.is_none() && hint.is_none() {
            return Ok(None);
        }
        let images = self
            .images
            .iter()
            .map(|id| {
                let bytes = store
                    .blob(id)
                    .map_err(|e| TrainerError::Input(e.to_string()))?;
                let image = image::load_from_memory(&bytes).map_err(|e| {
                    TrainerError::Input(format!("image blob {id} does not decode: {e}"))
                })?;
                Ok(preprocess::prepare(&image, processor.preprocessor())?)
            })
            .collect::<Result<Vec<_>>>()?;
        let prompt = encode(processor, &self.messages, &self.tools, images.clone())?;
        let teacher_prompt = match hint {
            Some(hint) => Some(encode(
                processor,
                &with_hint(&self.messages, hints, hint)?,
                &self.tools,
                images,
            )?),
            None => None,
        };
        Ok(Some(TrainSample {
            prompt,
            teacher_prompt,
            response: self.tokens.clone(),
            old_logprobs: self.logprobs.clone(),
            reward,
        }))
    }
}

fn encode(
    processor: &Processor,
    messages: &[Message],
    tools: &[serde_json::Value],
    images: Vec<clawdesk_model::PreparedImage>,
) -> Result<ModelInput> {
    let text = processor.render(messages, tools, true)?;
    Ok(processor.encode_prepared(&text, images)?)
}

/// The messages with the hint appended to the last user turn's text.
pub fn with_hint(messages: &[Message], hints: &HintTemplate, hint: &str) -> Result<Vec<Message>> {
    let mut out = messages.to_vec();
    let Some(last_user) = out.iter_mut().rev().find(|m| m.role == Role::User) else {
        return Err(TrainerError::Input(
            "a policy turn without a user message cannot carry a hint".into(),
        ));
    };
    match last_user.content.iter_mut().rev().find_map(|p| match p {
        Part::Text { text } => Some(text),
        Part::Image => None,
    }) {
        Some(text) => *text = hints.append(text, hint)?,
        None => last_user.content.push(Part::Text {
            text: hints.suffix(hint)?.trim_start().to_string(),
        }),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_goes_after_the_last_user_text() {
        let hints = HintTemplate::built_in().expect("hints");
        let messages = vec![
            Message::text(Role::System, "sys"),
            Message::images_then_text(Role::User, 1, "first"),
            Message::text(Role::Assistant, "click(1,2)"),
            Message::images_then_text(Role::User, 1, "Click red."),
        ];
        let out = with_hint(&messages, &hints, "It was click(3,4).").expect("hinted");
        assert_eq!(out[..3], messages[..3]);
        assert_eq!(
            out[3].content,
            vec![
                Part::Image,
                Part::Text {
                    text: "Click red.\n\nHint: It was click(3,4).".into()
                }
            ]
        );
        let no_user = vec![Message::text(Role::System, "sys")];
        assert!(with_hint(&no_user, &hints, "h").is_err());
    }

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
