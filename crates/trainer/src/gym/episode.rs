//! A policy playing gym tasks: the prompt (screenshot and instruction), sampling with the
//! log-probabilities PPO's ratio needs, the rule verifier's reward, and the hindsight hint.

use clawdesk_gym::{GymAction, GymPrompts, StepOutcome, Task};
use clawdesk_model::chat::{Message, Role};
use clawdesk_model::generate::{Sampling, generate};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{ModelInput, preprocess};
use image::DynamicImage;

use crate::error::Result;
use crate::teacher::HintTemplate;
use crate::update::TrainSample;

/// When the rule judge writes a hindsight hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintWhen {
    /// Only after a wrong step: the next state shows what should have been done.
    OnFailure,
    /// After every step.
    Always,
    /// Never (OPD then has no sample to learn from).
    Never,
}

impl HintWhen {
    /// The hint the rule judge writes after this outcome.
    pub fn hint(self, outcome: &StepOutcome) -> Option<String> {
        match self {
            HintWhen::Always => Some(outcome.hint.clone()),
            HintWhen::OnFailure if outcome.reward < 0.0 => Some(outcome.hint.clone()),
            _ => None,
        }
    }
}

/// A reply sampled for one screen.
#[derive(Debug, Clone)]
pub struct Acted {
    /// The prompt's chat messages (with the hint, when there was one).
    pub messages: Vec<Message>,
    /// The encoded prompt the reply was sampled from.
    pub prompt: ModelInput,
    /// The sampled token ids, the stop token included.
    pub tokens: Vec<u32>,
    /// Per sampled token, its log-probability under the sampling distribution.
    pub logprobs: Vec<f32>,
    /// The reply decoded to text.
    pub reply: String,
    /// `None` when the reply is not an action.
    pub action: Option<GymAction>,
}

/// One step played, judged, and ready to train on.
#[derive(Debug, Clone)]
pub struct PlayedStep {
    /// The step as a training sample (the teacher's prompt only when a hint was written).
    pub sample: TrainSample,
    /// The reply as text.
    pub reply: String,
    /// The rule verifier's reward for the step.
    pub reward: f32,
    /// The hindsight hint written after the step; `None` when [`HintWhen`] wrote none.
    pub hint: Option<String>,
}

/// How much of the gym prompt the model sees. The warm start's curriculum trains on the
/// shortest first, so that the lookup of the named element forms before the screenshot's
/// tokens and the format line dilute attention (`bench probe --prefix-grow`); everything
/// later stages add comes before the list, as the probe's filler does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PromptStage {
    /// The element list and the instruction, as text alone.
    Lean,
    /// The format line above them, still without the screenshot.
    Text,
    /// The whole prompt: the screenshot, then the text. What the policy always sees.
    Full,
}

impl PromptStage {
    /// The stage after this one (the last stays).
    pub fn next(self) -> Self {
        match self {
            PromptStage::Lean => PromptStage::Text,
            PromptStage::Text | PromptStage::Full => PromptStage::Full,
        }
    }
}

/// The model with what it needs to play: its prompt templates.
pub struct GymPolicy<'a> {
    /// The policy model and its processor.
    pub loaded: &'a LoadedModel,
    /// The templates that word the task prompt.
    pub prompts: GymPrompts,
    /// The template that appends a hint for the teacher's prompt.
    pub hints: HintTemplate,
}

impl<'a> GymPolicy<'a> {
    /// With the built-in templates (what benchmarks use).
    pub fn built_in(loaded: &'a LoadedModel) -> Result<Self> {
        Ok(Self {
            loaded,
            prompts: GymPrompts::built_in()?,
            hints: HintTemplate::built_in()?,
        })
    }

    /// With the templates found first in `dirs` (the prompt search path).
    pub fn load(loaded: &'a LoadedModel, dirs: &[std::path::PathBuf]) -> Result<Self> {
        Ok(Self {
            loaded,
            prompts: GymPrompts::load(dirs)?,
            hints: HintTemplate::load(dirs)?,
        })
    }

    /// The prompt's messages for the task's current screen (one image: the screenshot).
    pub fn messages(&self, task: &Task, hint: Option<&str>) -> Result<Vec<Message>> {
        self.messages_at(task, hint, PromptStage::Full)
    }

    fn messages_at(
        &self,
        task: &Task,
        hint: Option<&str>,
        stage: PromptStage,
    ) -> Result<Vec<Message>> {
        let (instruction, elements) = (task.instruction(), task.elements());
        let mut text = match stage {
            PromptStage::Lean => self.prompts.task_without_format(instruction, &elements)?,
            PromptStage::Text | PromptStage::Full => self.prompts.task(instruction, &elements)?,
        };
        if let Some(hint) = hint {
            text = self.hints.append(&text, hint)?;
        }
        Ok(vec![match stage {
            PromptStage::Full => Message::images_then_text(Role::User, 1, text),
            PromptStage::Lean | PromptStage::Text => Message::text(Role::User, text),
        }])
    }

    /// The prompt for the task's current screen; with a hint, the teacher's prompt.
    pub fn prompt(&self, task: &Task, hint: Option<&str>) -> Result<ModelInput> {
        self.prompt_at(task, hint, PromptStage::Full)
    }

    /// [`Self::prompt`] cut to a stage of the warm start's curriculum.
    pub fn prompt_at(
        &self,
        task: &Task,
        hint: Option<&str>,
        stage: PromptStage,
    ) -> Result<ModelInput> {
        let messages = self.messages_at(task, hint, stage)?;
        let processor = &self.loaded.processor;
        let rendered = processor.render(&messages, &[], true)?;
        let images = if stage == PromptStage::Full {
            let image = DynamicImage::ImageRgb8(task.screen().render());
            vec![preprocess::prepare(&image, processor.preprocessor())?]
        } else {
            Vec::new()
        };
        Ok(processor.encode_prepared(&rendered, images)?)
    }

    /// Samples the policy's reply to the task's current screen.
    pub fn act(&self, task: &Task, sampling: &Sampling, lora: bool) -> Result<Acted> {
        self.act_with(task, None, sampling, lora)
    }

    /// As [`Self::act`], with a hint in the context (the teacher's view).
    pub fn act_with(
        &self,
        task: &Task,
        hint: Option<&str>,
        sampling: &Sampling,
        lora: bool,
    ) -> Result<Acted> {
        self.act_at(task, hint, PromptStage::Full, sampling, lora)
    }

    /// As [`Self::act_with`], with the prompt cut to a stage of the warm start's curriculum.
    pub fn act_at(
        &self,
        task: &Task,
        hint: Option<&str>,
        stage: PromptStage,
        sampling: &Sampling,
        lora: bool,
    ) -> Result<Acted> {
        let model = &self.loaded.model;
        let mut sampling = sampling.clone();
        if sampling.stop.is_empty() {
            sampling.stop = self.loaded.processor.stop_ids().to_vec();
        }
        let prompt = self.prompt_at(task, hint, stage)?;
        let generation = generate(
            model,
            &mut model.new_cache(),
            &prompt,
            &sampling,
            lora,
            &mut |_| {},
        )?;
        let reply = self.loaded.processor.decode(&generation.tokens, true)?;
        Ok(Acted {
            action: GymAction::parse_reply(&reply).map(|(_, action)| action),
            messages: self.messages_at(task, hint, stage)?,
            prompt,
            tokens: generation.tokens,
            logprobs: generation.logprobs,
            reply,
        })
    }

    /// The response tokens for an action as the model would write it (ending the turn),
    /// grounded when `thought` quotes the element line it acts on.
    pub fn response_tokens(&self, thought: Option<&str>, action: &GymAction) -> Result<Vec<u32>> {
        let text = match thought {
            Some(line) => format!("{line}\n{action}"),
            None => action.to_string(),
        };
        let mut ids = self.loaded.processor.tokenize(&text)?;
        ids.extend(self.loaded.processor.stop_ids().first().copied());
        Ok(ids)
    }

    /// Plays `task` to its end, sampling with `sampling` (whose seed is advanced per step).
    pub fn play(
        &self,
        task: &mut Task,
        sampling: &Sampling,
        lora: bool,
        hints: HintWhen,
    ) -> Result<Vec<PlayedStep>> {
        let mut steps = Vec::new();
        let mut sampling = sampling.clone();
        while !task.is_done() {
            let acted = self.act(task, &sampling, lora)?;
            sampling.seed = sampling.seed.wrapping_add(0x9E37_79B9);
            // The teacher sees the screen the student saw, so its prompt is built before the
            // step changes it; it is kept only when a hint is written.
            let before = task.clone();
            let Some(outcome) = task.step(acted.action.as_ref()) else {
                break;
            };
            let hint = hints.hint(&outcome);
            let teacher_prompts = match &hint {
                Some(h) => vec![self.prompt(&before, Some(h))?],
                None => Vec::new(),
            };
            steps.push(PlayedStep {
                sample: TrainSample {
                    prompt: acted.prompt,
                    teacher_prompts,
                    response: acted.tokens,
                    old_logprobs: acted.logprobs,
                    reward: Some(outcome.reward),
                },
                reply: acted.reply,
                reward: outcome.reward,
                hint,
            });
        }
        Ok(steps)
    }

    /// Greedy success rate over `tasks` (each played from its start).
    pub fn success_rate(&self, tasks: &[Task], lora: bool) -> Result<f64> {
        self.success_rate_shown(tasks, lora, &mut |_| {})
    }

    /// [`success_rate`](Self::success_rate), calling `played` with the number of tasks
    /// played so far after each one (for a progress bar).
    pub fn success_rate_shown(
        &self,
        tasks: &[Task],
        lora: bool,
        played: &mut dyn FnMut(usize),
    ) -> Result<f64> {
        if tasks.is_empty() {
            return Ok(0.0);
        }
        let solved = self.solved_shown(tasks, lora, played)?;
        Ok(solved.iter().filter(|s| **s).count() as f64 / tasks.len() as f64)
    }

    /// Whether each task is solved, greedily and without a hint, calling `played` after each.
    pub fn solved_shown(
        &self,
        tasks: &[Task],
        lora: bool,
        played: &mut dyn FnMut(usize),
    ) -> Result<Vec<bool>> {
        let greedy = greedy();
        let mut solved = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            let mut task = task.clone();
            self.play(&mut task, &greedy, lora, HintWhen::Never)?;
            solved.push(task.succeeded());
            played(i + 1);
        }
        Ok(solved)
    }
}

/// Room for the longest gym action with its stop token (longer replies are wrong anyway).
pub const MAX_REPLY_TOKENS: usize = 24;

/// Greedy decoding with room for one reply.
pub fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        max_tokens: MAX_REPLY_TOKENS,
        stop: Vec::new(),
        top_logprobs: 0,
    }
}

/// Loads a model folder on the CPU.
pub fn load_cpu(dir: &std::path::Path) -> Result<LoadedModel> {
    load_on(dir, &candle_core::Device::Cpu)
}

/// Loads a model folder on `device` in f32 (the tiny models train in full precision, also on
/// a GPU, where loading would otherwise pick bf16).
pub fn load_on(dir: &std::path::Path, device: &candle_core::Device) -> Result<LoadedModel> {
    let spec = dir.to_str().ok_or_else(|| {
        crate::error::TrainerError::Input(format!("{} is not UTF-8", dir.display()))
    })?;
    Ok(LoadedModel::load(
        spec,
        device,
        Some(candle_core::DType::F32),
        &mut |_| {},
    )?)
}
