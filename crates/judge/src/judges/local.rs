//! The local model as judge: the same prompts, answered by the Qwen3-VL in this process.

use std::sync::Arc;

use futures::future::BoxFuture;
use image::{DynamicImage, imageops::FilterType};

use clawdesk_model::chat::{Message, Part, Role};
use clawdesk_model::generate::{Sampling, generate};
use clawdesk_model::source::LoadedModel;

use crate::case::StepCase;
use crate::error::{JudgeError, Result};
use crate::image::fit;
use crate::judge::{Judge, Judgement, VoteSettings};
use crate::prompt::{JudgePrompts, PromptPart, Screen};
use crate::votes::Vote;

/// A judge that samples its votes from a loaded model (the base, LoRA off, unless told).
pub struct LocalJudge {
    model: Arc<LoadedModel>,
    prompts: JudgePrompts,
    settings: VoteSettings,
    lora: bool,
    seed: u64,
    name: String,
}

impl LocalJudge {
    /// `label` names the model in stored verdicts (its hub id or folder name).
    pub fn new(
        model: Arc<LoadedModel>,
        prompts: JudgePrompts,
        settings: VoteSettings,
        label: &str,
    ) -> Result<Self> {
        settings.validate()?;
        Ok(Self {
            model,
            prompts,
            settings,
            lora: false,
            seed: 0,
            name: format!("local {label}"),
        })
    }

    /// Judges with the adapter on (the current policy judging itself) instead of the base.
    pub fn with_lora(mut self, lora: bool) -> Self {
        self.lora = lora;
        if lora {
            self.name.push_str(" +lora");
        }
        self
    }

    /// The seed votes are sampled from (each step and vote derive their own from it).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn run(&self, case: &StepCase) -> Result<Vec<Vote>> {
        let parts = self.prompts.render(case, self.settings.hints)?;
        let step = case.step.0;
        let decode =
            |png: &[u8]| -> Result<DynamicImage> {
                let image = image::load_from_memory_with_format(png, image::ImageFormat::Png)
                    .map_err(|e| JudgeError::Image {
                        step,
                        reason: format!("cannot decode: {e}"),
                    })?;
                let (w, h) = fit(image.width(), image.height(), self.settings.pixel_budget);
                Ok(if (w, h) == (image.width(), image.height()) {
                    image
                } else {
                    image.resize_exact(w, h, FilterType::Triangle)
                })
            };
        // A conversation turn's prompt places no screenshots.
        let screens = match case.conversation {
            Some(_) => None,
            None => Some((decode(&case.before_png)?, decode(&case.after_png)?)),
        };
        let mut images = Vec::new();
        let content = parts
            .into_iter()
            .filter_map(|part| match part {
                PromptPart::Text(text) => Some(Part::Text { text }),
                PromptPart::Image(screen) => {
                    let (before, after) = screens.as_ref()?;
                    images.push(match screen {
                        Screen::Before => before.clone(),
                        Screen::After => after.clone(),
                    });
                    Some(Part::Image)
                }
            })
            .collect();
        let message = Message {
            role: Role::User,
            content,
            tool_calls: Vec::new(),
        };
        let LoadedModel {
            model, processor, ..
        } = self.model.as_ref();
        let input = processor.prompt(&[message], &[], &images)?;
        let mut votes = Vec::with_capacity(self.settings.votes);
        for vote in 0..self.settings.votes {
            let sampling = Sampling {
                temperature: self.settings.temperature,
                top_p: 1.0,
                top_k: 0,
                seed: self
                    .seed
                    .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .wrapping_add(vote as u64),
                max_tokens: self.settings.max_tokens as usize,
                stop: processor.stop_ids().to_vec(),
                top_logprobs: 0,
            };
            let mut cache = model.new_cache();
            let generation =
                generate(model, &mut cache, &input, &sampling, self.lora, &mut |_| {})?;
            let text = processor.decode(&generation.tokens, true)?;
            votes.push(Vote::from_answer(&text));
        }
        Ok(votes)
    }
}

impl Judge for LocalJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn judge<'a>(&'a self, case: &'a StepCase) -> BoxFuture<'a, Result<Judgement>> {
        Box::pin(async move {
            // Generation is seconds of CPU or GPU work: off the async threads.
            let votes = tokio::task::block_in_place(|| self.run(case))?;
            Ok(Judgement::from_votes(votes))
        })
    }
}
