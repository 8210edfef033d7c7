//! Turning a stored policy turn ([`PolicyTurn`], the agent's record of a generation) and its
//! verdict into a training sample: the prompt re-encoded with its images from the store, and
//! the teacher's hinted prompt for OPD.

use clawdesk_agent::turn::PolicyTurn;
use clawdesk_model::chat::{Message, Part, Role};
use clawdesk_model::processor::Processor;
use clawdesk_model::{ModelInput, preprocess};
use clawdesk_store::{Store, Verdict};

use crate::error::{Result, TrainerError};
use crate::teacher::HintTemplate;
use crate::update::TrainSample;

/// The training sample for `turn` under `verdict`: reward from its score (0 is undecided), the
/// teacher's prompt when it wrote a hint. `None` when the verdict gives nothing to learn from.
pub fn training_sample(
    turn: &PolicyTurn,
    store: &Store,
    processor: &Processor,
    hints: &HintTemplate,
    verdict: &Verdict,
) -> Result<Option<TrainSample>> {
    if let Some(id) = turn
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
    let images = turn
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
    let prompt = encode(processor, &turn.messages, &turn.tools, images.clone())?;
    let teacher_prompt = match hint {
        Some(hint) => Some(encode(
            processor,
            &with_hint(&turn.messages, hints, hint)?,
            &turn.tools,
            images,
        )?),
        None => None,
    };
    Ok(Some(TrainSample {
        prompt,
        teacher_prompt,
        response: turn.tokens.clone(),
        old_logprobs: turn.logprobs.clone(),
        reward,
    }))
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
}
