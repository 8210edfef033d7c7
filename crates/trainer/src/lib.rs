//! Turning judged steps into a better policy, after OpenClaw-RL: a PPO-style clipped surrogate
//! whose per-token advantage is the judge's reward (Binary RL), the log-probability gap between a
//! hint-conditioned teacher and the policy (Hindsight-Guided On-Policy Distillation), or their
//! weighted sum (combined).
//!
//! - The objective: [`advantage`] applies the sample rules and builds per-token advantages;
//!   [`loss`] computes the surrogate over a flat batch of scored response tokens with exact
//!   gradients; [`update`] makes one update of a Qwen3-VL's LoRA from a batch; [`teacher`]
//!   words the OPD teacher's hinted context; [`top_k`] is the revised OPD over the student's
//!   top-k tokens, with the gap clip and the choice among several judges' hints.
//! - The optimiser: [`optim`] is AdamW with clipping and a schedule, whose state [`checkpoint`]
//!   writes atomically and restores exactly; [`base_weights`] trains chosen base weights beside
//!   the adapter.
//! - The loop over the store: [`run`] takes batches of judged steps (a step's policy turn
//!   becomes a sample in [`stored`]), records figures per update and checkpoints;
//!   [`LearningChoices`] is the one place its settings are built from a person's choices.
//! - On the gym: [`gym`] plays gym tasks (rollouts judged by the rule verifiers), makes the
//!   warm-started practice base, and runs measured learning runs. [`probe`] is research: it
//!   asks the same tiny model for one kind of attention at a time. It may import the rest;
//!   nothing imports it.
//!
//! What it must not depend on: the server, the desktop, the runtime's loops or any front end.
//! It reads steps and policy turns from the store and writes adapters; who collected the steps
//! does not matter to it.

#![warn(missing_docs)]

pub mod advantage;
pub mod base_weights;
pub mod checkpoint;
mod error;
pub mod gym;
pub mod loss;
pub mod optim;
pub mod probe;
pub mod run;
pub mod stored;
pub mod teacher;
pub mod top_k;
pub mod update;

pub use advantage::{
    AdvantageSettings, GUI_GAP_CLIP, Method, OpdForm, Sample, TokenAdvantages, sample_rule,
    standardise, token_advantages,
};
pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use error::{Result, TrainerError};
pub use loss::{ClipRange, LossParts, Objective, surrogate_loss};
pub use optim::{AdamW, AdamWConfig, Schedule, UpdateReport};
pub use run::{LearningChoices, TrainLoopSettings};
pub use update::{TrainSample, UpdateMetrics, UpdateSettings, update};
