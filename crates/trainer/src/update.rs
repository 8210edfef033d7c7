//! One update of the policy's LoRA from a batch of judged samples: teacher log-probabilities for
//! the hinted samples, advantages by the sample rules, the clipped surrogate over token-budgeted
//! micro-batches with gradients accumulated, and one AdamW step.

use std::time::Instant;

use candle_core::Tensor;

use clawdesk_model::{ModelInput, Qwen3Vl, ScoreItem};

use crate::advantage::{AdvantageSettings, Sample, token_advantages};
use crate::error::{Result, TrainerError};
use crate::loss::{Objective, surrogate_loss};
use crate::optim::AdamW;

/// One generated response with what was learnt about it.
#[derive(Debug, Clone)]
pub struct TrainSample {
    /// The prompt the policy answered.
    pub prompt: ModelInput,
    /// The same prompt with the hindsight hint appended to the last user turn; `None` without a
    /// hint.
    pub teacher_prompt: Option<ModelInput>,
    /// The generated token ids, as generated (never re-tokenised).
    pub response: Vec<u32>,
    /// Their log-probabilities recorded at generation time.
    pub old_logprobs: Vec<f32>,
    /// The verdict's reward (±1, or standardised); `None` when undecided.
    pub reward: Option<f32>,
}

/// How updates are made.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateSettings {
    /// How per-token advantages are formed.
    pub advantages: AdvantageSettings,
    /// The clipped surrogate's settings.
    pub objective: Objective,
    /// The OPD teacher is the current policy (LoRA on) instead of the frozen base.
    pub teacher_is_policy: bool,
    /// At most this many tokens (prompt and response) per forward pass; samples are grouped
    /// into micro-batches under it and their gradients summed.
    pub micro_batch_tokens: usize,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        Self {
            advantages: AdvantageSettings::default(),
            objective: Objective::default(),
            teacher_is_policy: false,
            micro_batch_tokens: 8192,
        }
    }
}

/// What one update did, for the curves.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateMetrics {
    /// The objective minimised: the surrogate plus the weighted KL term.
    pub loss: f64,
    /// The clipped surrogate, micro-batches weighted by their share of the trained samples.
    pub surrogate: f64,
    /// The k3 KL estimate to the base before weighting; `None` when the KL term is off.
    pub kl_to_base: Option<f64>,
    /// The mean reward term over trained samples.
    pub mean_reward: f64,
    /// The mean teacher gap over samples with a hint.
    pub mean_gap: Option<f64>,
    /// The share of trained response tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// The mean of (ρ − 1) − ln ρ over trained response tokens: how far the policy before this
    /// update has moved from the one that generated the samples.
    pub approx_kl: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate of this update.
    pub lr: f64,
    /// Samples trained on.
    pub samples: usize,
    /// Samples the sample rules left out (no reward and no hint).
    pub dropped: usize,
    /// Prompt and response tokens in the policy's forward passes (not the teacher's or base's).
    pub tokens: usize,
    /// `tokens` per second of the whole update (teacher and base passes and the step included).
    pub tokens_per_second: f64,
}

/// Makes one update of `model`'s LoRA with `optimizer` (built over `model.lora_vars()`).
pub fn update(
    model: &Qwen3Vl,
    optimizer: &mut AdamW,
    samples: &[TrainSample],
    settings: &UpdateSettings,
    lr: f64,
) -> Result<UpdateMetrics> {
    let start = Instant::now();
    for s in samples {
        if s.response.len() != s.old_logprobs.len() {
            return Err(TrainerError::Input(format!(
                "{} recorded log-probabilities for {} response tokens",
                s.old_logprobs.len(),
                s.response.len()
            )));
        }
    }
    // Teacher log-probabilities, for the samples with a hint (no gradient needed).
    // A sequence longer than the model's context cannot be scored: such a sample is passed
    // over (counted as dropped), and a teacher prompt that does not fit gives no gap.
    let limit = model.context_limit();
    let fits = |prompt: &clawdesk_model::ModelInput, s: &TrainSample| {
        prompt.ids.len() + s.response.len() <= limit
    };
    let hinted: Vec<usize> = (0..samples.len())
        .filter(|&i| {
            samples[i]
                .teacher_prompt
                .as_ref()
                .is_some_and(|t| fits(t, &samples[i]))
        })
        .collect();
    let mut teacher: Vec<Option<Vec<f32>>> = vec![None; samples.len()];
    if !hinted.is_empty() && settings.advantages.method != crate::Method::BinaryRl {
        let items: Vec<ScoreItem> = hinted
            .iter()
            .filter_map(|&i| {
                Some(ScoreItem {
                    prompt: samples[i].teacher_prompt.clone()?,
                    response: samples[i].response.clone(),
                })
            })
            .collect();
        for (&i, values) in hinted
            .iter()
            .zip(detached(model, &items, settings.teacher_is_policy)?)
        {
            teacher[i] = Some(values);
        }
    }
    // Advantages by the sample rules.
    let mut kept = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if !fits(&s.prompt, s) {
            tracing::warn!(
                tokens = s.prompt.ids.len() + s.response.len(),
                limit,
                "a sample longer than the model's context is passed over"
            );
            continue;
        }
        let sample = Sample {
            reward: s.reward,
            old_logprobs: &s.old_logprobs,
            teacher_logprobs: teacher[i].as_deref(),
        };
        if let Some(adv) = token_advantages(&sample, &settings.advantages)? {
            kept.push((i, adv));
        }
    }
    if kept.is_empty() {
        return Err(TrainerError::NothingToTrain {
            samples: samples.len(),
        });
    }
    let total = kept.len();
    let mean_reward = kept.iter().map(|(_, a)| f64::from(a.reward)).sum::<f64>() / total as f64;
    let gaps: Vec<f64> = kept
        .iter()
        .filter_map(|(_, a)| a.mean_gap.map(f64::from))
        .collect();
    let mean_gap = (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);

    // Micro-batches under the token budget; each one's loss is its share of the batch mean.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (k, (i, _)) in kept.iter().enumerate() {
        let size = samples[*i].prompt.ids.len() + samples[*i].response.len();
        match groups.last_mut() {
            Some(group) if used + size <= settings.micro_batch_tokens => group.push(k),
            _ => {
                groups.push(vec![k]);
                used = 0;
            }
        }
        used += size;
    }
    let mut grads: Option<Vec<Tensor>> = None;
    let (mut surrogate, mut kl, mut clipped, mut approx_kl) = (0f64, None::<f64>, 0f64, 0f64);
    let mut tokens = 0usize;
    for group in groups {
        let items: Vec<ScoreItem> = group
            .iter()
            .map(|&k| ScoreItem {
                prompt: samples[kept[k].0].prompt.clone(),
                response: samples[kept[k].0].response.clone(),
            })
            .collect();
        let old: Vec<f32> = group
            .iter()
            .flat_map(|&k| samples[kept[k].0].old_logprobs.iter().copied())
            .collect();
        let adv: Vec<f32> = group
            .iter()
            .flat_map(|&k| kept[k].1.values.iter().copied())
            .collect();
        let base = if settings.objective.kl_coef != 0.0 {
            Some(detached(model, &items, false)?.concat())
        } else {
            None
        };
        let scored = model.score(&items, true)?;
        let parts = surrogate_loss(
            &scored.logprobs,
            &scored.spans,
            &old,
            &adv,
            None,
            base.as_deref(),
            &settings.objective,
        )?;
        let share = group.len() as f64 / total as f64;
        surrogate += share * parts.surrogate;
        if let Some(k) = parts.kl_to_base {
            *kl.get_or_insert(0.0) += share * k;
        }
        clipped += parts.clip_fraction * parts.tokens as f64;
        approx_kl += parts.approx_kl * parts.tokens as f64;
        tokens += parts.tokens + items.iter().map(|it| it.prompt.ids.len()).sum::<usize>();
        let store = (parts.loss * share)?.backward()?;
        let these: Vec<Tensor> = model
            .lora_gradients(&store)?
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        grads = Some(match grads {
            None => these,
            Some(sum) => sum
                .iter()
                .zip(&these)
                .map(|(a, b)| a + b)
                .collect::<candle_core::Result<_>>()?,
        });
    }
    let grads = grads.ok_or_else(|| TrainerError::Input("no micro-batch was formed".into()))?;
    let report = optimizer.step(&grads, lr)?;
    let response_tokens: usize = kept.iter().map(|(i, _)| samples[*i].response.len()).sum();
    let loss = surrogate + settings.objective.kl_coef * kl.unwrap_or(0.0);
    Ok(UpdateMetrics {
        loss,
        surrogate,
        kl_to_base: kl,
        mean_reward,
        mean_gap,
        clip_fraction: clipped / response_tokens as f64,
        approx_kl: approx_kl / response_tokens as f64,
        grad_norm: report.grad_norm,
        lr,
        samples: total,
        dropped: samples.len() - total,
        tokens,
        tokens_per_second: tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
    })
}

/// Per-sample log-probabilities without a graph kept (teacher, base).
fn detached(model: &Qwen3Vl, items: &[ScoreItem], lora: bool) -> Result<Vec<Vec<f32>>> {
    let scored = model.score(items, lora)?;
    let all: Vec<f32> = scored.logprobs.detach().to_vec1()?;
    Ok(scored
        .spans
        .iter()
        .map(|&(s, len)| all[s..s + len].to_vec())
        .collect())
}
