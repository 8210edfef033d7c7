//! What a judge sees of one step, gathered from the store.

use clawdesk_desktop::Action;
use clawdesk_model::chat::{Message, Part};
use clawdesk_store::{Step, StepId, StepKind, StepOutcome, Store};
use serde::Serialize;

use crate::error::{JudgeError, Result};

/// One step to judge: the task, what came before, the two screens and the agent's reply.
#[derive(Debug, Clone)]
pub struct StepCase {
    /// The step's id in the store.
    pub step: StepId,
    /// The episode's task: the instruction the agent was given.
    pub objective: String,
    /// The app the episode works in, when known (`api` for a conversation).
    pub app: Option<String>,
    /// One line per earlier step of the episode, oldest first.
    pub previous_actions: Vec<String>,
    /// The step's place in its episode, from 1 (as people count).
    pub step_number: u32,
    /// The agent's full reply (reasoning and action), or the action's description when no
    /// model wrote one (a scripted or a person's step).
    pub response: String,
    /// The action in its internal form.
    pub action: serde_json::Value,
    /// What became of the action (it ran, was refused, failed, was stopped or was invalid).
    pub outcome: StepOutcome,
    /// Why the action was refused or failed.
    pub error: Option<String>,
    /// The screens as stored (PNG).
    pub before_png: Vec<u8>,
    /// The screen after the action (PNG).
    pub after_png: Vec<u8>,
    /// The accessibility trees before and after, when they were recorded (for rule judges).
    pub before_tree: Option<serde_json::Value>,
    /// The accessibility tree after the action, when it was recorded.
    pub after_tree: Option<serde_json::Value>,
    /// For a conversation turn served over the API (no screens: the PNGs are empty), what
    /// was said before the reply and the message that came after it.
    pub conversation: Option<Conversation>,
}

/// A conversation turn's context and next state, as a judge reads them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub context: Vec<Said>,
    pub next: Said,
}

/// One message as text (images as `[image]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Said {
    pub role: String,
    pub text: String,
}

impl StepCase {
    /// Reads a step, its episode and the earlier steps from the store.
    pub fn load(store: &Store, id: StepId) -> Result<Self> {
        let step = store.step(id)?;
        let episode = store.episode(step.episode)?;
        if step.kind == StepKind::Turn {
            return Self::turn(&step, episode);
        }
        let (Some(before), Some(after)) = (step.before_image.as_ref(), step.after_image.as_ref())
        else {
            return Err(JudgeError::Config(format!(
                "step {} lacks a screen before or after its action and cannot be judged",
                id.0
            )));
        };
        let previous_actions = store
            .steps(step.episode)?
            .iter()
            .filter(|s| s.index < step.index)
            .map(action_line)
            .collect();
        let tree = |blob: Option<&clawdesk_store::BlobId>| -> Result<Option<serde_json::Value>> {
            let Some(blob) = blob else { return Ok(None) };
            let bytes = store.blob(blob)?;
            Ok(serde_json::from_slice(&bytes).ok())
        };
        Ok(Self {
            step: id,
            objective: episode.task,
            app: episode.app,
            previous_actions,
            step_number: step.index + 1,
            response: reply_text(&step),
            action: step.action.clone(),
            outcome: step.outcome,
            error: step.error.clone(),
            before_png: store.blob(before)?,
            after_png: store.blob(after)?,
            before_tree: tree(step.before_tree.as_ref())?,
            after_tree: tree(step.after_tree.as_ref())?,
            conversation: None,
        })
    }

    fn turn(step: &Step, episode: clawdesk_store::Episode) -> Result<Self> {
        let Some(next) = &step.next_state else {
            return Err(JudgeError::Config(format!(
                "turn {} has no next message yet and cannot be judged",
                step.id.0
            )));
        };
        let messages: Vec<Message> = step
            .response
            .as_ref()
            .and_then(|r| r.get("messages"))
            .map(|m| serde_json::from_value(m.clone()))
            .transpose()
            .map_err(|e| JudgeError::Config(format!("turn {}: its messages: {e}", step.id.0)))?
            .unwrap_or_default();
        let text = |key: &str| next.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        Ok(Self {
            step: step.id,
            objective: episode.task,
            app: episode.app,
            previous_actions: Vec::new(),
            step_number: step.index + 1,
            response: reply_text(step),
            action: step.action.clone(),
            outcome: step.outcome,
            error: step.error.clone(),
            before_png: Vec::new(),
            after_png: Vec::new(),
            before_tree: None,
            after_tree: None,
            conversation: Some(Conversation {
                context: messages.iter().map(said).collect(),
                next: Said {
                    role: text("role").to_owned(),
                    text: text("content").to_owned(),
                },
            }),
        })
    }

    /// The outcome's name as the prompt templates see it.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            StepOutcome::Executed => "executed",
            StepOutcome::Refused => "refused",
            StepOutcome::Failed => "failed",
            StepOutcome::Stopped => "stopped",
            StepOutcome::Invalid => "invalid",
        }
    }
}

fn said(message: &Message) -> Said {
    let role = message.role.as_str();
    let mut text: Vec<String> = message
        .content
        .iter()
        .map(|p| match p {
            Part::Text { text } => text.clone(),
            Part::Image => "[image]".to_owned(),
        })
        .collect();
    text.extend(
        message
            .tool_calls
            .iter()
            .map(|c| format!("[calls {}({})]", c.function.name, c.function.arguments)),
    );
    Said {
        role: role.to_owned(),
        text: text.join("\n"),
    }
}

/// The model's text when it wrote one (`response` as a string, or its `text` field).
fn reply_text(step: &Step) -> String {
    let text = match &step.response {
        Some(serde_json::Value::String(text)) => Some(text.as_str()),
        Some(value) => value.get("text").and_then(|t| t.as_str()),
        None => None,
    };
    match text {
        Some(text) => text.to_owned(),
        None => format!("Action: {}", describe(&step.action)),
    }
}

fn action_line(step: &Step) -> String {
    let mut line = describe(&step.action);
    if step.outcome != StepOutcome::Executed {
        line.push_str(&format!(" ({:?})", step.outcome).to_lowercase());
    }
    line
}

/// The action in words, or its JSON when it is not an action we know (a model's invalid one).
fn describe(action: &serde_json::Value) -> String {
    match serde_json::from_value::<Action>(action.clone()) {
        Ok(action) => action.describe(),
        Err(_) => action.to_string(),
    }
}
