//! Attention probes: three one-answer text tasks, trained with the practice warm start's
//! optimiser on the tiny model, that separate what the gym's lookup needs. Finding the
//! element the instruction names and copying its point is associative recall (match a key,
//! copy what follows it), which takes two attention steps in turn; the first two probes take
//! one each.
//!
//! Token ids: the sequence starts with id 1, keys are ids from 10, values from 100, and
//! the query follows separator 5: `1 k1 v1 k2 v2 ... 5 kq`. Two options make it more like a
//! gym prompt: fixed tokens between each key and its value (ids 6-9; the gym's
//! `green button (375` puts two between the colour and the point), and random filler before
//! the list (ids 40-89; the gym's shipped prompt has ~30 tokens of chat template, screenshot
//! and instruction before its list, and ~60 of template between the list and the reply).

use std::time::Instant;

use candle_core::Device;
use clawdesk_model::rng::SeededRng;
use clawdesk_model::{Logits, LoraConfig, ModelInput, Qwen3Vl, ScoreItem, tiny};
use serde::{Deserialize, Serialize};

use crate::base_weights::{adapter_and_base_optimizer, gradients_in_order, hold_still};
use crate::error::{Result, TrainerError};
use crate::gym::curriculum::{CHECK_EVERY, GROW_AT};
use crate::gym::episode::load_on;

const BOS: u32 = 1;
const SEPARATOR: u32 = 5;
const FIRST_KEY: u32 = 10;
const FIRST_VALUE: u32 = 100;
const FIRST_GAP: u32 = 6;
const GAP_IDS: u32 = 4;
const FIRST_FILLER: u32 = 40;
const FILLER_IDS: u32 = 50;
const YES: u32 = FIRST_VALUE;
const NO: u32 = FIRST_VALUE + 1;

/// What a probe asks of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTask {
    /// Answer the token three places back: attention by relative position alone.
    Offset,
    /// Answer whether the query key is among the pairs: attention by content alone.
    Membership,
    /// Answer the value paired with the query key: content, then the next position.
    Recall,
}

impl ProbeTask {
    /// The three probes: attention by position, by content, then both in turn.
    pub const ALL: [ProbeTask; 3] = [ProbeTask::Offset, ProbeTask::Membership, ProbeTask::Recall];

    /// The task's name in logs and the bench's table (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            ProbeTask::Offset => "offset",
            ProbeTask::Membership => "membership",
            ProbeTask::Recall => "recall",
        }
    }

    /// Held-out accuracy of a model that cannot do the task but knows the answer's form:
    /// a coin for membership; for the others, one of the values in the sequence.
    pub fn chance(self, pairs: usize) -> f64 {
        match self {
            ProbeTask::Membership => 0.5,
            ProbeTask::Offset | ProbeTask::Recall => 1.0 / pairs.max(1) as f64,
        }
    }
}

/// How a probe is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// What the probe asks of the model.
    pub task: ProbeTask,
    /// Seeds the random model, the adapter and the training and held-out sequences.
    pub seed: u64,
    /// Updates to make.
    pub steps: usize,
    /// Sequences per update.
    pub batch: usize,
    /// The learning rate (constant).
    pub lr: f64,
    /// Key-value pairs per sequence (each key once).
    pub pairs: usize,
    /// Distinct keys and distinct values to draw from.
    pub keys: u32,
    /// Distinct values (token ids from 100; the model's vocabulary must hold them).
    pub values: u32,
    /// The adapter's rank; alpha equals it.
    pub rank: usize,
    /// Also train the RMSNorm weights, as the warm start can.
    #[serde(default)]
    pub train_norms: bool,
    /// Also train the token embeddings and the head (the tied matrix, or both when the
    /// config unties them), as the warm start can.
    #[serde(default)]
    pub train_embeddings: bool,
    /// The embeddings' learning rate as a share of `lr` (an untied head keeps the full rate).
    #[serde(default = "one")]
    pub embeddings_lr_share: f64,
    /// The norms and embeddings (when trained) stay put until this step, so the adapter
    /// can form a skill before a learnable head can shortcut it. 0: from the first step.
    #[serde(default)]
    pub base_from_step: usize,
    /// Overrides of the tiny model's HF config (the warm start's shape by default).
    pub config: serde_json::Value,
    /// Draw the language model's weights as HF does for training ([`tiny::Init::Trainable`])
    /// rather than at order one.
    #[serde(default)]
    pub trainable_init: bool,
    /// Held-out accuracy is measured every this many steps, and at the end.
    pub eval_every: usize,
    /// Held-out sequences (a seed of their own, so they do not depend on training).
    pub eval_size: usize,
    /// Fixed tokens between each key and its value.
    #[serde(default)]
    pub gap: usize,
    /// Random filler tokens between the start and the first pair.
    #[serde(default)]
    pub prefix: usize,
    /// A curriculum: training starts with no filler and adds this many tokens, up to
    /// `prefix`, whenever the model answers [`GROW_AT`] of a check at the current length
    /// (checked every [`CHECK_EVERY`] steps), so the lookup can form on short sequences
    /// first. Held-out sequences always carry the full prefix. 0 trains at the full prefix
    /// throughout.
    #[serde(default)]
    pub prefix_grow: usize,
}

/// Sequences in each curriculum check (drawn afresh at the current length).
const CHECK_SIZE: usize = 100;

fn one() -> f64 {
    1.0
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            task: ProbeTask::Recall,
            seed: 1,
            steps: 1500,
            batch: 32,
            lr: 3e-3,
            pairs: 4,
            keys: 20,
            values: 20,
            rank: 32,
            train_norms: false,
            train_embeddings: false,
            embeddings_lr_share: 1.0,
            base_from_step: 0,
            config: serde_json::json!({"text_config": {"num_hidden_layers": 3}}),
            trainable_init: false,
            eval_every: 250,
            eval_size: 200,
            gap: 0,
            prefix: 0,
            prefix_grow: 0,
        }
    }
}

/// A probe's curve and result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The settings the probe ran with.
    pub settings: ProbeSettings,
    /// (step, held-out accuracy), starting at step 0.
    pub curve: Vec<(usize, f64)>,
    /// The last update's loss: the answer's negative log-likelihood, averaged over the batch.
    pub final_loss: f64,
    /// The first step that trained at the full prefix (1 without a curriculum; `None`
    /// when the curriculum never got there).
    #[serde(default)]
    pub full_prefix_from: Option<usize>,
    /// Wall-clock seconds of the run, making the model included.
    pub seconds: f64,
}

impl ProbeReport {
    /// Held-out accuracy at the last evaluation (0 without one).
    pub fn final_accuracy(&self) -> f64 {
        self.curve.last().map_or(0.0, |&(_, a)| a)
    }
}

/// One probe sequence and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSample {
    /// The token ids: start, filler, the pairs, the separator and the query key.
    pub ids: Vec<u32>,
    /// The token the model should answer with (a value, or for membership id 100 yes, 101 no).
    pub answer: u32,
}

/// Draws a sequence for `settings.task` with the full prefix.
pub fn sample(settings: &ProbeSettings, rng: &mut SeededRng) -> ProbeSample {
    sample_with_prefix(settings, settings.prefix, rng)
}

/// Draws a sequence for `settings.task` with `prefix` filler tokens.
pub fn sample_with_prefix(
    settings: &ProbeSettings,
    prefix: usize,
    rng: &mut SeededRng,
) -> ProbeSample {
    let draw = |rng: &mut SeededRng, from: u32, count: u32| {
        from + (rng.next_u64() % u64::from(count.max(1))) as u32
    };
    let pairs = settings.pairs.clamp(1, settings.keys.max(1) as usize);
    let mut keys: Vec<u32> = Vec::with_capacity(pairs);
    while keys.len() < pairs {
        let k = draw(rng, FIRST_KEY, settings.keys);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let values: Vec<u32> = keys
        .iter()
        .map(|_| draw(rng, FIRST_VALUE, settings.values))
        .collect();
    let mut ids = vec![BOS];
    for _ in 0..prefix {
        ids.push(draw(rng, FIRST_FILLER, FILLER_IDS));
    }
    for (&k, &v) in keys.iter().zip(&values) {
        ids.push(k);
        ids.extend((0..settings.gap as u32).map(|i| FIRST_GAP + i % GAP_IDS));
        ids.push(v);
    }
    let q = (rng.next_u64() % pairs as u64) as usize;
    ids.extend([SEPARATOR, keys[q]]);
    let last = ids.len() - 1;
    match settings.task {
        ProbeTask::Recall => ProbeSample {
            ids,
            answer: values[q],
        },
        ProbeTask::Offset => {
            // The last pair's value, drawn afresh so that it is no key's partner in
            // particular: only its place identifies it.
            let v = draw(rng, FIRST_VALUE, settings.values);
            ids[last - 2] = v;
            ProbeSample { ids, answer: v }
        }
        ProbeTask::Membership => {
            let present = rng.next_u64().is_multiple_of(2) || keys.len() as u32 >= settings.keys;
            if !present {
                let mut k = keys[0];
                while keys.contains(&k) {
                    k = draw(rng, FIRST_KEY, settings.keys);
                }
                ids[last] = k;
            }
            ProbeSample {
                ids,
                answer: if present { YES } else { NO },
            }
        }
    }
}

/// Trains a fresh seeded tiny model on `settings.task` on `device`, reporting the held-out
/// curve as it goes.
pub fn run_probe(
    settings: &ProbeSettings,
    device: &Device,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<ProbeReport> {
    if settings.steps == 0 || settings.batch == 0 || settings.pairs == 0 {
        return Err(TrainerError::Input(
            "a probe needs steps, a batch and pairs".into(),
        ));
    }
    if settings.values < 2 || settings.keys < 2 {
        return Err(TrainerError::Input(
            "a probe needs at least two keys and two values".into(),
        ));
    }
    let started = Instant::now();
    let work = tempfile::tempdir().map_err(TrainerError::io(&std::env::temp_dir()))?;
    let mut config = tiny::default_config();
    tiny::merge_json(&mut config, &settings.config);
    let init = if settings.trainable_init {
        tiny::Init::Trainable
    } else {
        tiny::Init::OrderOne
    };
    tiny::write_tiny_model_with(work.path(), &config, settings.seed, &[], init)?;
    let needed = FIRST_VALUE + settings.values;
    let vocab = config
        .pointer("/text_config/vocab_size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if u64::from(needed) > vocab {
        return Err(TrainerError::Input(format!(
            "{} values need a vocabulary of {needed}; the model has {vocab}",
            settings.values
        )));
    }
    let mut loaded = load_on(work.path(), device)?;
    let model = &mut loaded.model;
    model.attach_lora(
        LoraConfig::new(settings.rank, settings.rank as f64),
        settings.seed,
    )?;
    let (base, mut optimizer) = adapter_and_base_optimizer(
        model,
        settings.train_norms,
        settings.train_embeddings,
        settings.embeddings_lr_share,
    )?;
    let mut rng = SeededRng::new(settings.seed ^ 0x5052_4F42);
    let mut held_rng = SeededRng::new(settings.seed ^ 0x4845_4C44);
    let held: Vec<ProbeSample> = (0..settings.eval_size.max(1))
        .map(|_| sample(settings, &mut held_rng))
        .collect();
    let first = accuracy(model, &held, settings.values)?;
    progress(0, first);
    let mut curve = vec![(0, first)];
    let mut final_loss = f64::NAN;
    let mut prefix = if settings.prefix_grow == 0 {
        settings.prefix
    } else {
        0
    };
    let mut full_prefix_from = None;
    let mut check_rng = SeededRng::new(settings.seed ^ 0x4348_4543);
    for step in 1..=settings.steps {
        if prefix == settings.prefix && full_prefix_from.is_none() {
            full_prefix_from = Some(step);
        }
        let items: Vec<ScoreItem> = (0..settings.batch)
            .map(|_| {
                let s = sample_with_prefix(settings, prefix, &mut rng);
                ScoreItem {
                    prompt: ModelInput {
                        ids: s.ids,
                        images: Vec::new(),
                    },
                    response: vec![s.answer],
                }
            })
            .collect();
        let scored = model.score(&items, true)?;
        let loss = scored.logprobs.mean_all()?.neg()?;
        final_loss = f64::from(loss.to_scalar::<f32>()?);
        if !final_loss.is_finite() {
            return Err(TrainerError::NonFinite {
                what: "probe loss",
                detail: format!("at step {step}"),
            });
        }
        let grads = loss.backward()?;
        let mut in_order = gradients_in_order(model, &grads, &base)?;
        if step < settings.base_from_step {
            hold_still(&mut in_order, base.len())?;
        }
        optimizer.step(&in_order, settings.lr)?;
        if prefix < settings.prefix && step.is_multiple_of(CHECK_EVERY) {
            let check: Vec<ProbeSample> = (0..CHECK_SIZE)
                .map(|_| sample_with_prefix(settings, prefix, &mut check_rng))
                .collect();
            let a = accuracy(model, &check, settings.values)?;
            if a >= GROW_AT {
                prefix = (prefix + settings.prefix_grow).min(settings.prefix);
                tracing::info!(
                    step,
                    prefix,
                    accuracy = a,
                    "the probe's training filler grows"
                );
            }
        }
        if step % settings.eval_every.max(1) == 0 || step == settings.steps {
            let a = accuracy(model, &held, settings.values)?;
            progress(step, a);
            curve.push((step, a));
        }
    }
    Ok(ProbeReport {
        settings: settings.clone(),
        curve,
        final_loss,
        full_prefix_from,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Greedy accuracy: the answer must be the most likely of the value tokens at the last
/// position.
fn accuracy(model: &Qwen3Vl, held: &[ProbeSample], values: u32) -> Result<f64> {
    let mut right = 0usize;
    let mut cache = model.new_cache();
    for s in held {
        let input = ModelInput {
            ids: s.ids.clone(),
            images: Vec::new(),
        };
        let logits = model.prefill(&mut cache, &input, true, Logits::Last)?;
        let row = logits.flatten_all()?.to_vec1::<f32>()?;
        let best = (FIRST_VALUE..FIRST_VALUE + values)
            .filter(|&v| (v as usize) < row.len())
            .max_by(|&a, &b| row[a as usize].total_cmp(&row[b as usize]));
        right += usize::from(best == Some(s.answer));
    }
    Ok(right as f64 / held.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(task: ProbeTask) -> ProbeSettings {
        ProbeSettings {
            task,
            ..ProbeSettings::default()
        }
    }

    #[test]
    fn recall_answers_the_query_keys_partner() {
        let s = settings(ProbeTask::Recall);
        let mut rng = SeededRng::new(3);
        for _ in 0..50 {
            let ProbeSample { ids, answer } = sample(&s, &mut rng);
            assert_eq!(ids.len(), 2 + 2 * s.pairs + 1);
            assert_eq!(ids[ids.len() - 2], SEPARATOR);
            let query = ids[ids.len() - 1];
            let at = (1..ids.len() - 2)
                .step_by(2)
                .find(|&i| ids[i] == query)
                .expect("the query is one of the keys");
            assert_eq!(ids[at + 1], answer);
        }
    }

    #[test]
    fn gap_and_prefix_keep_the_answer_after_its_key() {
        let s = ProbeSettings {
            gap: 2,
            prefix: 7,
            ..settings(ProbeTask::Recall)
        };
        let mut rng = SeededRng::new(5);
        for _ in 0..50 {
            let ProbeSample { ids, answer } = sample(&s, &mut rng);
            assert_eq!(ids.len(), 1 + 7 + 4 * s.pairs + 2);
            assert!(ids[1..8].iter().all(|&t| (40..90).contains(&t)), "{ids:?}");
            let query = ids[ids.len() - 1];
            let at = (8..ids.len() - 2)
                .step_by(4)
                .find(|&i| ids[i] == query)
                .expect("the query is one of the keys");
            assert_eq!(&ids[at + 1..at + 3], &[6, 7]);
            assert_eq!(ids[at + 3], answer);
        }
    }

    #[test]
    fn offset_answers_three_back_and_membership_says_whether_the_key_is_there() {
        let mut rng = SeededRng::new(4);
        let offset = settings(ProbeTask::Offset);
        for _ in 0..50 {
            let s = sample(&offset, &mut rng);
            assert_eq!(s.ids[s.ids.len() - 3], s.answer);
        }
        let membership = settings(ProbeTask::Membership);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..200 {
            let s = sample(&membership, &mut rng);
            let query = s.ids[s.ids.len() - 1];
            let keys: Vec<u32> = (1..s.ids.len() - 2).step_by(2).map(|i| s.ids[i]).collect();
            let present = keys.contains(&query);
            assert_eq!(s.answer, if present { YES } else { NO });
            if present {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 60 && no > 60, "{yes} present, {no} absent");
    }
}
