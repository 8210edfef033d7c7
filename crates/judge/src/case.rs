//! What a judge sees of one step, gathered from the store.

use clawdesk_desktop::Action;
use clawdesk_store::{Step, StepId, StepOutcome, Store};

use crate::error::{JudgeError, Result};

/// One step to judge: the task, what came before, the two screens and the agent's reply.
#[derive(Debug, Clone)]
pub struct StepCase {
    pub step: StepId,
    pub objective: String,
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
    pub outcome: StepOutcome,
    pub error: Option<String>,
    /// The screens as stored (PNG).
    pub before_png: Vec<u8>,
    pub after_png: Vec<u8>,
    /// The accessibility trees before and after, when they were recorded (for rule judges).
    pub before_tree: Option<serde_json::Value>,
    pub after_tree: Option<serde_json::Value>,
}

impl StepCase {
    /// Reads a step, its episode and the earlier steps from the store.
    pub fn load(store: &Store, id: StepId) -> Result<Self> {
        let step = store.step(id)?;
        let episode = store.episode(step.episode)?;
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
