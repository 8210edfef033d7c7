//! The trainer on the gym: the policy playing tasks (rollouts judged by the rule verifier),
//! the supervised warm start that turns a random tiny model into a base that behaves like a
//! pretrained one, and learning runs that measure each method on held-out tasks.

pub mod curriculum;
pub mod episode;
pub mod learn;
pub mod record;
pub mod shipped;
pub mod warm_start;

pub use episode::{GymPolicy, HintWhen, PlayedStep, PromptStage};
pub use learn::{LearnReport, LearnSettings, learn};
pub use warm_start::{
    WarmStartReport, WarmStartSettings, practice_base, practice_base_on, warm_start,
};
