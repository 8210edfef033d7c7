//! One update of the policy's LoRA from a batch of judged samples: teacher log-probabilities for
//! the hinted samples, advantages by the sample rules, the clipped surrogate over token-budgeted
//! micro-batches with gradients accumulated, and one AdamW step.

use std::time::Instant;

use candle_core::Tensor;

use clawdesk_model::{ModelInput, Qwen3Vl, ScoreItem, ScoredTopK};

use crate::advantage::{AdvantageSettings, Method, OpdForm, Sample, sample_rule, token_advantages};
use crate::error::{Result, TrainerError};
use crate::loss::{Objective, surrogate_loss};
use crate::optim::AdamW;
use crate::top_k::{self, TeacherTopK, choose_hint, overlap};

/// One generated response with what was learnt about it.
#[derive(Debug, Clone)]
pub struct TrainSample {
    /// The prompt the policy answered.
    pub prompt: ModelInput,
    /// The same prompt with a hindsight hint appended to the last user turn, one per distinct
    /// hint the judges wrote, shortest hint first; empty without a hint. Top-k OPD keeps the
    /// one whose teacher agrees with the student most; the sampled-token form uses the last
    /// (the longest hint, the one the verdict shows).
    pub teacher_prompts: Vec<ModelInput>,
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
    /// The mean teacher gap over samples with a teacher (top-k: Σ_v w_v·gap_v per position,
    /// the gap the student expects), after the clip.
    pub mean_gap: Option<f64>,
    /// Top-k OPD: the kept hint's share of the student's top-k ids that its teacher's own top-k
    /// holds too, averaged over samples with a teacher.
    pub hint_overlap: Option<f64>,
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
    /// Samples passed over, for any reason (the two below).
    pub dropped: usize,
    /// Samples the sample rules left out: no decided reward for Binary RL, no hint for OPD,
    /// neither for combined.
    pub dropped_no_signal: usize,
    /// Samples longer than the model's context.
    pub dropped_too_long: usize,
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
    // A sequence longer than the model's context cannot be scored: such a sample is passed
    // over (counted as dropped), and a teacher prompt that does not fit gives no teacher.
    let limit = model.context_limit();
    let fits = |prompt: &ModelInput, s: &TrainSample| prompt.ids.len() + s.response.len() <= limit;
    let teachers: Vec<Vec<&ModelInput>> = samples
        .iter()
        .map(|s| s.teacher_prompts.iter().filter(|t| fits(t, s)).collect())
        .collect();
    let uses_teacher = settings.advantages.method != Method::BinaryRl;
    // Binary RL has no teacher: its top-k would be read for nothing.
    let form = if uses_teacher {
        settings.advantages.opd_form
    } else {
        OpdForm::Token
    };
    let mut dropped = Dropped::default();
    let mut kept: Vec<Kept> = Vec::new();
    match form {
        OpdForm::Token => {
            // The teacher's log-probabilities of the sampled tokens under the longest hint.
            let hinted: Vec<usize> = (0..samples.len())
                .filter(|&i| uses_teacher && !teachers[i].is_empty())
                .collect();
            let mut teacher: Vec<Option<Vec<f32>>> = vec![None; samples.len()];
            if !hinted.is_empty() {
                let items: Vec<ScoreItem> = hinted
                    .iter()
                    .filter_map(|&i| {
                        Some(ScoreItem {
                            prompt: (*teachers[i].last()?).clone(),
                            response: samples[i].response.clone(),
                        })
                    })
                    .collect();
                for (&i, values) in
                    hinted
                        .iter()
                        .zip(detached(model, &items, settings.teacher_is_policy)?)
                {
                    teacher[i] = Some(values);
                }
            }
            for (i, s) in samples.iter().enumerate() {
                if !fits(&s.prompt, s) {
                    dropped.too_long(s, limit);
                    continue;
                }
                let sample = Sample {
                    reward: s.reward,
                    old_logprobs: &s.old_logprobs,
                    teacher_logprobs: teacher[i].as_deref(),
                };
                match token_advantages(&sample, &settings.advantages)? {
                    Some(adv) => kept.push(Kept {
                        index: i,
                        reward: adv.reward,
                        teacher_weight: 0.0,
                        token_values: Some(adv.values),
                        gap: adv.mean_gap,
                        overlap: None,
                    }),
                    None => dropped.no_signal += 1,
                }
            }
        }
        OpdForm::TopK { .. } => {
            for (i, s) in samples.iter().enumerate() {
                if !fits(&s.prompt, s) {
                    dropped.too_long(s, limit);
                    continue;
                }
                if let Some(r) = s.reward
                    && !r.is_finite()
                {
                    return Err(TrainerError::NonFinite {
                        what: "reward",
                        detail: r.to_string(),
                    });
                }
                let has_teacher = uses_teacher && !teachers[i].is_empty();
                match sample_rule(&settings.advantages, s.reward, has_teacher) {
                    Some(rule) => kept.push(Kept {
                        index: i,
                        reward: rule.reward,
                        teacher_weight: rule.teacher_weight,
                        token_values: None,
                        gap: None,
                        overlap: None,
                    }),
                    None => dropped.no_signal += 1,
                }
            }
        }
    }
    if kept.is_empty() {
        return Err(TrainerError::NothingToTrain {
            samples: samples.len(),
        });
    }
    let total = kept.len();

    // Micro-batches under the token budget; each one's loss is its share of the batch mean.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (k, kept) in kept.iter().enumerate() {
        let size = samples[kept.index].prompt.ids.len() + samples[kept.index].response.len();
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
                prompt: samples[kept[k].index].prompt.clone(),
                response: samples[kept[k].index].response.clone(),
            })
            .collect();
        let old: Vec<f32> = group
            .iter()
            .flat_map(|&k| samples[kept[k].index].old_logprobs.iter().copied())
            .collect();
        let base = if settings.objective.kl_coef != 0.0 {
            Some(detached(model, &items, false)?.concat())
        } else {
            None
        };
        let share = group.len() as f64 / total as f64;
        // The sampled tokens' term: the whole advantage in the token form, the reward alone
        // (against the generation-time values) beside the top-k term in the top-k form.
        let (scored, adv, top) = match form {
            OpdForm::Token => {
                let adv: Vec<f32> = group
                    .iter()
                    .flat_map(|&k| kept[k].token_values.iter().flatten().copied())
                    .collect();
                (model.score(&items, true)?, adv, None)
            }
            OpdForm::TopK { k } => {
                let scored = model.score_top_k(&items, true, k, None)?;
                let adv: Vec<f32> = group
                    .iter()
                    .flat_map(|&g| {
                        std::iter::repeat_n(kept[g].reward, samples[kept[g].index].response.len())
                    })
                    .collect();
                (scored.scored.clone(), adv, Some((scored, k)))
            }
        };
        let parts = surrogate_loss(
            &scored.logprobs,
            &scored.spans,
            &old,
            &adv,
            None,
            base.as_deref(),
            &settings.objective,
        )?;
        // `extra`: the top-k term's surrogate value, beside the sampled tokens'.
        let (loss, extra) = match top {
            None => (parts.loss.clone(), 0.0),
            Some((scored, k)) => {
                match top_k_advantages(
                    model, samples, &teachers, &mut kept, &group, &scored, k, settings,
                )? {
                    Some(top_adv) => {
                        let student: Vec<f32> = scored.top.detach().flatten_all()?.to_vec1()?;
                        let spans: Vec<(usize, usize)> = scored
                            .scored
                            .spans
                            .iter()
                            .map(|&(s, len)| (s * k, len * k))
                            .collect();
                        let top = surrogate_loss(
                            &scored.top.flatten_all()?,
                            &spans,
                            &student,
                            &top_adv,
                            None,
                            None,
                            &settings.objective,
                        )?;
                        ((&parts.loss + top.loss)?, top.surrogate)
                    }
                    None => (parts.loss.clone(), 0.0),
                }
            }
        };
        surrogate += share * (parts.surrogate + extra);
        if let Some(k) = parts.kl_to_base {
            *kl.get_or_insert(0.0) += share * k;
        }
        clipped += parts.clip_fraction * parts.tokens as f64;
        approx_kl += parts.approx_kl * parts.tokens as f64;
        tokens += parts.tokens + items.iter().map(|it| it.prompt.ids.len()).sum::<usize>();
        let store = (loss * share)?.backward()?;
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
    let response_tokens: usize = kept.iter().map(|k| samples[k.index].response.len()).sum();
    let loss = surrogate + settings.objective.kl_coef * kl.unwrap_or(0.0);
    let mean_reward = kept.iter().map(|k| f64::from(k.reward)).sum::<f64>() / total as f64;
    let mean_of = |values: Vec<f64>| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    Ok(UpdateMetrics {
        loss,
        surrogate,
        kl_to_base: kl,
        mean_reward,
        mean_gap: mean_of(kept.iter().filter_map(|k| k.gap.map(f64::from)).collect()),
        hint_overlap: mean_of(kept.iter().filter_map(|k| k.overlap).collect()),
        clip_fraction: clipped / response_tokens as f64,
        approx_kl: approx_kl / response_tokens as f64,
        grad_norm: report.grad_norm,
        lr,
        samples: total,
        dropped: samples.len() - total,
        dropped_no_signal: dropped.no_signal,
        dropped_too_long: dropped.too_long,
        tokens,
        tokens_per_second: tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
    })
}

/// A sample the rules keep, and what was learnt about it.
struct Kept {
    index: usize,
    /// The reward term (weighted).
    reward: f32,
    /// The top-k term's weight; 0 without a teacher.
    teacher_weight: f32,
    /// The sampled-token form's per-token advantages.
    token_values: Option<Vec<f32>>,
    /// The mean teacher gap, when a teacher was asked.
    gap: Option<f32>,
    /// The kept hint's overlap with the student: shared top-k ids over positions × k.
    overlap: Option<f64>,
}

/// Why samples were passed over.
#[derive(Default)]
struct Dropped {
    no_signal: usize,
    too_long: usize,
}

impl Dropped {
    fn too_long(&mut self, s: &TrainSample, limit: usize) {
        tracing::warn!(
            tokens = s.prompt.ids.len() + s.response.len(),
            limit,
            "a sample longer than the model's context is passed over"
        );
        self.too_long += 1;
    }
}

/// The top-k term's advantages for one micro-batch (`[tokens × k]`, weighted, 0 for samples
/// without a teacher): every hint candidate's teacher is run at the student's top-k, the
/// candidate whose own top-k overlaps the student's most is kept. `None` when no sample of the
/// group has a teacher.
#[allow(clippy::too_many_arguments)]
fn top_k_advantages(
    model: &Qwen3Vl,
    samples: &[TrainSample],
    teachers: &[Vec<&ModelInput>],
    kept: &mut [Kept],
    group: &[usize],
    student: &ScoredTopK,
    k: usize,
    settings: &UpdateSettings,
) -> Result<Option<Vec<f32>>> {
    let student_values: Vec<f32> = student.top.detach().flatten_all()?.to_vec1()?;
    let mut items = Vec::new();
    let mut at = Vec::new();
    let mut asked: Vec<(usize, usize)> = Vec::new(); // (position in group, candidates)
    for (g, &kk) in group.iter().enumerate() {
        if kept[kk].teacher_weight == 0.0 {
            continue;
        }
        let s = &samples[kept[kk].index];
        let (start, len) = student.scored.spans[g];
        let ids = &student.indices[start * k..(start + len) * k];
        for prompt in &teachers[kept[kk].index] {
            items.push(ScoreItem {
                prompt: (*prompt).clone(),
                response: s.response.clone(),
            });
            at.extend_from_slice(ids);
        }
        asked.push((g, teachers[kept[kk].index].len()));
    }
    if items.is_empty() {
        return Ok(None);
    }
    // Every candidate's teacher, under the same token budget as the student's passes.
    let mut teacher: Vec<TeacherTopK> = Vec::with_capacity(items.len());
    let mut first = 0;
    let mut row = 0;
    while first < items.len() {
        let mut last = first;
        let mut used = 0;
        while last < items.len() {
            let size = items[last].prompt.ids.len() + items[last].response.len();
            if last > first && used + size > settings.micro_batch_tokens {
                break;
            }
            used += size;
            last += 1;
        }
        let rows: usize = items[first..last].iter().map(|i| i.response.len()).sum();
        let scored = model.score_top_k(
            &items[first..last],
            settings.teacher_is_policy,
            k,
            Some(&at[row * k..(row + rows) * k]),
        )?;
        let values: Vec<f32> = match &scored.at {
            Some(at) => at.detach().flatten_all()?.to_vec1()?,
            None => {
                return Err(TrainerError::Input(
                    "the teacher's values were not read".into(),
                ));
            }
        };
        for &(ts, tl) in &scored.scored.spans {
            teacher.push(TeacherTopK {
                at_student: values[ts * k..(ts + tl) * k].to_vec(),
                own: scored.indices[ts * k..(ts + tl) * k].to_vec(),
            });
        }
        row += rows;
        first = last;
    }
    let mut adv = vec![0f32; student_values.len()];
    let mut item = 0;
    for (g, candidates) in asked {
        let kk = group[g];
        let (start, len) = student.scored.spans[g];
        let rows = start * k..(start + len) * k;
        let options: Vec<TeacherTopK> = teacher[item..item + candidates].to_vec();
        item += candidates;
        let ids = &student.indices[rows.clone()];
        let chosen = choose_hint(ids, &options, k)
            .ok_or_else(|| TrainerError::Input("a teacher without a hint".into()))?;
        let a = top_k::advantages(
            &student_values[rows.clone()],
            &options[chosen].at_student,
            k,
            settings.advantages.opd_clip,
        )
        .map_err(|e| TrainerError::NonFinite {
            what: "top-k teacher gap",
            detail: e,
        })?;
        let weight = kept[kk].teacher_weight;
        for (slot, v) in adv[rows].iter_mut().zip(&a.scaled) {
            *slot = weight * v;
        }
        kept[kk].gap = Some(a.mean_gap);
        kept[kk].overlap = Some(overlap(ids, &options[chosen].own, k) as f64 / (len * k) as f64);
    }
    Ok(Some(adv))
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
