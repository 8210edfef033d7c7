//! The practice base: a seeded random tiny Qwen3-VL given a supervised warm start on gym
//! demonstrations, so that it behaves like a pretrained model — it writes the action format,
//! follows a hint when its context has one, and is imperfect without one (its demonstrator
//! picked the right target only part of the time). The adapter is merged into the weights,
//! so "the base with LoRA off" (the OPD teacher) is the warm-started model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use clawdesk_gym::split::evaluation_set;
use clawdesk_gym::{Split, TaskKind, sample_task};
use clawdesk_model::rng::SeededRng;
use clawdesk_model::{LoraConfig, ScoreItem, tiny};
use serde::{Deserialize, Serialize};

use crate::base_weights::{adapter_and_base_optimizer, gradients_in_order, hold_still};
use crate::error::{Result, TrainerError};
use crate::gym::curriculum::{CHECK_TASKS, Curriculum, CurriculumReport};
use crate::gym::episode::{GymPolicy, PromptStage, greedy, load_on};
use crate::gym::shipped;
use crate::optim::Schedule;

/// Bumped whenever the recipe changes, so cached bases from an older recipe are not reused.
/// 3: the split by held-out pairings; a base of recipe 2 was trained on today's held-out tasks.
const RECIPE: u32 = 3;
/// The base's own held-out check draws its tasks apart from `bench learn`'s (`seed ^ 0xE7A1`),
/// so the bench never scores on the set that judged the base.
const HELD_OUT_CHECK: u64 = 0x4845_4C44;
const MARKER: &str = "warm_start.json";
/// Updates between the per-kind checks of a mix that continues from a lead phase.
const MIX_CHECK_EVERY: usize = 250;

/// How the practice base is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStartSettings {
    /// Seeds the random model, the adapter, the demonstrations and the held-out set.
    pub seed: u64,
    /// Supervised updates.
    pub steps: usize,
    /// Demonstrations per update.
    pub batch: usize,
    /// The peak learning rate: a linear warm-up over the first twentieth of the updates, then
    /// cosine decay to a tenth of it (held at the peak with `flat_lr`).
    pub lr: f64,
    /// Rank of the adapter that is trained and then merged.
    pub rank: usize,
    /// Share of demonstrations with the hint in the prompt (always the right action).
    pub hint_share: f64,
    /// How often the demonstrator without a hint picked the right action; otherwise it made
    /// a mistake of the kind `mistakes` says.
    pub demo_accuracy: f64,
    /// Which mistakes the demonstrator makes when it is wrong.
    #[serde(default)]
    pub mistakes: Mistakes,
    /// Overrides of the tiny model's HF config.
    pub config: serde_json::Value,
    /// Give each of the gym's names and numbers a token of its own (the default tokenizer
    /// has one per character). Left out of the recipe key when off, so older bases stay valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub word_tokens: bool,
    /// Also train the language model's RMSNorm weights, as pretraining does: the q/k norms'
    /// scale bounds how sharply a head can attend (with unit scale and head size 16, no
    /// attention logit exceeds 4), and finding one line in a list needs sharp attention.
    /// Left out of the recipe key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub train_norms: bool,
    /// Also train the token embeddings (and the head tied to them). Left out of the recipe
    /// key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub train_embeddings: bool,
    /// Demonstrated clicks first quote the element line they act on, then act (a grounded
    /// reply): the point is then copied from the line just written, not looked up from the
    /// instruction. Left out of the recipe key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grounded: bool,
    /// Draw the random model's language weights as HF does for training (small, each layer
    /// near the identity; [`tiny::Init::Trainable`]) instead of at order one. From order-one
    /// weights the lookup the gym needs does not form (`clawdesk bench probe`). Left out of
    /// the recipe key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trainable_init: bool,
    /// Demonstrate only these kinds of task (empty: every kind), to see whether one kind's
    /// skill forms at all before paying for the mix. Left out of the recipe key when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<TaskKind>,
    /// Hold the peak rate after the warm-up instead of decaying it: the recall probe learns
    /// its lookup at a steady 1e-3, and a decay that starts before the lookup forms stalls
    /// it. Left out of the recipe key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flat_lr: bool,
    /// Before the `steps` updates with the imperfect demonstrator, this many with an
    /// always-right one, as pretraining would give: the lookup forms on every demonstration,
    /// not on the few right ones. That phase is a base of its own in the cache (these
    /// settings with `demo_accuracy` 1), so recipes that share it train it once. Left out of
    /// the recipe key when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ceiling_steps: usize,
    /// The token embeddings' learning rate as a share of `lr` (with `train_embeddings`), so
    /// they can move more slowly than the adapter. In `bench probe` a tenth of the rate did
    /// not keep trained embeddings from shortcutting recall (bench/RESULTS.md). Left out of
    /// the recipe key at 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub embeddings_lr_share: f64,
    /// A curriculum on the prompt, for the always-right phase (or a recipe without one): the
    /// demonstrations start with the element list and the instruction alone
    /// ([`PromptStage::Lean`]), and each time a check of fresh training tasks at the current
    /// stage is [`crate::gym::curriculum::GROW_AT`] right, the next stage adds more of the prompt before the list,
    /// up to the whole one. The norms and embeddings (when trained) stay still until a check
    /// passes on the whole prompt: in `bench probe` a learnable head stopped the lookup from
    /// forming, and a long context before the list did too, unless it grew once the lookup
    /// was there. Left out of the recipe key when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub context_grow: bool,
    /// Before the always-right phase on `kinds`, this many always-right updates on
    /// `lead_kinds` alone (with the prompt curriculum when `context_grow`), cached as a base of
    /// its own, which the whole mix then continues from: the click lookup forms alone in about
    /// 1,300 updates, while the mix of kinds had not passed the curriculum's first check after
    /// 2,650 (bench/RESULTS.md). Left out of the recipe key when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lead_steps: usize,
    /// The kinds of the lead phase (see `lead_steps`). Left out of the recipe key when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lead_kinds: Vec<TaskKind>,
    /// The lead phase's seed, when it differs from `seed`: bases of several seeds can then
    /// share one lead (the longest phase) and differ from the mix on. Left out of the recipe
    /// key when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_seed: Option<u64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

impl WarmStartSettings {
    /// The always-right phase these settings start from (see `ceiling_steps`).
    pub fn ceiling_phase(&self) -> Self {
        Self {
            steps: self.ceiling_steps,
            demo_accuracy: 1.0,
            ceiling_steps: 0,
            ..self.clone()
        }
    }

    /// The lead phase these settings continue from (see `lead_steps`): always right, on the
    /// lead kinds alone.
    pub fn lead_phase(&self) -> Self {
        Self {
            steps: self.lead_steps,
            demo_accuracy: 1.0,
            seed: self.lead_seed.unwrap_or(self.seed),
            kinds: self.lead_kinds.clone(),
            ceiling_steps: 0,
            lead_steps: 0,
            lead_kinds: Vec::new(),
            lead_seed: None,
            ..self.clone()
        }
    }

    /// The practice base's recipe, which the window's practice mode and `bench learn` use and
    /// the repository ships made (`crates/trainer/bases`): 5,000 always-right updates on
    /// click and type tasks with the prompt curriculum (both lookups form there), 1,000
    /// always-right updates on every kind from that, then 200 of a demonstrator right 40% of
    /// the time without a hint, so the base follows a hint and is imperfect without one.
    /// Bases of other seeds share seed 1's lead phase. Type tasks must be in the lead: after
    /// a click-only lead the word was never read from the instruction, not even in 600
    /// updates of type tasks alone (bench/RESULTS.md).
    pub fn practice(seed: u64) -> Self {
        Self {
            seed,
            steps: 200,
            batch: 32,
            lr: 1e-3,
            hint_share: 0.25,
            demo_accuracy: 0.4,
            word_tokens: true,
            train_norms: true,
            train_embeddings: true,
            grounded: true,
            trainable_init: true,
            flat_lr: true,
            context_grow: true,
            kinds: vec![TaskKind::Click, TaskKind::Type, TaskKind::Menu],
            ceiling_steps: 1000,
            lead_steps: 5000,
            lead_kinds: vec![TaskKind::Click, TaskKind::Type],
            lead_seed: (seed != 1).then_some(1),
            ..Self::default()
        }
    }

    /// The practice recipe for these settings' seed when nothing else in them differs from
    /// the defaults (a command line whose recipe flags were all left alone); `None` when they
    /// ask for a recipe of their own.
    pub fn practice_if_untouched(&self) -> Option<Self> {
        let untouched = Self {
            seed: self.seed,
            ..Self::default()
        };
        (*self == untouched).then(|| Self::practice(self.seed))
    }
}

impl Default for WarmStartSettings {
    fn default() -> Self {
        Self {
            seed: 1,
            steps: 600,
            batch: 16,
            lr: 3e-3,
            rank: 32,
            hint_share: 0.75,
            demo_accuracy: 0.4,
            mistakes: Mistakes::Salient,
            config: serde_json::json!({"text_config": {"num_hidden_layers": 3}}),
            word_tokens: false,
            train_norms: false,
            train_embeddings: false,
            grounded: false,
            trainable_init: false,
            kinds: Vec::new(),
            flat_lr: false,
            ceiling_steps: 0,
            embeddings_lr_share: 1.0,
            context_grow: false,
            lead_steps: 0,
            lead_kinds: Vec::new(),
            lead_seed: None,
        }
    }
}

/// The demonstrator's mistakes without a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mistakes {
    /// The first widget in reading order, when that is wrong: a salience bias.
    #[default]
    Salient,
    /// Another element or word at random.
    Random,
}

/// What the warm start reached, measured greedily on held-out tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmStartReport {
    /// The recipe version the base was made with.
    pub recipe: u32,
    /// The settings the base was made with.
    pub settings: WarmStartSettings,
    /// The last update's loss: the demonstrations' negative log-likelihood per response token,
    /// averaged within each demonstration and then over the batch.
    pub final_loss: f64,
    /// The share of held-out tasks the merged base solves greedily from the start, without a hint.
    pub success_without_hint: f64,
    /// The share of held-out tasks whose first step the merged base gets right greedily with the
    /// right action's hint in the prompt.
    pub success_with_hint: f64,
    /// Wall-clock seconds of this warm start (an always-right phase before it has its own report).
    pub seconds: f64,
    /// Where it was trained ("cpu", "cuda"): the same recipe on another device is the same
    /// base up to float rounding.
    #[serde(default)]
    pub device: String,
    /// What the prompt curriculum did, when the recipe has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curriculum: Option<CurriculumReport>,
}

/// Progress of a warm start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmStartProgress {
    /// The update just made, from 1.
    pub step: usize,
    /// Updates in this phase of the warm start.
    pub steps: usize,
    /// That update's loss (see [`WarmStartReport::final_loss`]).
    pub loss: f64,
}

/// Trains the warm start on the model in `tiny_dir` (in f32 on `device`) and writes the merged
/// base to `out`.
pub fn warm_start(
    tiny_dir: &Path,
    out: &Path,
    settings: &WarmStartSettings,
    device: &Device,
    progress: &mut dyn FnMut(WarmStartProgress),
) -> Result<WarmStartReport> {
    let start = Instant::now();
    let mut loaded = load_on(tiny_dir, device)?;
    let config = LoraConfig::new(settings.rank, settings.rank as f64);
    loaded.model.attach_lora(config, settings.seed)?;
    let (base_vars, mut optimizer) = adapter_and_base_optimizer(
        &mut loaded.model,
        settings.train_norms,
        settings.train_embeddings,
        settings.embeddings_lr_share,
    )?;
    let schedule = Schedule::WarmupCosine {
        lr: settings.lr,
        warmup: (settings.steps / 20) as u64,
        total: settings.steps as u64,
        min_ratio: if settings.flat_lr { 1.0 } else { 0.1 },
    };
    let kinds = TaskKind::or_all(&settings.kinds);
    let mut rng = SeededRng::new(settings.seed ^ 0x5746_5354);
    let mut check_rng = SeededRng::new(settings.seed ^ 0x4348_4543);
    let mut final_loss = f64::NAN;
    // A phase after another starts from a base that has the whole prompt.
    let continues = settings.ceiling_steps > 0 || settings.lead_steps > 0;
    let mut curriculum = (settings.context_grow && !continues).then(Curriculum::default);
    let policy = GymPolicy::built_in(&loaded)?;
    for step in 1..=settings.steps {
        let stage = curriculum
            .as_ref()
            .map_or(PromptStage::Full, Curriculum::stage);
        let mut items = Vec::with_capacity(settings.batch);
        for _ in 0..settings.batch {
            let mut task = sample_task(Split::Train, &kinds, &mut rng);
            // Half the menu demonstrations are of the second step.
            if rng.uniform() < 0.5
                && let Some(first) = task.expert()
                && task.kind() == TaskKind::Menu
            {
                task.step(Some(&first));
            }
            let hinted = rng.uniform() < settings.hint_share;
            let right = task
                .expert()
                .ok_or_else(|| TrainerError::Input("a fresh task has no expert action".into()))?;
            let wrong = !hinted && rng.uniform() >= settings.demo_accuracy;
            let mistake = match settings.mistakes {
                _ if !wrong => None,
                Mistakes::Salient => task.salient_mistake(),
                Mistakes::Random => {
                    let all = task.mistakes();
                    (!all.is_empty())
                        .then(|| all[(rng.next_u64() % all.len() as u64) as usize].clone())
                }
            };
            let action = mistake.unwrap_or(right);
            let hint = if hinted { task.hint() } else { None };
            items.push(ScoreItem {
                prompt: policy.prompt_at(&task, hint.as_deref(), stage)?,
                response: policy.response_tokens(
                    settings
                        .grounded
                        .then(|| task.element_line(&action))
                        .flatten()
                        .as_deref(),
                    &action,
                )?,
            });
        }
        let scored = loaded.model.score(&items, true)?;
        let weights: Vec<f32> = scored
            .spans
            .iter()
            .flat_map(|&(_, len)| std::iter::repeat_n(1.0 / (len * items.len()) as f32, len))
            .collect();
        let weights = Tensor::new(weights.as_slice(), device)?;
        let loss = (scored.logprobs * weights)?.sum_all()?.neg()?;
        final_loss = f64::from(loss.to_scalar::<f32>()?);
        if !final_loss.is_finite() {
            return Err(TrainerError::NonFinite {
                what: "warm-start loss",
                detail: format!("at step {step}"),
            });
        }
        let grads = loss.backward()?;
        let mut in_order = gradients_in_order(&loaded.model, &grads, &base_vars)?;
        if curriculum.as_ref().is_some_and(Curriculum::holds_base) {
            hold_still(&mut in_order, base_vars.len())?;
        }
        optimizer.step(&in_order, schedule.lr(step as u64))?;
        progress(WarmStartProgress {
            step,
            steps: settings.steps,
            loss: final_loss,
        });
        if let Some(curriculum) = curriculum.as_mut()
            && curriculum.checks_after(step)
            && step < settings.steps
        {
            let check: Vec<clawdesk_gym::Task> = (0..CHECK_TASKS)
                .map(|_| sample_task(Split::Train, &kinds, &mut check_rng))
                .collect();
            // The adapter in training is not merged yet: the check runs with it on.
            let right = first_step_success(&policy, &check, stage, false, true)?;
            tracing::info!(step, ?stage, right, "warm-start curriculum check");
            curriculum.record_check(step, right);
        } else if settings.lead_steps > 0
            && settings.ceiling_steps == 0
            && kinds.len() > 1
            && step.is_multiple_of(MIX_CHECK_EVERY)
            && step < settings.steps
        {
            log_kinds(&policy, &kinds, PromptStage::Full, step, &mut check_rng)?;
        }
    }
    drop(policy);
    loaded.model.merge_lora()?;
    let trained = loaded.model.text_weights();
    let (success_without_hint, success_with_hint) = held_out_check(&loaded, settings)?;
    write_merged(tiny_dir, out, &trained)?;
    let report = WarmStartReport {
        recipe: RECIPE,
        settings: settings.clone(),
        final_loss,
        success_without_hint,
        success_with_hint,
        seconds: start.elapsed().as_secs_f64(),
        device: if device.is_cpu() { "cpu" } else { "cuda" }.to_string(),
        curriculum: curriculum.map(Curriculum::into_report),
    };
    let marker = out.join(MARKER);
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| TrainerError::Input(format!("serialising the warm-start report: {e}")))?;
    std::fs::write(&marker, text).map_err(TrainerError::io(&marker))?;
    Ok(report)
}

/// Logs how each kind of a mix is coming on: greedy success on fresh training tasks of each,
/// without a hint, at `stage`.
fn log_kinds(
    policy: &GymPolicy<'_>,
    kinds: &[TaskKind],
    stage: PromptStage,
    step: usize,
    rng: &mut SeededRng,
) -> Result<()> {
    for kind in kinds {
        let check: Vec<clawdesk_gym::Task> = (0..CHECK_TASKS)
            .map(|_| sample_task(Split::Train, &[*kind], rng))
            .collect();
        let right = first_step_success(policy, &check, stage, false, true)?;
        tracing::info!(step, ?kind, ?stage, right, "warm-start check of each kind");
    }
    Ok(())
}

/// The base's own held-out check, as its report gives it: greedy success on 60 held-out
/// tasks of its kinds without a hint, and the first step's greedy success with the right
/// action's hint in the prompt.
pub fn held_out_check(
    loaded: &clawdesk_model::source::LoadedModel,
    settings: &WarmStartSettings,
) -> Result<(f64, f64)> {
    let kinds = TaskKind::or_all(&settings.kinds);
    let held_out = evaluation_set(Split::HeldOut, &kinds, 60, settings.seed ^ HELD_OUT_CHECK);
    let policy = GymPolicy::built_in(loaded)?;
    Ok((
        policy.success_rate(&held_out, false)?,
        hinted_success(&policy, &held_out)?,
    ))
}

/// Greedy first-step success when the right action's hint is in the prompt.
/// (The adapter is merged by then.)
fn hinted_success(policy: &GymPolicy<'_>, tasks: &[clawdesk_gym::Task]) -> Result<f64> {
    first_step_success(policy, tasks, PromptStage::Full, true, false)
}

/// Greedy first-step success on `tasks` with the prompt at `stage`, with the right action's
/// hint in it or without, and with the adapter on or off.
fn first_step_success(
    policy: &GymPolicy<'_>,
    tasks: &[clawdesk_gym::Task],
    stage: PromptStage,
    with_hint: bool,
    lora: bool,
) -> Result<f64> {
    let mut right = 0;
    for task in tasks {
        let hint = if with_hint { task.hint() } else { None };
        let acted = policy.act_at(task, hint.as_deref(), stage, &greedy(), lora)?;
        let mut probe = task.clone();
        let ok = probe
            .step(acted.action.as_ref())
            .is_some_and(|o| o.reward > 0.0);
        right += usize::from(ok);
    }
    Ok(right as f64 / tasks.len().max(1) as f64)
}

/// Copies the model directory with its language-model weights replaced by the trained ones
/// (`trained`: HF names and tensors; the linears merged).
fn write_merged(tiny_dir: &Path, out: &Path, trained: &[(String, Tensor)]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(TrainerError::io(out))?;
    let entries = std::fs::read_dir(tiny_dir).map_err(TrainerError::io(tiny_dir))?;
    for entry in entries {
        let entry = entry.map_err(TrainerError::io(tiny_dir))?;
        let name = entry.file_name();
        if name == "model.safetensors" || name == MARKER {
            continue;
        }
        let to = out.join(&name);
        std::fs::copy(entry.path(), &to).map_err(TrainerError::io(&to))?;
    }
    let weights_path = tiny_dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)?;
    for (name, weight) in trained {
        let Some(slot) = tensors.get_mut(name) else {
            return Err(TrainerError::Input(format!(
                "{} has no tensor {name} to replace",
                weights_path.display()
            )));
        };
        *slot = weight.to_device(&Device::Cpu)?.to_dtype(slot.dtype())?;
    }
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    Ok(())
}

/// The cached practice base for `settings` under `cache`, made (with progress) on the CPU when
/// missing. A half-written base is never reused: it is built in a temporary directory and
/// renamed.
pub fn practice_base(
    cache: &Path,
    settings: &WarmStartSettings,
    progress: &mut dyn FnMut(WarmStartProgress),
) -> Result<(PathBuf, WarmStartReport)> {
    practice_base_on(cache, settings, &Device::Cpu, progress)
}

/// [`practice_base`], trained on `device` when missing. The device is not part of the cache
/// key: a base made on a GPU serves CPU runs of the same recipe.
pub fn practice_base_on(
    cache: &Path,
    settings: &WarmStartSettings,
    device: &Device,
    progress: &mut dyn FnMut(WarmStartProgress),
) -> Result<(PathBuf, WarmStartReport)> {
    let folder = cache_folder(settings)?;
    let dir = cache.join(&folder);
    if let Some(report) = read_report(&dir) {
        return Ok((dir, report));
    }
    // A base the repository ships for this very key is unpacked rather than trained.
    if let Some(dir) = shipped::unpack(cache, &folder)? {
        let report = read_report(&dir).ok_or_else(|| {
            TrainerError::Input(format!(
                "the shipped base {folder} has no readable {MARKER}"
            ))
        })?;
        return Ok((dir, report));
    }
    // The always-right phase first (cached on its own), when the recipe has one.
    let ceiling = if settings.ceiling_steps > 0 {
        let (ceiling_dir, ceiling_report) =
            practice_base_on(cache, &settings.ceiling_phase(), device, progress)?;
        tracing::info!(
            without_hint = ceiling_report.success_without_hint,
            with_hint = ceiling_report.success_with_hint,
            "always-right phase of the warm start ready"
        );
        Some(ceiling_dir)
    } else if settings.lead_steps > 0 {
        let (lead_dir, lead_report) =
            practice_base_on(cache, &settings.lead_phase(), device, progress)?;
        tracing::info!(
            kinds = ?settings.lead_kinds,
            without_hint = lead_report.success_without_hint,
            with_hint = lead_report.success_with_hint,
            "lead phase of the warm start ready"
        );
        Some(lead_dir)
    } else {
        None
    };
    std::fs::create_dir_all(cache).map_err(TrainerError::io(cache))?;
    // Removed when dropped, whether the build finishes or fails.
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(cache)
        .map_err(TrainerError::io(cache))?;
    let built = work.path().join("base");
    let start_from = match ceiling {
        Some(dir) => dir,
        None => random_model(work.path(), settings)?,
    };
    let report = warm_start(&start_from, &built, settings, device, progress)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(TrainerError::io(&dir))?;
    }
    std::fs::rename(&built, &dir).map_err(TrainerError::io(&dir))?;
    Ok((dir, report))
}

/// The cache folder of the base `settings` make: a hash of the recipe version, the settings
/// and the templates the demonstrations are written in (a base trained on another wording of
/// the prompt is another base).
pub fn cache_folder(settings: &WarmStartSettings) -> Result<String> {
    let mut templates = String::new();
    for name in ["gym/task.md", "trainer/hint.md"] {
        let template = clawdesk_prompts::find(&[], name).map_err(clawdesk_gym::GymError::from)?;
        templates.push_str(&template.text);
    }
    let settings = serde_json::to_string(settings)
        .map_err(|e| TrainerError::Input(format!("serialising the warm-start settings: {e}")))?;
    let hash = clawdesk_gym::task::fingerprint(&format!("{RECIPE}|{settings}|{templates}"));
    Ok(format!("practice-base-{hash:016x}"))
}

/// The report of the finished base in `dir`, if there is one.
fn read_report(dir: &Path) -> Option<WarmStartReport> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the seeded random model that `settings` start from under `work`.
fn random_model(work: &Path, settings: &WarmStartSettings) -> Result<PathBuf> {
    let tiny_dir = work.join("random");
    let mut config = tiny::default_config();
    tiny::merge_json(&mut config, &settings.config);
    let words = if settings.word_tokens {
        clawdesk_gym::task::vocabulary()
    } else {
        Vec::new()
    };
    if !words.is_empty() {
        let path = "/text_config/vocab_size";
        let vocab = config.pointer(path).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        if let Some(v) = config.pointer_mut(path) {
            *v = vocab.max(tiny::vocab_size_for(words.len())).into();
        }
    }
    let init = if settings.trainable_init {
        tiny::Init::Trainable
    } else {
        tiny::Init::OrderOne
    };
    tiny::write_tiny_model_with(&tiny_dir, &config, settings.seed, &words, init)?;
    Ok(tiny_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_settings_stay_out_of_the_recipe_key_until_used() {
        let default = serde_json::to_string(&WarmStartSettings::default()).expect("json");
        assert!(!default.contains("kinds"), "{default}");
        assert!(!default.contains("flat_lr"), "{default}");
        assert!(!default.contains("ceiling_steps"), "{default}");
        assert!(!default.contains("embeddings_lr_share"), "{default}");
        assert!(!default.contains("lead_"), "{default}");
        let chosen = WarmStartSettings {
            kinds: vec![TaskKind::Click],
            flat_lr: true,
            embeddings_lr_share: 0.1,
            ..WarmStartSettings::default()
        };
        let text = serde_json::to_string(&chosen).expect("json");
        assert!(text.contains(r#""kinds":["click"]"#), "{text}");
        assert!(text.contains(r#""flat_lr":true"#), "{text}");
        assert!(text.contains(r#""embeddings_lr_share":0.1"#), "{text}");
        let back: WarmStartSettings = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, chosen);
    }

    #[test]
    fn a_mix_continues_from_its_lead_phase_and_the_lead_is_the_kinds_own_ceiling() {
        let click = vec![TaskKind::Click];
        let mix = WarmStartSettings {
            steps: 200,
            kinds: vec![TaskKind::Click, TaskKind::Menu],
            ceiling_steps: 1000,
            lead_steps: 5000,
            lead_kinds: click.clone(),
            context_grow: true,
            ..WarmStartSettings::default()
        };
        let ceiling = mix.ceiling_phase();
        assert_eq!((ceiling.steps, ceiling.demo_accuracy), (1000, 1.0));
        assert_eq!(ceiling.lead_steps, 5000, "the mix's ceiling keeps its lead");
        assert_eq!(ceiling.kinds, mix.kinds, "the ceiling trains on the mix");
        let lead = ceiling.lead_phase();
        // The lead is the click ceiling a click-only recipe would make, so a cached one serves.
        let alone = WarmStartSettings {
            ceiling_steps: 5000,
            kinds: click,
            context_grow: true,
            ..WarmStartSettings::default()
        }
        .ceiling_phase();
        assert_eq!(lead, alone);
        assert_eq!(
            serde_json::to_string(&lead).expect("json"),
            serde_json::to_string(&alone).expect("json")
        );
        // The practice bases of every seed share seed 1's lead phase, and no more.
        let lead_of = |seed| {
            WarmStartSettings::practice(seed)
                .ceiling_phase()
                .lead_phase()
        };
        assert_eq!(lead_of(2), lead_of(1));
        assert_eq!(lead_of(3), lead_of(1));
        assert_eq!(lead_of(1).seed, 1);
        assert_ne!(
            WarmStartSettings::practice(2).ceiling_phase(),
            WarmStartSettings::practice(1).ceiling_phase()
        );
    }
}
