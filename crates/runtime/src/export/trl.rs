//! TRL's conversational vision layout as one Parquet file, `train.parquet`, that `datasets`
//! loads with its images as pictures: `prompt` and `completion` (messages whose content is a
//! list of `{"type": "image"}` and `{"type": "text", "text": ...}` parts), `images` (the
//! screenshots, bytes inside the file, in placeholder order) and `label` (the step's verdict as
//! KTO's unpaired preference), with the reward, hint and where the row came from beside them.

use std::path::Path;

use clawdesk_model::chat::Part;

use super::table::{Cell, Field, opt_str};
use super::{ExportSummary, Turn, export_table, tool_call_text};
use crate::RuntimeError;

fn message_field(name: &'static str) -> Field {
    let part = Field::Struct("part", vec![Field::Str("type"), Field::Str("text")]);
    let message = Field::Struct(
        "message",
        vec![Field::Str("role"), Field::List("content", Box::new(part))],
    );
    Field::List(name, Box::new(message))
}

fn fields() -> Vec<Field> {
    vec![
        message_field("prompt"),
        message_field("completion"),
        Field::List("images", Box::new(Field::Image("image"))),
        Field::Bool("label"),
        Field::Float("reward"),
        Field::Str("hint"),
        Field::Int("episode"),
        Field::Int("step"),
        Field::Str("task"),
        Field::Int("policy_version"),
    ]
}

fn text_part(text: String) -> Cell {
    Cell::Struct(vec![Cell::Str("text".into()), Cell::Str(text)])
}

fn message(m: &clawdesk_model::chat::Message) -> Cell {
    let mut parts: Vec<Cell> = m
        .content
        .iter()
        .map(|p| match p {
            Part::Text { text } => text_part(text.clone()),
            Part::Image => Cell::Struct(vec![Cell::Str("image".into()), Cell::Null]),
        })
        .collect();
    parts.extend(m.tool_calls.iter().map(|c| text_part(tool_call_text(c))));
    Cell::Struct(vec![Cell::Str(m.role.as_str().into()), Cell::List(parts)])
}

/// Writes the model turns of the episodes (all, or those in `only`) to `out/train.parquet`;
/// `judged_only` leaves out turns with no verdict yet.
pub fn export_trl(
    store: &clawdesk_store::Store,
    only: &[i64],
    judged_only: bool,
    out: &Path,
    progress: &mut dyn FnMut(&ExportSummary),
) -> Result<ExportSummary, RuntimeError> {
    let row = &mut |t: &Turn<'_>, images: Vec<Cell>| {
        let score = t.verdict.map(|v| v.score);
        vec![
            Cell::List(t.turn.messages.iter().map(message).collect()),
            Cell::List(vec![Cell::Struct(vec![
                Cell::Str("assistant".into()),
                Cell::List(vec![text_part(t.turn.text.clone())]),
            ])]),
            Cell::List(images),
            score
                .filter(|s| *s != 0)
                .map_or(Cell::Null, |s| Cell::Bool(s > 0)),
            score.map_or(Cell::Null, |s| Cell::Float(f64::from(s))),
            opt_str(t.verdict.and_then(|v| v.hint.clone())),
            Cell::Int(t.episode.id.0),
            Cell::Int(t.step.id.0),
            Cell::Str(t.episode.task.clone()),
            t.step.policy_version.map_or(Cell::Null, Cell::Int),
        ]
    };
    export_table(store, only, judged_only, out, fields(), progress, row)
}
