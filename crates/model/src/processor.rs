//! Text and images in, model input out: the chat template, the tokenizer and the image
//! preprocessor of one model directory, as HF's `AutoProcessor` combines them.

use std::path::Path;

use image::DynamicImage;

use crate::chat::{ChatTemplate, Message};
use crate::config::{PreprocessorConfig, Qwen3VlConfig};
use crate::error::{ModelError, Result};
use crate::model::ModelInput;
use crate::preprocess::{self, PreparedImage};

/// The model directory's tokenizer, chat template and image preprocessor.
pub struct Processor {
    tokenizer: tokenizers::Tokenizer,
    template: ChatTemplate,
    preprocessor: PreprocessorConfig,
    image_token_id: u32,
    vision_token_ids: [u32; 4],
    merge: usize,
    stop_ids: Vec<u32>,
}

impl Processor {
    /// Reads `tokenizer.json`, the chat template (`chat_template.jinja`, `chat_template.json`
    /// or `tokenizer_config.json`'s field) and `preprocessor_config.json`.
    pub fn load(dir: &Path, config: &Qwen3VlConfig) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            ModelError::Tokenizer {
                path: tokenizer_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.text_config.vocab_size {
            return Err(ModelError::Tokenizer {
                path: tokenizer_path,
                reason: format!(
                    "{vocab} tokens, more than the model's vocabulary of {}",
                    config.text_config.vocab_size
                ),
            });
        }
        for (name, id) in [
            ("<|image_pad|>", config.image_token_id),
            ("<|vision_start|>", config.vision_start_token_id),
            ("<|vision_end|>", config.vision_end_token_id),
        ] {
            if tokenizer.token_to_id(name) != Some(id) {
                return Err(ModelError::Tokenizer {
                    path: tokenizer_path,
                    reason: format!("{name} must be token {id} as config.json says"),
                });
            }
        }
        let template = ChatTemplate::new(&read_chat_template(dir)?)?;
        let preprocessor = PreprocessorConfig::from_file(&dir.join("preprocessor_config.json"))?;
        let v = &config.vision_config;
        if preprocessor.patch_size != v.patch_size
            || preprocessor.merge_size != v.spatial_merge_size
            || preprocessor.temporal_patch_size != v.temporal_patch_size
        {
            return Err(ModelError::Config {
                path: dir.join("preprocessor_config.json"),
                reason: "patch, merge and temporal sizes disagree with config.json".into(),
            });
        }
        let mut stop_ids = config.eos_token_ids();
        if let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json"))
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        {
            match value.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => stop_ids.extend(n.as_u64().map(|n| n as u32)),
                Some(serde_json::Value::Array(a)) => {
                    stop_ids.extend(a.iter().filter_map(|v| v.as_u64().map(|n| n as u32)))
                }
                _ => {}
            }
        }
        if let Some(id) = tokenizer.token_to_id("<|im_end|>") {
            stop_ids.push(id);
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Self {
            tokenizer,
            template,
            preprocessor,
            image_token_id: config.image_token_id,
            vision_token_ids: config.vision_token_ids(),
            merge: v.spatial_merge_size,
            stop_ids,
        })
    }

    /// The image preprocessor's settings from `preprocessor_config.json`.
    pub fn preprocessor(&self) -> &PreprocessorConfig {
        &self.preprocessor
    }

    /// Tokens that end a generation by default.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The ids a reply may never hold (see [`Qwen3VlConfig::vision_token_ids`]).
    pub fn vision_token_ids(&self) -> &[u32] {
        &self.vision_token_ids
    }

    /// The id of the token spelled exactly `token` (e.g. `<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Renders messages with the chat template.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.template.render(messages, tools, add_generation_prompt)
    }

    /// Renders, tokenises and attaches images: what the model takes for a reply.
    pub fn prompt(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        images: &[DynamicImage],
    ) -> Result<ModelInput> {
        let text = self.render(messages, tools, true)?;
        self.encode(&text, images)
    }

    /// Tokenises prompt text whose images appear as one `<|image_pad|>` each, preprocesses the
    /// images and expands each placeholder to the image's token count.
    pub fn encode(&self, text: &str, images: &[DynamicImage]) -> Result<ModelInput> {
        let prepared = images
            .iter()
            .map(|im| preprocess::prepare(im, &self.preprocessor))
            .collect::<Result<Vec<_>>>()?;
        self.encode_prepared(text, prepared)
    }

    /// As [`Self::encode`] with images already preprocessed.
    pub fn encode_prepared(&self, text: &str, images: Vec<PreparedImage>) -> Result<ModelInput> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Input(format!("tokenising the prompt: {e}")))?;
        let raw = encoding.get_ids();
        let placeholders = raw.iter().filter(|&&id| id == self.image_token_id).count();
        if placeholders != images.len() {
            return Err(ModelError::ImageCountMismatch {
                placeholders,
                images: images.len(),
            });
        }
        let mut ids = Vec::with_capacity(raw.len());
        let mut next = images.iter();
        for &id in raw {
            if id == self.image_token_id
                && let Some(image) = next.next()
            {
                ids.extend(std::iter::repeat_n(id, image.num_tokens(self.merge)));
            } else {
                ids.push(id);
            }
        }
        Ok(ModelInput { ids, images })
    }

    /// The tokenizer, for callers that turn ids back into text off the model's thread.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// Token ids of plain text (no image expansion).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Input(format!("tokenising: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Text of token ids; `skip_special` leaves out special tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Input(format!("decoding tokens: {e}")))
    }
}

fn read_chat_template(dir: &Path) -> Result<String> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e));
    }
    for name in ["chat_template.json", "tokenizer_config.json"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: path.clone(),
                what: "a chat template holder",
                source,
            })?;
        if let Some(t) = value.get("chat_template").and_then(|v| v.as_str()) {
            return Ok(t.to_string());
        }
    }
    Err(ModelError::Template(format!(
        "{} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json)",
        dir.display()
    )))
}
