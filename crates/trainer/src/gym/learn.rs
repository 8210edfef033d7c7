//! A learning run on the gym: the policy (base plus a fresh LoRA) plays batches of train tasks,
//! the rule verifier judges each step and writes hindsight hints, one update per batch by the
//! chosen method, and greedy success on held-out tasks is measured along the way.

use std::path::Path;
use std::time::Instant;

use clawdesk_gym::split::evaluation_set;
use clawdesk_gym::{Split, TaskKind, sample_task};
use clawdesk_model::LoraConfig;
use clawdesk_model::generate::Sampling;
use clawdesk_model::rng::SeededRng;

use crate::advantage::{AdvantageSettings, Method, OpdForm, standardise};
use crate::error::{Result, TrainerError};
use crate::gym::episode::{GymPolicy, HintWhen, load_on};
use crate::optim::{AdamW, AdamWConfig};
use crate::update::{UpdateMetrics, UpdateSettings, update};

/// One learning run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnSettings {
    /// The learning signal the updates use.
    pub method: Method,
    /// What OPD's teacher is compared on: the sampled token or the student's top-k.
    pub opd_form: OpdForm,
    /// The teacher gap's clip C; `None`: unclipped.
    pub opd_clip: Option<f32>,
    /// Batches of rollouts to play and learn from, each followed by `epochs` optimiser steps.
    pub updates: usize,
    /// Train tasks per update.
    pub tasks: usize,
    /// Rollouts of each task per update (a group for standardisation).
    pub rollouts: usize,
    /// Standardise rewards within each (task, step index) group of rollouts.
    pub standardise: bool,
    /// A step's reward is the episode's outcome (+1 done, −1 failed) plus the step's vote
    /// (the rule verifier's ±1), as the revised OpenClaw-RL does where an episode has an
    /// outcome; off, the step's vote alone. It matters for the menu's first step, right in an
    /// episode that later fails.
    pub outcome_reward: bool,
    /// Optimiser steps per batch of rollouts (PPO epochs: the clipped ratio against the
    /// recorded log-probabilities keeps the later ones close to the policy that sampled).
    pub epochs: usize,
    /// The learning rate (constant).
    pub lr: f64,
    /// The rank of the fresh LoRA adapter.
    pub rank: usize,
    /// The LoRA alpha (the adapter's output is scaled by alpha / rank).
    pub alpha: f64,
    /// Seeds the adapter's initialisation, the task and rollout sampling and the held-out set.
    pub seed: u64,
    /// Held-out success is measured every this many updates (and before and after).
    pub eval_every: usize,
    /// Held-out tasks in each evaluation.
    pub eval_tasks: usize,
    /// When the rule judge writes a hindsight hint.
    pub hints: HintWhen,
    /// The sampling temperature of the rollouts.
    pub temperature: f64,
    /// The kinds of task drawn, for training and for the held-out set.
    pub kinds: Vec<TaskKind>,
    /// The success rate whose first crossing is reported.
    pub target: f64,
}

impl Default for LearnSettings {
    fn default() -> Self {
        let advantages = AdvantageSettings::default();
        Self {
            method: Method::Combined,
            opd_form: advantages.opd_form,
            opd_clip: advantages.opd_clip,
            updates: 40,
            tasks: 8,
            rollouts: 4,
            standardise: true,
            outcome_reward: true,
            epochs: 1,
            lr: 2e-3,
            rank: 8,
            alpha: 16.0,
            seed: 1,
            eval_every: 10,
            eval_tasks: 100,
            hints: HintWhen::OnFailure,
            temperature: 1.0,
            kinds: TaskKind::ALL.to_vec(),
            target: 0.8,
        }
    }
}

/// Progress of a run.
#[derive(Debug, Clone)]
pub enum LearnEvent {
    /// Greedy success on the held-out tasks was measured.
    Evaluated {
        /// The batch after which it was measured (0: before training).
        update: usize,
        /// The share of held-out tasks solved, from 0 to 1.
        success: f64,
    },
    /// One optimiser step was made on a batch (several per batch with more than one epoch).
    Updated {
        /// The batch's number, from 1.
        update: usize,
        /// What the step did.
        metrics: UpdateMetrics,
        /// The mean rule reward per played step in the batch, before standardisation.
        batch_reward: f64,
        /// Samples whose reward standardisation dropped: every rollout of their task and step
        /// scored alike (they may still train on a hint).
        flat: usize,
    },
    /// A batch had nothing trainable or hit a non-finite number; its remaining epochs were dropped.
    Skipped {
        /// The batch's number, from 1.
        update: usize,
        /// Why the update was skipped.
        reason: String,
    },
}

/// What a run reached.
#[derive(Debug, Clone)]
pub struct LearnReport {
    /// The learning signal the run used.
    pub method: Method,
    /// What OPD's teacher was compared on.
    pub opd_form: OpdForm,
    /// Held-out greedy success before any update.
    pub before: f64,
    /// Held-out greedy success at the last evaluation.
    pub after: f64,
    /// (update, held-out success) at each evaluation.
    pub curve: Vec<(usize, f64)>,
    /// The first evaluated update at or above the target.
    pub updates_to_target: Option<usize>,
    /// Held-out success of each kind at the last evaluation.
    pub after_by_kind: Vec<(TaskKind, f64)>,
    /// Wall-clock seconds of the whole run, loading the model included.
    pub seconds: f64,
    /// The figures of every optimiser step made, in order.
    pub metrics: Vec<UpdateMetrics>,
    /// Batches skipped because they had nothing trainable under the method.
    pub skipped: usize,
}

/// A step's reward where the episode's outcome is known: the outcome plus the mean of the
/// step's votes (OpenClaw-RL's general agents); without an outcome, the votes' mean alone.
pub fn step_reward(vote_mean: f32, outcome: Option<f32>) -> f32 {
    vote_mean + outcome.unwrap_or(0.0)
}

/// Runs `settings.updates` updates from the base in `base_dir`, on the CPU.
pub fn learn(
    base_dir: &Path,
    settings: &LearnSettings,
    progress: &mut dyn FnMut(&LearnEvent),
) -> Result<LearnReport> {
    learn_on(base_dir, settings, &candle_core::Device::Cpu, progress)
}

/// [`learn`] on `device` (in f32, as the tiny bases train).
pub fn learn_on(
    base_dir: &Path,
    settings: &LearnSettings,
    device: &candle_core::Device,
    progress: &mut dyn FnMut(&LearnEvent),
) -> Result<LearnReport> {
    let start = Instant::now();
    let mut loaded = load_on(base_dir, device)?;
    loaded.model.attach_lora(
        LoraConfig::new(settings.rank, settings.alpha),
        settings.seed,
    )?;
    let mut optimizer = AdamW::new(loaded.model.lora_vars(), AdamWConfig::default())?;
    let policy = GymPolicy::built_in(&loaded)?;
    let held_out = evaluation_set(
        Split::HeldOut,
        &settings.kinds,
        settings.eval_tasks,
        settings.seed ^ 0xE7A1,
    );
    let update_settings = UpdateSettings {
        advantages: AdvantageSettings {
            method: settings.method,
            opd_form: settings.opd_form,
            opd_clip: settings.opd_clip,
            ..AdvantageSettings::default()
        },
        ..UpdateSettings::default()
    };
    let mut rng = SeededRng::new(settings.seed);
    let mut curve = Vec::new();
    let mut metrics = Vec::new();
    let mut skipped = 0;
    // Success on the held-out set, and by kind (of the last evaluation, for the report).
    let mut by_kind: Vec<(TaskKind, f64)> = Vec::new();
    let mut evaluate = |update: usize,
                        curve: &mut Vec<(usize, f64)>,
                        progress: &mut dyn FnMut(&LearnEvent)|
     -> Result<f64> {
        let solved = policy.solved_shown(&held_out, true, &mut |_| {})?;
        let rate = |of: &mut dyn Iterator<Item = bool>| {
            let (n, right) = of.fold((0, 0), |(n, r), s| (n + 1, r + usize::from(s)));
            right as f64 / n.max(1) as f64
        };
        let success = rate(&mut solved.iter().copied());
        by_kind = TaskKind::or_all(&settings.kinds)
            .into_iter()
            .filter(|k| held_out.iter().any(|t| t.kind() == *k))
            .map(|kind| {
                let mut of = held_out
                    .iter()
                    .zip(&solved)
                    .filter(|(t, _)| t.kind() == kind)
                    .map(|(_, s)| *s);
                (kind, rate(&mut of))
            })
            .collect();
        curve.push((update, success));
        progress(&LearnEvent::Evaluated { update, success });
        Ok(success)
    };
    let before = evaluate(0, &mut curve, progress)?;
    for step in 1..=settings.updates {
        let mut samples = Vec::new();
        let mut keys = Vec::new();
        let mut rewards = 0.0;
        for _ in 0..settings.tasks {
            let task = sample_task(Split::Train, &settings.kinds, &mut rng);
            for _ in 0..settings.rollouts.max(1) {
                let mut rollout = task.clone();
                let sampling = Sampling {
                    temperature: settings.temperature,
                    top_p: 1.0,
                    top_k: 0,
                    seed: rng.next_u64(),
                    max_tokens: crate::gym::episode::MAX_REPLY_TOKENS,
                    stop: Vec::new(),
                    top_logprobs: 0,
                };
                let played = policy.play(&mut rollout, &sampling, true, settings.hints)?;
                let outcome = if rollout.succeeded() { 1.0 } else { -1.0 };
                for (index, mut step) in played.into_iter().enumerate() {
                    rewards += f64::from(step.reward);
                    keys.push((task.signature(), index));
                    if settings.outcome_reward {
                        step.sample.reward = Some(step_reward(step.reward, Some(outcome)));
                    }
                    samples.push(step.sample);
                }
            }
        }
        let mut flat = 0;
        if settings.standardise {
            let keyed: Vec<_> = keys
                .into_iter()
                .zip(samples.iter().map(|s| s.reward))
                .collect();
            for (sample, reward) in samples.iter_mut().zip(standardise(&keyed)) {
                flat += usize::from(sample.reward.is_some() && reward.is_none());
                sample.reward = reward;
            }
        }
        let batch_reward = rewards / samples.len().max(1) as f64;
        for _ in 0..settings.epochs.max(1) {
            match update(
                &loaded.model,
                &mut optimizer,
                &samples,
                &update_settings,
                settings.lr,
            ) {
                Ok(m) => {
                    progress(&LearnEvent::Updated {
                        update: step,
                        metrics: m.clone(),
                        batch_reward,
                        flat,
                    });
                    metrics.push(m);
                }
                Err(e @ (TrainerError::NothingToTrain { .. } | TrainerError::NonFinite { .. })) => {
                    skipped += 1;
                    progress(&LearnEvent::Skipped {
                        update: step,
                        reason: e.to_string(),
                    });
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if step % settings.eval_every.max(1) == 0 || step == settings.updates {
            evaluate(step, &mut curve, progress)?;
        }
    }
    let after = curve.last().map(|&(_, s)| s).unwrap_or(before);
    let updates_to_target = curve
        .iter()
        .find(|&&(_, s)| s >= settings.target)
        .map(|&(u, _)| u);
    Ok(LearnReport {
        method: settings.method,
        opd_form: settings.opd_form,
        before,
        after,
        curve,
        updates_to_target,
        after_by_kind: by_kind,
        seconds: start.elapsed().as_secs_f64(),
        metrics,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_first_step_of_a_failed_menu_episode_scores_below_one_of_a_done_one() {
        // Four rollouts of one menu task: done (+1, +1), failed at the second step (+1, −1)
        // twice, failed at the first step (−1).
        let episodes: [&[f32]; 4] = [&[1.0, 1.0], &[1.0, -1.0], &[1.0, -1.0], &[-1.0]];
        let mut keyed = Vec::new();
        for votes in episodes {
            let outcome = if votes.iter().all(|v| *v > 0.0) {
                1.0
            } else {
                -1.0
            };
            for (index, vote) in votes.iter().enumerate() {
                keyed.push((index, Some(step_reward(*vote, Some(outcome)))));
            }
        }
        let rewards: Vec<f32> = keyed.iter().map(|(_, r)| r.unwrap_or(f32::NAN)).collect();
        assert_eq!(rewards, [2.0, 2.0, 0.0, -2.0, 0.0, -2.0, -2.0]);
        // First steps: 2, 0, 0, −2 → mean 0, sd √2; second steps: 2, −2, −2 → mean −2/3.
        let z = standardise(&keyed);
        let sd = 2f32.sqrt();
        assert!((z[0].unwrap_or(0.0) - 2.0 / sd).abs() < 1e-6);
        assert!(
            z[2].unwrap_or(1.0).abs() < 1e-6,
            "a right step of a failed episode"
        );
        assert!((z[6].unwrap_or(0.0) + 2.0 / sd).abs() < 1e-6);
        // (2 + 2/3) / √(((8/3)² + 2·(4/3)²) / 3) = √2.
        assert!((z[1].unwrap_or(0.0) - sd).abs() < 1e-5, "{:?}", z[1]);
        // Without an outcome the vote is the reward.
        assert_eq!(step_reward(-1.0, None), -1.0);
    }
}
