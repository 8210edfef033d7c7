//! An adapter's success on the gym's held-out tasks: the regression suite every published
//! adapter is measured on, so that a person choosing a version to roll back to sees which
//! one still does the practice tasks.

use clawdesk_gym::split::evaluation_set;
use clawdesk_gym::{Split, TaskKind};
use clawdesk_model::source::LoadedModel;
use clawdesk_trainer::gym::episode::GymPolicy;

use crate::RuntimeError;

/// The held-out tasks are drawn with this seed, so every version meets the same ones.
const SUITE_SEED: u64 = 0x5C0_4E5;

/// Greedy first-step success over `tasks` held-out gym tasks of every kind, with the model's
/// adapter on when it has one.
pub fn gym_score(loaded: &LoadedModel, tasks: usize) -> Result<f64, RuntimeError> {
    gym_score_shown(loaded, tasks, &mut |_| {})
}

/// [`gym_score`], calling `played` with the number of tasks played so far after each one.
pub fn gym_score_shown(
    loaded: &LoadedModel,
    tasks: usize,
    played: &mut dyn FnMut(usize),
) -> Result<f64, RuntimeError> {
    let suite = evaluation_set(Split::HeldOut, &TaskKind::ALL, tasks.max(1), SUITE_SEED);
    let policy = GymPolicy::built_in(loaded)?;
    let lora = loaded.model.lora_config().is_some();
    Ok(policy.success_rate_shown(&suite, lora, played)?)
}
