//! The durable record of everything the agent did and what was said about it.
//!
//! ClawDesk learns from its own history, so losing or corrupting it is the worst failure the
//! app can have. This crate owns that history: a SQLite database (WAL mode, schema migrations
//! in `migrations/`) holding episodes, steps, verdicts and adapters, and beside it a folder of
//! content-addressed blobs (screenshots as PNG, accessibility-tree snapshots as JSON) named by
//! their BLAKE3 hash.
//!
//! What it is for: [`Store`] opens or creates a data directory, migrates it, and offers one
//! small method per write or read. Every write is one transaction, so a process killed at any
//! moment loses at most the write in flight and never corrupts the database.
//!
//! What it is not for: knowing what an action or a tree *means*. Those arrive as JSON values
//! from the runtime's loops; this crate stores them faithfully and hands them back.

#![warn(missing_docs)]

mod blobs;
mod error;
mod migrate;
mod paths;
mod store;
mod table;

pub use blobs::{BlobId, BlobKind};
pub use error::StoreError;
pub use migrate::SCHEMA_VERSION;
pub use paths::default_data_dir;
pub use store::Store;
pub use table::adapters::{Adapter, AdapterId, NewAdapter};
pub use table::episodes::{Episode, EpisodeId, EpisodeStatus, NewEpisode};
pub use table::judging::{GiveUp, JudgeFailure};
pub use table::steps::{NewStep, NewTurn, Step, StepId, StepKind, StepOutcome};
pub use table::timeline::{TimelineFilter, TimelineRow};
pub use table::training::TrainUpdate;
pub use table::verdicts::{Agreement, NewVerdict, RewardPoint, Verdict, VerdictId, VerdictSource};

/// Milliseconds since the Unix epoch: the one timestamp unit in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
