//! Turning judged steps into a better policy, after OpenClaw-RL: a PPO-style clipped surrogate
//! whose per-token advantage is the judge's reward (Binary RL), the log-probability gap between a
//! hint-conditioned teacher and the policy (Hindsight-Guided On-Policy Distillation), or their
//! weighted sum (combined).
//!
//! This first part holds the objective itself: [`advantage`] applies the sample rules and
//! builds per-token advantages; [`loss`] computes the surrogate over a flat batch of scored
//! response tokens with exact gradients; [`optim`] is AdamW with clipping, a schedule and a
//! state that [`checkpoint`] writes atomically and restores exactly; [`update`] makes one update of a
//! Qwen3-VL's LoRA from a batch; [`teacher`] words the OPD teacher's hinted context. [`practice`]
//! runs all of it on the gym: rollouts judged by rule verifiers, the warm-started practice base,
//! and measured learning runs. [`probe`] asks the same tiny model for one kind of
//! attention at a time, to tell what its warm start can learn. [`run`] is the loop over the store: batches of judged steps
//! ([`stored`] says what a step keeps of its policy turn), figures per update, checkpoints.

pub mod advantage;
pub mod base_weights;
pub mod checkpoint;
mod error;
pub mod loss;
pub mod optim;
pub mod practice;
pub mod probe;
pub mod run;
pub mod stored;
pub mod teacher;
pub mod update;

pub use advantage::{
    AdvantageSettings, Method, Sample, TokenAdvantages, standardise, token_advantages,
};
pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use error::{Result, TrainerError};
pub use loss::{ClipRange, LossParts, Objective, surrogate_loss};
pub use optim::{AdamW, AdamWConfig, Schedule, UpdateReport};
pub use run::{LearningChoices, TrainLoopSettings};
pub use update::{TrainSample, UpdateMetrics, UpdateSettings, update};
