//! The model's configuration, read from a Hugging Face `config.json` and
//! `preprocessor_config.json` and checked before any tensor is touched, so a bad directory fails
//! with the field at fault instead of a shape error deep in a forward pass.
//!
//! Two families share one configuration type: Qwen3-VL (`qwen3_vl`) and Qwen2.5-VL
//! (`qwen2_5_vl`, the base of UI-TARS-1.5, OpenCUA and most open GUI agents). [`Family`] says
//! which, and every difference between them is a method here, so the layers ask the config
//! rather than compare model types.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Which model family a checkpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Qwen3-VL: q/k norms, interleaved M-RoPE, learned vision positions, DeepStack.
    Qwen3Vl,
    /// Qwen2.5-VL: biased q/k/v, M-RoPE in sections, a windowed SwiGLU vision tower.
    Qwen25Vl,
}

impl Family {
    /// The family a `model_type` names, if it is one we run.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "qwen3_vl" => Some(Self::Qwen3Vl),
            "qwen2_5_vl" => Some(Self::Qwen25Vl),
            _ => None,
        }
    }

    /// HF's `model_type` for the family.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Qwen3Vl => "qwen3_vl",
            Self::Qwen25Vl => "qwen2_5_vl",
        }
    }

    /// The name people use, for messages and tables.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Qwen3Vl => "Qwen3-VL",
            Self::Qwen25Vl => "Qwen2.5-VL",
        }
    }
}

/// The whole configuration as HF writes it, for either [`Family`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Qwen3VlConfig {
    /// Model classes the checkpoint was saved for (HF `architectures`).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Architecture tag (HF `model_type`): `qwen3_vl` or `qwen2_5_vl`.
    pub model_type: String,
    /// Settings of the text decoder (HF `text_config`).
    pub text_config: TextConfig,
    /// Settings of the vision tower (HF `vision_config`).
    pub vision_config: VisionConfig,
    /// Placeholder token that an image's embeddings replace, `<|image_pad|>` (HF `image_token_id`).
    pub image_token_id: u32,
    /// Placeholder token for video, `<|video_pad|>` (HF `video_token_id`); video is not supported.
    pub video_token_id: u32,
    /// Token that opens an image's span, `<|vision_start|>` (HF `vision_start_token_id`).
    pub vision_start_token_id: u32,
    /// Token that closes an image's span, `<|vision_end|>` (HF `vision_end_token_id`).
    pub vision_end_token_id: u32,
    /// Whether `lm_head` shares the embedding matrix (HF `tie_word_embeddings`); wins over the text
    /// config's flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    /// Fields we do not use, kept so a config written back out loses nothing.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The language model's half of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    /// Token ids the embedding and `lm_head` cover (HF `vocab_size`).
    pub vocab_size: usize,
    /// Hidden size of the text decoder (HF `hidden_size`).
    pub hidden_size: usize,
    /// Inner width of each decoder layer's gated MLP (HF `intermediate_size`).
    pub intermediate_size: usize,
    /// Number of decoder layers (HF `num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Query heads per attention layer (HF `num_attention_heads`).
    pub num_attention_heads: usize,
    /// Key and value heads, each shared by a group of query heads (HF `num_key_value_heads`).
    pub num_key_value_heads: usize,
    /// Width of one attention head (HF `head_dim`); hidden size over query heads when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Activation of the decoder MLP (HF `hidden_act`); only `silu` is supported.
    #[serde(default = "default_silu")]
    pub hidden_act: String,
    /// The context: longest sequence the model takes, in tokens (HF `max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// Epsilon of the decoder's RMS norms (HF `rms_norm_eps`).
    pub rms_norm_eps: f64,
    /// transformers 4.x spells the rope settings as `rope_theta` + `rope_scaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Rope type and M-RoPE layout in that spelling (HF `rope_scaling`); `rope_parameters` wins
    /// when both are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeParameters>,
    /// transformers 5 folds both into `rope_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    /// Whether the attention projections carry biases (HF `attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// The text config's copy of `tie_word_embeddings`; the top-level flag wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
    /// Beginning-of-sequence token (HF `bos_token_id`); kept for round trips, not used here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// Token id or list of ids that end generation (HF `eos_token_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
    /// Fields we do not use, kept so a config written back out loses nothing.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Rotary settings; only the default rope type with interleaved M-RoPE is supported.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RopeParameters {
    /// Rope variant (HF `rope_type`); only `default` is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
    /// Base of the rotary frequencies (HF `rope_theta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// Split of the rotary frequency pairs between time, height and width (HF `mrope_section`);
    /// sums to `head_dim / 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrope_section: Option<Vec<usize>>,
    /// Whether the three M-RoPE axes are interleaved across frequencies (HF `mrope_interleaved`);
    /// `false` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrope_interleaved: Option<bool>,
    /// Fields we do not use, kept so a config written back out loses nothing.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The vision tower's half of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Number of vision transformer blocks (HF `depth`).
    pub depth: usize,
    /// Hidden size of the vision tower (HF `hidden_size`).
    pub hidden_size: usize,
    /// Activation of the vision MLP (HF `hidden_act`): `gelu_pytorch_tanh` or `gelu`.
    #[serde(default = "default_gelu_tanh")]
    pub hidden_act: String,
    /// Inner width of each vision block's MLP (HF `intermediate_size`).
    pub intermediate_size: usize,
    /// Attention heads per vision block (HF `num_heads`).
    pub num_heads: usize,
    /// Colour channels of the input pixels (HF `in_channels`), 3 for RGB.
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Side of one square patch in pixels (HF `patch_size`).
    pub patch_size: usize,
    /// Patches merged into one token per side (HF `spatial_merge_size`).
    pub spatial_merge_size: usize,
    /// Frames stacked into one patch (HF `temporal_patch_size`); a still image repeats to fill it.
    pub temporal_patch_size: usize,
    /// Width of the merged vision tokens handed to the decoder (HF `out_hidden_size`); equals the
    /// text `hidden_size`.
    pub out_hidden_size: usize,
    /// Entries in the learned position table (HF `num_position_embeddings`): a square grid,
    /// interpolated to each image's patch grid. Qwen3-VL only.
    #[serde(default)]
    pub num_position_embeddings: usize,
    /// Side of an attention window in pixels (HF `window_size`). Qwen2.5-VL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_size: Option<usize>,
    /// Vision blocks that attend over the whole image instead of a window (HF
    /// `fullatt_block_indexes`). Qwen2.5-VL only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fullatt_block_indexes: Vec<usize>,
    /// Vision blocks whose outputs are merged and added to the first decoder layers' hidden states
    /// (HF `deepstack_visual_indexes`).
    #[serde(default)]
    pub deepstack_visual_indexes: Vec<usize>,
    /// Fields we do not use, kept so a config written back out loses nothing.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn default_silu() -> String {
    "silu".into()
}
fn default_gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}
fn default_in_channels() -> usize {
    3
}

impl Qwen3VlConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: path.into(),
                what: "a model config",
                source,
            })?;
        let model_type = value
            .get("model_type")
            .and_then(|v| v.as_str())
            .unwrap_or("<none>");
        let Some(family) = Family::from_model_type(model_type) else {
            return Err(ModelError::UnsupportedArchitecture {
                path: path.into(),
                found: model_type.into(),
            });
        };
        let value = with_text_config(value);
        let config: Self = serde_json::from_value(value).map_err(|source| ModelError::Json {
            path: path.into(),
            what: match family {
                Family::Qwen3Vl => "a Qwen3-VL config",
                Family::Qwen25Vl => "a Qwen2.5-VL config",
            },
            source,
        })?;
        config.validate().map_err(|reason| ModelError::Config {
            path: path.into(),
            reason,
        })?;
        Ok(config)
    }

    /// Checks the relations between fields that the forward pass relies on.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        if t.num_attention_heads == 0 || t.num_key_value_heads == 0 {
            return Err("num_attention_heads and num_key_value_heads must be positive".into());
        }
        if !t.num_attention_heads.is_multiple_of(t.num_key_value_heads) {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let head_dim = self.head_dim();
        if !head_dim.is_multiple_of(2) {
            return Err(format!("head_dim ({head_dim}) must be even"));
        }
        let section = self.mrope_section();
        if section.len() != 3 || section.iter().sum::<usize>() != head_dim / 2 {
            return Err(format!(
                "mrope_section {section:?} must have 3 entries summing to head_dim/2 = {}",
                head_dim / 2
            ));
        }
        let rope = self.rope();
        let kind = rope
            .rope_type
            .as_deref()
            .or_else(|| rope.other.get("type").and_then(|v| v.as_str()));
        // Qwen2.5-VL's hub configs spell the default rope `"type": "mrope"`; HF reads it as
        // the default rope with M-RoPE sections.
        if let Some(kind) = kind
            && kind != "default"
            && !(kind == "mrope" && self.family() == Family::Qwen25Vl)
        {
            return Err(format!(
                "rope_type {kind:?} is not supported (only \"default\")"
            ));
        }
        match (self.family(), rope.mrope_interleaved) {
            (Family::Qwen3Vl, Some(false)) => {
                return Err(
                    "only interleaved M-RoPE (mrope_interleaved: true) is supported".into(),
                );
            }
            (Family::Qwen25Vl, Some(true)) => {
                return Err("Qwen2.5-VL's M-RoPE is not interleaved (mrope_interleaved)".into());
            }
            _ => {}
        }
        if t.hidden_act != "silu" {
            return Err(format!(
                "text hidden_act {:?} is not supported",
                t.hidden_act
            ));
        }
        let vision_acts: &[&str] = match self.family() {
            Family::Qwen3Vl => &["gelu_pytorch_tanh", "gelu"],
            Family::Qwen25Vl => &["silu"],
        };
        if !vision_acts.contains(&v.hidden_act.as_str()) {
            return Err(format!(
                "vision hidden_act {:?} is not supported",
                v.hidden_act
            ));
        }
        if v.num_heads == 0 || !v.hidden_size.is_multiple_of(v.num_heads) {
            return Err(format!(
                "vision hidden_size ({}) must be a multiple of num_heads ({})",
                v.hidden_size, v.num_heads
            ));
        }
        if !(v.hidden_size / v.num_heads).is_multiple_of(4) {
            return Err("vision head dim must be a multiple of 4 (2-D rotary)".into());
        }
        match self.family() {
            Family::Qwen3Vl => {
                let side = (v.num_position_embeddings as f64).sqrt() as usize;
                if side * side != v.num_position_embeddings || side == 0 {
                    return Err(format!(
                        "vision num_position_embeddings ({}) must be a square",
                        v.num_position_embeddings
                    ));
                }
            }
            Family::Qwen25Vl => {
                let unit = v.patch_size * v.spatial_merge_size;
                match v.window_size {
                    Some(w) if w > 0 && unit > 0 && w.is_multiple_of(unit) => {}
                    other => {
                        return Err(format!(
                            "vision window_size ({other:?}) must be a positive multiple of \
                             patch_size × spatial_merge_size ({unit})"
                        ));
                    }
                }
                if let Some(bad) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
                    return Err(format!(
                        "fullatt_block_indexes holds {bad}, beyond the vision depth {}",
                        v.depth
                    ));
                }
                if !v.deepstack_visual_indexes.is_empty() {
                    return Err("Qwen2.5-VL has no deepstack_visual_indexes".into());
                }
                if t.other.get("use_sliding_window") == Some(&serde_json::Value::Bool(true)) {
                    return Err(
                        "sliding-window attention (use_sliding_window) is not supported".into(),
                    );
                }
            }
        }
        if let Some(bad) = v.deepstack_visual_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!(
                "deepstack_visual_indexes holds {bad}, beyond the vision depth {}",
                v.depth
            ));
        }
        if v.deepstack_visual_indexes.len() > t.num_hidden_layers {
            return Err("more deepstack layers than text layers".into());
        }
        if v.out_hidden_size != t.hidden_size {
            return Err(format!(
                "vision out_hidden_size ({}) must equal the text hidden_size ({})",
                v.out_hidden_size, t.hidden_size
            ));
        }
        if let Some(id) = self
            .vision_token_ids()
            .iter()
            .find(|&&id| id as usize >= t.vocab_size)
        {
            return Err(format!(
                "special token id {id} lies outside the vocabulary of {}",
                t.vocab_size
            ));
        }
        Ok(())
    }

    /// The family `model_type` names; anything but Qwen2.5-VL is read as Qwen3-VL, which
    /// [`Self::from_file`] has already checked.
    pub fn family(&self) -> Family {
        Family::from_model_type(&self.model_type).unwrap_or(Family::Qwen3Vl)
    }

    /// Whether M-RoPE interleaves its three axes across frequencies (Qwen3-VL) or gives each a
    /// contiguous section (Qwen2.5-VL).
    pub fn mrope_interleaved(&self) -> bool {
        self.family() == Family::Qwen3Vl
    }

    /// Whether each attention layer normalises q and k per head (Qwen3-VL).
    pub fn qk_norm(&self) -> bool {
        self.family() == Family::Qwen3Vl
    }

    /// Biases on (q/k/v, o): Qwen2's attention always biases q, k and v and never o; Qwen3's
    /// follows `attention_bias` for all four.
    pub fn attention_biases(&self) -> (bool, bool) {
        match self.family() {
            Family::Qwen3Vl => (
                self.text_config.attention_bias,
                self.text_config.attention_bias,
            ),
            Family::Qwen25Vl => (true, false),
        }
    }

    /// Width of one attention head: `head_dim` when given, else hidden size over query heads.
    pub fn head_dim(&self) -> usize {
        self.text_config
            .head_dim
            .unwrap_or(self.text_config.hidden_size / self.text_config.num_attention_heads)
    }

    fn rope(&self) -> RopeParameters {
        self.text_config
            .rope_parameters
            .clone()
            .or_else(|| self.text_config.rope_scaling.clone())
            .unwrap_or_default()
    }

    /// Base of the text rotary frequencies: the rope settings' `rope_theta`, else
    /// `text_config.rope_theta`, else the family's default (5,000,000; 1,000,000).
    pub fn rope_theta(&self) -> f64 {
        self.rope()
            .rope_theta
            .or(self.text_config.rope_theta)
            .unwrap_or(match self.family() {
                Family::Qwen3Vl => 5_000_000.0,
                Family::Qwen25Vl => 1_000_000.0,
            })
    }

    /// Rotary frequency pairs given to time, height and width; the family's default
    /// (`[24, 20, 20]`; `[16, 24, 24]`) if absent.
    pub fn mrope_section(&self) -> Vec<usize> {
        self.rope()
            .mrope_section
            .unwrap_or_else(|| match self.family() {
                Family::Qwen3Vl => vec![24, 20, 20],
                Family::Qwen25Vl => vec![16, 24, 24],
            })
    }

    /// Whether `lm_head` shares the embedding matrix; the top-level flag wins, as in HF.
    pub fn tie_word_embeddings(&self) -> bool {
        self.tie_word_embeddings
            .or(self.text_config.tie_word_embeddings)
            .unwrap_or(false)
    }

    /// Token ids that only mark where pixels go. A reply never holds one: there would be no
    /// image to place there, and a training row built from that reply could not be embedded.
    pub fn vision_token_ids(&self) -> [u32; 4] {
        [
            self.image_token_id,
            self.video_token_id,
            self.vision_start_token_id,
            self.vision_end_token_id,
        ]
    }

    /// Token ids that end generation by default, from the config's `eos_token_id`.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match &self.text_config.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|n| vec![n as u32]).unwrap_or_default()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64().map(|n| n as u32))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Qwen2.5-VL checkpoints on the hub (UI-TARS-1.5, OpenCUA, …) keep the text decoder's fields
/// at the top level, where transformers 5 nests them under `text_config`. Reads either: without a
/// `text_config`, the top-level object (less `vision_config`) is the text config, as HF's own
/// config class does.
fn with_text_config(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(object) = value.as_object_mut()
        && !object.contains_key("text_config")
    {
        let mut text = object.clone();
        text.remove("vision_config");
        object.insert("text_config".into(), serde_json::Value::Object(text));
    }
    value
}

/// `preprocessor_config.json` of a Qwen2-VL-style image processor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreprocessorConfig {
    /// Side of one patch in pixels (HF `patch_size`); must match the vision config.
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    /// Patches merged into one token per side (HF `merge_size`); must match `spatial_merge_size`.
    #[serde(default = "default_merge")]
    pub merge_size: usize,
    /// Frames stacked into one patch (HF `temporal_patch_size`); must match the vision config.
    #[serde(default = "default_temporal")]
    pub temporal_patch_size: usize,
    /// Per-channel mean subtracted after rescaling (HF `image_mean`).
    #[serde(default = "default_half3")]
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation the centred values are divided by (HF `image_std`).
    #[serde(default = "default_half3")]
    pub image_std: [f32; 3],
    /// Factor taking 0–255 pixel values to 0–1 (HF `rescale_factor`).
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    /// Pixel-count bounds in the newer layout (HF `size`); wins over `min_pixels` and `max_pixels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<PixelBounds>,
    /// Fewest pixels an image is scaled up to, in the older layout (HF `min_pixels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pixels: Option<usize>,
    /// Most pixels an image is scaled down to, in the older layout (HF `max_pixels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<usize>,
    /// Fields we do not use, kept so a config written back out loses nothing.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// HF's `size` field: `shortest_edge` is the minimum pixel count, `longest_edge` the maximum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PixelBounds {
    /// Fewest pixels, despite the name (HF `size.shortest_edge`).
    pub shortest_edge: usize,
    /// Most pixels, despite the name (HF `size.longest_edge`).
    pub longest_edge: usize,
}

fn default_patch() -> usize {
    16
}
fn default_merge() -> usize {
    2
}
fn default_temporal() -> usize {
    2
}
fn default_half3() -> [f32; 3] {
    [0.5, 0.5, 0.5]
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}

impl PreprocessorConfig {
    /// Reads `preprocessor_config.json`; the patch, merge and temporal sizes must be positive.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let config: Self = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.into(),
            what: "an image preprocessor config",
            source,
        })?;
        if config.patch_size == 0 || config.merge_size == 0 || config.temporal_patch_size == 0 {
            return Err(ModelError::Config {
                path: path.into(),
                reason: "patch_size, merge_size and temporal_patch_size must be positive".into(),
            });
        }
        Ok(config)
    }

    /// The fewest pixels an image is scaled up to (HF's `min_pixels`).
    pub fn min_pixels(&self) -> usize {
        self.size
            .as_ref()
            .map(|s| s.shortest_edge)
            .or(self.min_pixels)
            .unwrap_or(56 * 56)
    }

    /// The most pixels an image is scaled down to (HF's `max_pixels`).
    pub fn max_pixels(&self) -> usize {
        self.size
            .as_ref()
            .map(|s| s.longest_edge)
            .or(self.max_pixels)
            .unwrap_or(28 * 28 * 1280)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen3VLForConditionalGeneration"],
            "model_type": "qwen3_vl",
            "image_token_id": 10, "video_token_id": 11,
            "vision_start_token_id": 12, "vision_end_token_id": 13,
            "tie_word_embeddings": true,
            "text_config": {
                "vocab_size": 100, "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "head_dim": 8, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
                "rope_theta": 10000.0,
                "rope_scaling": {"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": true},
                "eos_token_id": [5, 6]
            },
            "vision_config": {
                "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                "out_hidden_size": 32, "num_position_embeddings": 16,
                "deepstack_visual_indexes": [0]
            }
        })
    }

    fn write(value: &serde_json::Value) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, value.to_string()).expect("write");
        (dir, path)
    }

    #[test]
    fn reads_legacy_rope_fields() {
        let (_dir, path) = write(&sample());
        let config = Qwen3VlConfig::from_file(&path).expect("valid");
        assert_eq!(config.mrope_section(), vec![2, 1, 1]);
        assert_eq!(config.rope_theta(), 10000.0);
        assert!(config.tie_word_embeddings());
        assert_eq!(config.eos_token_ids(), vec![5, 6]);
    }

    /// The flat layout of Qwen2.5-VL checkpoints on the hub (UI-TARS-1.5-7B's, shrunk).
    fn flat_qwen25() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
            "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
            "use_sliding_window": false, "tie_word_embeddings": false,
            "image_token_id": 10, "video_token_id": 11,
            "vision_start_token_id": 12, "vision_end_token_id": 13, "eos_token_id": 6,
            "vision_config": {
                "depth": 2, "hidden_act": "silu", "hidden_size": 16, "intermediate_size": 24,
                "num_heads": 2, "in_chans": 3, "out_hidden_size": 32, "patch_size": 14,
                "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2,
                "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2
            }
        })
    }

    #[test]
    fn reads_qwen25_in_the_hub_s_flat_layout() {
        let (_dir, path) = write(&flat_qwen25());
        let config = Qwen3VlConfig::from_file(&path).expect("valid");
        assert_eq!(config.family(), Family::Qwen25Vl);
        assert_eq!(config.text_config.hidden_size, 32);
        assert_eq!(config.head_dim(), 8);
        assert_eq!(config.mrope_section(), vec![2, 1, 1]);
        assert!(!config.mrope_interleaved() && !config.qk_norm());
        assert_eq!(config.attention_biases(), (true, false));
        assert_eq!(config.rope_theta(), 1_000_000.0);
        assert_eq!(config.eos_token_ids(), vec![6]);
        assert_eq!(config.vision_config.window_size, Some(112));
    }

    #[test]
    fn refuses_what_qwen25_layers_do_not_do() {
        for (pointer, value, named) in [
            (
                "/use_sliding_window",
                serde_json::json!(true),
                "use_sliding_window",
            ),
            (
                "/vision_config/window_size",
                serde_json::json!(100),
                "window_size",
            ),
            (
                "/vision_config/fullatt_block_indexes",
                serde_json::json!([2]),
                "fullatt_block_indexes",
            ),
            (
                "/vision_config/hidden_act",
                serde_json::json!("gelu"),
                "hidden_act",
            ),
            ("/rope_scaling/type", serde_json::json!("yarn"), "rope_type"),
        ] {
            let mut value_json = flat_qwen25();
            *value_json.pointer_mut(pointer).expect(pointer) = value;
            let (_dir, path) = write(&value_json);
            let err = Qwen3VlConfig::from_file(&path).expect_err(pointer);
            assert!(err.to_string().contains(named), "{pointer}: {err}");
        }
    }

    #[test]
    fn names_unsupported_architecture() {
        let mut value = sample();
        value["model_type"] = "llama".into();
        let (_dir, path) = write(&value);
        let err = Qwen3VlConfig::from_file(&path).expect_err("llama refused");
        assert!(err.to_string().contains("\"llama\""), "{err}");
    }

    #[test]
    fn refuses_mrope_section_not_matching_head_dim() {
        let mut value = sample();
        value["text_config"]["rope_scaling"]["mrope_section"] = serde_json::json!([2, 2, 2]);
        let (_dir, path) = write(&value);
        let err = Qwen3VlConfig::from_file(&path).expect_err("bad section");
        assert!(err.to_string().contains("mrope_section"), "{err}");
    }
}
