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
    template: &HintTemplate,
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
    let hints = hint_candidates(verdict);
    if reward.is_none() && hints.is_empty() {
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
    let teacher_prompts = hints
        .iter()
        .map(|hint| {
            encode(
                processor,
                &with_hint(&turn.messages, template, hint)?,
                &turn.tools,
                images.clone(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TrainSample {
        prompt,
        teacher_prompts,
        response: turn.tokens.clone(),
        old_logprobs: turn.logprobs.clone(),
        reward,
    }))
}

/// The most hints a sample's teacher is tried with (the revised OpenClaw-RL's cap).
pub const MAX_HINTS: usize = 3;

/// The distinct hints behind a verdict, shortest first, at most [`MAX_HINTS`]: each judge
/// vote's, when the votes were kept, else the verdict's own (a person's, or an older row's).
/// The longest hint, the one the verdict shows, is always among them.
pub fn hint_candidates(verdict: &Verdict) -> Vec<String> {
    let shown = verdict
        .hint
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let mut hints: Vec<String> = verdict
        .votes
        .as_ref()
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|vote| vote.get("hint")?.as_str())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    hints.extend(shown.map(str::to_owned));
    hints.sort_by_key(|h| h.chars().count());
    let mut unique: Vec<String> = Vec::new();
    for h in hints {
        if !unique.contains(&h) {
            unique.push(h);
        }
    }
    if unique.len() > MAX_HINTS {
        // Keep the longest (the verdict's) and the shortest others.
        let longest = unique.pop();
        unique.truncate(MAX_HINTS - 1);
        unique.extend(longest);
    }
    unique
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
    fn hint_candidates_are_the_votes_distinct_hints_shortest_first() {
        let verdict = |votes: serde_json::Value, hint: Option<&str>| clawdesk_store::Verdict {
            id: clawdesk_store::VerdictId(1),
            step: clawdesk_store::StepId(1),
            source: clawdesk_store::VerdictSource::Judge,
            score: -1,
            votes: Some(votes),
            hint: hint.map(str::to_owned),
            judge: None,
            mean: None,
            correction: None,
            created_at_ms: 0,
        };
        let v = verdict(
            serde_json::json!([
                {"score": -1, "hint": "click the red one", "raw": ""},
                {"score": -1, "hint": "  ", "raw": ""},
                {"score": 1, "raw": ""},
                {"score": -1, "hint": "red", "raw": ""},
                {"score": -1, "hint": "click the red one", "raw": ""},
                {"score": -1, "hint": "the red button, top left", "raw": ""},
                {"score": -1, "hint": "press it", "raw": ""}
            ]),
            Some("the red button, top left"),
        );
        assert_eq!(
            hint_candidates(&v),
            ["red", "press it", "the red button, top left"]
        );
        let person = clawdesk_store::Verdict {
            votes: None,
            ..verdict(serde_json::Value::Null, Some("use the menu"))
        };
        assert_eq!(hint_candidates(&person), ["use the menu"]);
        let none = verdict(serde_json::json!([{"score": 1, "raw": ""}]), None);
        assert!(hint_candidates(&none).is_empty());
    }

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
