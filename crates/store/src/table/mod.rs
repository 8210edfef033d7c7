//! One module per table: its schema, its row types, its reads and writes.

pub mod adapters;
pub mod episodes;
pub mod judging;
pub mod steps;
pub mod timeline;
pub mod training;
pub mod verdicts;

/// A JSON column's value read back, tolerant of NULL.
pub(crate) fn json_column(text: Option<String>) -> rusqlite::Result<Option<serde_json::Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}
