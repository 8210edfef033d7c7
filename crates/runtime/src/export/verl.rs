//! verl's RL layout as one Parquet file, `train.parquet`, with the columns its `RLHFDataset`
//! reads: `prompt` (messages with plain-string content, one `<image>` marker per screenshot,
//! in order), `images` (the screenshots, bytes inside the file), `data_source`, `ability`,
//! `reward_model` (`style` and `ground_truth`) and `extra_info` (`split`, `index`, and the step's
//! recorded reply, verdict and hint).
//!
//! verl scores a rollout with a reward function given `data_source`, the rollout's text,
//! `ground_truth` and `extra_info`. ClawDesk's rewards come from its judges, not a rule, so
//! `reward_model.style` is `model` and `ground_truth` is the judged step as JSON (`score`,
//! `hint`, `completion`, `action`) for a reward function of the person's own to compare with.

use std::path::Path;

use clawdesk_model::chat::Part;
use serde_json::json;

use super::table::{Cell, Field, opt_str};
use super::{ExportSummary, Turn, export_table, tool_call_text};
use crate::RuntimeError;

/// The `data_source` every row names, which a verl reward function dispatches on.
pub const DATA_SOURCE: &str = "clawdesk";

/// verl's image placeholder in string content.
pub const IMAGE_MARKER: &str = "<image>";

fn fields() -> Vec<Field> {
    vec![
        Field::Str("data_source"),
        Field::List(
            "prompt",
            Box::new(Field::Struct(
                "message",
                vec![Field::Str("role"), Field::Str("content")],
            )),
        ),
        Field::List("images", Box::new(Field::Image("image"))),
        Field::Str("ability"),
        Field::Struct(
            "reward_model",
            vec![Field::Str("style"), Field::Str("ground_truth")],
        ),
        Field::Struct(
            "extra_info",
            vec![
                Field::Str("split"),
                Field::Int("index"),
                Field::Int("episode"),
                Field::Int("step"),
                Field::Str("task"),
                Field::Str("completion"),
                Field::Float("reward"),
                Field::Str("hint"),
            ],
        ),
    ]
}

/// A message's content as one string: text as it is, each image as `<image>`, tool calls as
/// Qwen's chat template writes them.
fn content(m: &clawdesk_model::chat::Message) -> String {
    let mut text: String = m
        .content
        .iter()
        .map(|p| match p {
            Part::Text { text } => text.as_str(),
            Part::Image => IMAGE_MARKER,
        })
        .collect();
    for call in &m.tool_calls {
        text.push_str(&tool_call_text(call));
    }
    text
}

/// Writes the model turns of the episodes (all, or those in `only`) to `out/train.parquet`;
/// `judged_only` leaves out turns with no verdict yet.
pub fn export_verl(
    store: &clawdesk_store::Store,
    only: &[i64],
    judged_only: bool,
    out: &Path,
    progress: &mut dyn FnMut(&ExportSummary),
) -> Result<ExportSummary, RuntimeError> {
    let mut index = 0i64;
    let row = &mut |t: &Turn<'_>, images: Vec<Cell>| {
        let prompt = t
            .turn
            .messages
            .iter()
            .map(|m| {
                Cell::Struct(vec![
                    Cell::Str(m.role.as_str().into()),
                    Cell::Str(content(m)),
                ])
            })
            .collect();
        let score = t.verdict.map(|v| v.score);
        let hint = t.verdict.and_then(|v| v.hint.clone());
        let ground_truth = json!({
            "score": score,
            "hint": hint,
            "completion": t.turn.text,
            "action": t.step.action,
        });
        let i = index;
        index += 1;
        vec![
            Cell::Str(DATA_SOURCE.into()),
            Cell::List(prompt),
            Cell::List(images),
            Cell::Str("gui".into()),
            Cell::Struct(vec![
                Cell::Str("model".into()),
                Cell::Str(ground_truth.to_string()),
            ]),
            Cell::Struct(vec![
                Cell::Str("train".into()),
                Cell::Int(i),
                Cell::Int(t.episode.id.0),
                Cell::Int(t.step.id.0),
                Cell::Str(t.episode.task.clone()),
                Cell::Str(t.turn.text.clone()),
                score.map_or(Cell::Null, |s| Cell::Float(f64::from(s))),
                opt_str(hint),
            ]),
        ]
    };
    export_table(store, only, judged_only, out, fields(), progress, row)
}
