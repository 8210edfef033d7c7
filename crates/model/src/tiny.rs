//! Writes a complete, seeded, random Qwen3-VL or Qwen2.5-VL directory in exactly HF's format: config,
//! safetensors, a byte-level BPE tokenizer with every special token, the preprocessor config
//! and the chat template. Tests and HF transformers load the same files, so nothing needs a
//! download and parity checks compare like with like.

use std::path::Path;

use crate::config::{Family, Qwen3VlConfig};
use crate::error::{ModelError, Result};
use crate::rng::SeededRng;

/// Qwen's special tokens, in the order they follow the 256 byte tokens.
pub const SPECIAL_TOKENS: [(&str, bool); 20] = [
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<|object_ref_start|>", true),
    ("<|object_ref_end|>", true),
    ("<|box_start|>", true),
    ("<|box_end|>", true),
    ("<|quad_start|>", true),
    ("<|quad_end|>", true),
    ("<|vision_start|>", true),
    ("<|vision_end|>", true),
    ("<|vision_pad|>", true),
    ("<|image_pad|>", true),
    ("<|video_pad|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<think>", false),
    ("</think>", false),
    ("<tool_response>", false),
    ("</tool_response>", false),
];

const CHAT_TEMPLATE: &str = include_str!("../assets/qwen3_vl_chat_template.jinja");
/// Qwen2-VL's template, which Qwen2.5-VL and the models built on it ship: a default system
/// turn, no tools.
const QWEN25_CHAT_TEMPLATE: &str = include_str!("../assets/qwen2_5_vl_chat_template.jinja");

fn special_id(name: &str) -> u32 {
    256 + SPECIAL_TOKENS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(0) as u32
}

/// The default tiny shape: every architectural feature present (GQA, DeepStack on two layers,
/// interpolated positions, tied embeddings), small enough for CPU tests.
pub fn default_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "model_type": "qwen3_vl",
        "image_token_id": special_id("<|image_pad|>"),
        "video_token_id": special_id("<|video_pad|>"),
        "vision_start_token_id": special_id("<|vision_start|>"),
        "vision_end_token_id": special_id("<|vision_end|>"),
        "tie_word_embeddings": true,
        "dtype": "float32",
        "text_config": {
            "model_type": "qwen3_vl_text",
            "vocab_size": 288,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_theta": 5000000.0,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": true},
            "attention_bias": false,
            "attention_dropout": 0.0,
            "tie_word_embeddings": true,
            "bos_token_id": special_id("<|endoftext|>"),
            "eos_token_id": special_id("<|im_end|>"),
            "initializer_range": 0.02,
            "use_cache": true,
            "dtype": "float32"
        },
        "vision_config": {
            "model_type": "qwen3_vl",
            "depth": 3,
            "hidden_size": 32,
            "hidden_act": "gelu_pytorch_tanh",
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
            "initializer_range": 0.02
        }
    })
}

/// The default tiny Qwen2.5-VL: every architectural feature present (GQA, biased q/k/v, M-RoPE
/// in sections, windows of 2×2 merged tokens with one full-attention block, an untied
/// `lm_head`), in transformers 5's nested layout.
pub fn default_qwen25_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "image_token_id": special_id("<|image_pad|>"),
        "video_token_id": special_id("<|video_pad|>"),
        "vision_start_token_id": special_id("<|vision_start|>"),
        "vision_end_token_id": special_id("<|vision_end|>"),
        "tie_word_embeddings": false,
        "dtype": "float32",
        "text_config": {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": 288,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "attention_dropout": 0.0,
            "tie_word_embeddings": false,
            "use_sliding_window": false,
            "bos_token_id": special_id("<|endoftext|>"),
            "eos_token_id": special_id("<|im_end|>"),
            "initializer_range": 0.02,
            "use_cache": true,
            "dtype": "float32"
        },
        "vision_config": {
            "model_type": "qwen2_5_vl_vision",
            "depth": 3,
            "hidden_size": 32,
            "hidden_act": "silu",
            "intermediate_size": 48,
            "num_heads": 2,
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "out_hidden_size": 64,
            "tokens_per_second": 2,
            "initializer_range": 0.02
        }
    })
}

/// The default tiny config of a family.
pub fn default_config_for(family: Family) -> serde_json::Value {
    match family {
        Family::Qwen3Vl => default_config(),
        Family::Qwen25Vl => default_qwen25_config(),
    }
}

/// Merges `overlay` into `base`, object by object (any HF config field can be overridden).
pub fn merge_json(base: &mut serde_json::Value, overlay: &serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge_json(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Writes the tiny model directory for `config_json` (the default merged with any overrides).
pub fn write_tiny_model(out: &Path, config_json: &serde_json::Value, seed: u64) -> Result<()> {
    write_tiny_model_with_words(out, config_json, seed, &[])
}

/// How a tiny model's random weights are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// Every layer passes activations of order one: what parity tests need (a comparison on
    /// near-zero outputs would hide mistakes).
    #[default]
    OrderOne,
    /// The language model as HF initialises one for training: linears and embeddings drawn
    /// with the config's `initializer_range`, norms at one, so each layer starts close to the
    /// identity on the residual stream. From order-one layers the tiny model does not learn
    /// associative recall, the gym's lookup, in thousands of steps (bench/RESULTS.md); the
    /// vision tower stays order-one, its features carrying the screenshot.
    Trainable,
}

/// As [`write_tiny_model`], with each of `words` one token of its own (an added, non-special
/// token matched as a whole word, ids after the special tokens), so that a task's names and
/// numbers are single tokens rather than one per character. `vocab_size` must hold them.
pub fn write_tiny_model_with_words(
    out: &Path,
    config_json: &serde_json::Value,
    seed: u64,
    words: &[String],
) -> Result<()> {
    write_tiny_model_with(out, config_json, seed, words, Init::OrderOne)
}

/// As [`write_tiny_model_with_words`], drawing the weights as `init` says.
pub fn write_tiny_model_with(
    out: &Path,
    config_json: &serde_json::Value,
    seed: u64,
    words: &[String],
    init: Init,
) -> Result<()> {
    let config: Qwen3VlConfig =
        serde_json::from_value(config_json.clone()).map_err(|source| ModelError::Json {
            path: out.join("config.json"),
            what: "a Qwen3-VL config",
            source,
        })?;
    config.validate().map_err(|reason| ModelError::Config {
        path: out.join("config.json"),
        reason,
    })?;
    let needed = words_base() + words.len();
    if config.text_config.vocab_size < needed {
        return Err(ModelError::Config {
            path: out.join("config.json"),
            reason: format!(
                "vocab_size must be at least {needed} for the byte-level tokenizer and {} words",
                words.len()
            ),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| ModelError::io(out, e))?;
    let write = |name: &str, text: String| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    };
    write("config.json", pretty(config_json))?;
    write("tokenizer.json", pretty(&tokenizer_json(words)))?;
    write(
        "tokenizer_config.json",
        pretty(&tokenizer_config_json(words)),
    )?;
    let template = match config.family() {
        Family::Qwen3Vl => CHAT_TEMPLATE,
        Family::Qwen25Vl => QWEN25_CHAT_TEMPLATE,
    };
    write("chat_template.jinja", template.to_string())?;
    write(
        "preprocessor_config.json",
        pretty(&preprocessor_json(&config)),
    )?;
    write(
        "generation_config.json",
        pretty(&serde_json::json!({
            "bos_token_id": special_id("<|endoftext|>"),
            "eos_token_id": [special_id("<|im_end|>"), special_id("<|endoftext|>")],
            "pad_token_id": special_id("<|endoftext|>"),
            "do_sample": true,
            "temperature": 0.7,
            "top_k": 20,
            "top_p": 0.8
        })),
    )?;
    let range = config_json
        .pointer("/text_config/initializer_range")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.02);
    let tensors = random_tensors(&config, seed, init, range);
    write_safetensors(&out.join("model.safetensors"), &tensors)?;
    // A broken tokenizer file must fail here, not in the first test that loads it.
    tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).map_err(|e| {
        ModelError::Tokenizer {
            path: out.join("tokenizer.json"),
            reason: e.to_string(),
        }
    })?;
    Ok(())
}

fn pretty(value: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// GPT-2's byte-to-character table used by byte-level BPE.
pub fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut extra = 0;
    let mut table = vec!['\0'; 256];
    for b in 0..256u32 {
        if let Some(pos) = printable.iter().position(|&p| p == b) {
            printable.remove(pos);
            table[b as usize] = char::from_u32(b).unwrap_or('?');
        } else {
            table[b as usize] = char::from_u32(256 + extra).unwrap_or('?');
            extra += 1;
        }
    }
    table
}

/// The id of the first word token: after the bytes and the special tokens.
fn words_base() -> usize {
    256 + SPECIAL_TOKENS.len()
}

/// The smallest `vocab_size` that holds the bytes, the special tokens and `words` words.
pub fn vocab_size_for(words: usize) -> usize {
    words_base() + words
}

/// Every added token: the special ones, then the words, as `(id, content, special)`.
fn added_tokens(words: &[String]) -> Vec<(usize, String, bool)> {
    SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, (content, special))| (256 + i, (*content).to_owned(), *special))
        .chain(
            words
                .iter()
                .enumerate()
                .map(|(i, w)| (words_base() + i, w.clone(), false)),
        )
        .collect()
}

fn tokenizer_json(words: &[String]) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (id, ch) in byte_chars().into_iter().enumerate() {
        vocab.insert(ch.to_string(), id.into());
    }
    let added: Vec<serde_json::Value> = added_tokens(words)
        .into_iter()
        .map(|(id, content, special)| {
            // A word only matches whole ("red" not inside "ordered").
            serde_json::json!({
                "id": id, "content": content, "single_word": !special, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special
            })
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    })
}

fn tokenizer_config_json(words: &[String]) -> serde_json::Value {
    let decoder: serde_json::Map<String, serde_json::Value> = added_tokens(words)
        .into_iter()
        .map(|(id, content, special)| {
            (
                id.to_string(),
                serde_json::json!({"content": content, "lstrip": false, "normalized": false,
                    "rstrip": false, "single_word": !special, "special": special}),
            )
        })
        .collect();
    serde_json::json!({
        "added_tokens_decoder": decoder,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "clean_up_tokenization_spaces": false,
        "errors": "replace",
        "model_max_length": 4096,
        "split_special_tokens": false,
        "tokenizer_class": "PreTrainedTokenizerFast"
    })
}

fn preprocessor_json(config: &Qwen3VlConfig) -> serde_json::Value {
    let v = &config.vision_config;
    let unit = (v.patch_size * v.spatial_merge_size).pow(2);
    // Qwen2.5-VL keeps CLIP's normalisation; Qwen3-VL centres on one half.
    let (mean, std, processor) = match config.family() {
        Family::Qwen3Vl => ([0.5; 3], [0.5; 3], "Qwen3VLProcessor"),
        Family::Qwen25Vl => (
            [0.481_454_66, 0.457_827_5, 0.408_210_73],
            [0.268_629_54, 0.261_302_58, 0.275_777_11],
            "Qwen2_5_VLProcessor",
        ),
    };
    serde_json::json!({
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": mean,
        "image_std": std,
        "image_processor_type": "Qwen2VLImageProcessor",
        "merge_size": v.spatial_merge_size,
        "patch_size": v.patch_size,
        "temporal_patch_size": v.temporal_patch_size,
        "processor_class": processor,
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": 4 * unit, "longest_edge": 64 * unit}
    })
}

/// Every tensor the architecture needs, named and shaped as HF saves them.
pub fn tensor_shapes(config: &Qwen3VlConfig) -> Vec<(String, Vec<usize>)> {
    match config.family() {
        Family::Qwen3Vl => qwen3_shapes(config),
        Family::Qwen25Vl => qwen25_shapes(config),
    }
}

/// The language model's tensors, in the order both families save them: per layer the two
/// norms, q/k/v/o with the family's biases, Qwen3's q/k norms, the MLP; then the final norm and
/// an untied head.
fn text_shapes(config: &Qwen3VlConfig) -> Vec<(String, Vec<usize>)> {
    let t = &config.text_config;
    let hd = config.head_dim();
    let (h, nh, nkv, im) = (
        t.hidden_size,
        t.num_attention_heads,
        t.num_key_value_heads,
        t.intermediate_size,
    );
    let (qkv_bias, o_bias) = config.attention_biases();
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
    let lm = "model.language_model";
    add(format!("{lm}.embed_tokens.weight"), vec![t.vocab_size, h]);
    for i in 0..t.num_hidden_layers {
        let p = format!("{lm}.layers.{i}");
        add(format!("{p}.input_layernorm.weight"), vec![h]);
        add(format!("{p}.post_attention_layernorm.weight"), vec![h]);
        for (name, out_d, in_d, bias) in [
            ("q_proj", nh * hd, h, qkv_bias),
            ("k_proj", nkv * hd, h, qkv_bias),
            ("v_proj", nkv * hd, h, qkv_bias),
            ("o_proj", h, nh * hd, o_bias),
        ] {
            add(format!("{p}.self_attn.{name}.weight"), vec![out_d, in_d]);
            if bias {
                add(format!("{p}.self_attn.{name}.bias"), vec![out_d]);
            }
        }
        if config.qk_norm() {
            add(format!("{p}.self_attn.q_norm.weight"), vec![hd]);
            add(format!("{p}.self_attn.k_norm.weight"), vec![hd]);
        }
        add(format!("{p}.mlp.gate_proj.weight"), vec![im, h]);
        add(format!("{p}.mlp.up_proj.weight"), vec![im, h]);
        add(format!("{p}.mlp.down_proj.weight"), vec![h, im]);
    }
    add(format!("{lm}.norm.weight"), vec![h]);
    if !config.tie_word_embeddings() {
        add("lm_head.weight".into(), vec![t.vocab_size, h]);
    }
    out
}

fn qwen25_shapes(config: &Qwen3VlConfig) -> Vec<(String, Vec<usize>)> {
    let v = &config.vision_config;
    let mut out = text_shapes(config);
    let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
    let vp = "model.visual";
    let (vh, vim) = (v.hidden_size, v.intermediate_size);
    let merged = vh * v.spatial_merge_size * v.spatial_merge_size;
    add(
        format!("{vp}.patch_embed.proj.weight"),
        vec![
            vh,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
    );
    for i in 0..v.depth {
        let p = format!("{vp}.blocks.{i}");
        add(format!("{p}.norm1.weight"), vec![vh]);
        add(format!("{p}.norm2.weight"), vec![vh]);
        add(format!("{p}.attn.qkv.weight"), vec![3 * vh, vh]);
        add(format!("{p}.attn.qkv.bias"), vec![3 * vh]);
        add(format!("{p}.attn.proj.weight"), vec![vh, vh]);
        add(format!("{p}.attn.proj.bias"), vec![vh]);
        for (name, out_d, in_d) in [
            ("gate_proj", vim, vh),
            ("up_proj", vim, vh),
            ("down_proj", vh, vim),
        ] {
            add(format!("{p}.mlp.{name}.weight"), vec![out_d, in_d]);
            add(format!("{p}.mlp.{name}.bias"), vec![out_d]);
        }
    }
    add(format!("{vp}.merger.ln_q.weight"), vec![vh]);
    add(format!("{vp}.merger.mlp.0.weight"), vec![merged, merged]);
    add(format!("{vp}.merger.mlp.0.bias"), vec![merged]);
    add(
        format!("{vp}.merger.mlp.2.weight"),
        vec![v.out_hidden_size, merged],
    );
    add(format!("{vp}.merger.mlp.2.bias"), vec![v.out_hidden_size]);
    out
}

fn qwen3_shapes(config: &Qwen3VlConfig) -> Vec<(String, Vec<usize>)> {
    let v = &config.vision_config;
    let mut out = text_shapes(config);
    let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
    let vp = "model.visual";
    let vh = v.hidden_size;
    let merged = vh * v.spatial_merge_size * v.spatial_merge_size;
    add(
        format!("{vp}.patch_embed.proj.weight"),
        vec![
            vh,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
    );
    add(format!("{vp}.patch_embed.proj.bias"), vec![vh]);
    add(
        format!("{vp}.pos_embed.weight"),
        vec![v.num_position_embeddings, vh],
    );
    for i in 0..v.depth {
        let p = format!("{vp}.blocks.{i}");
        for n in ["norm1", "norm2"] {
            add(format!("{p}.{n}.weight"), vec![vh]);
            add(format!("{p}.{n}.bias"), vec![vh]);
        }
        add(format!("{p}.attn.qkv.weight"), vec![3 * vh, vh]);
        add(format!("{p}.attn.qkv.bias"), vec![3 * vh]);
        add(format!("{p}.attn.proj.weight"), vec![vh, vh]);
        add(format!("{p}.attn.proj.bias"), vec![vh]);
        add(
            format!("{p}.mlp.linear_fc1.weight"),
            vec![v.intermediate_size, vh],
        );
        add(
            format!("{p}.mlp.linear_fc1.bias"),
            vec![v.intermediate_size],
        );
        add(
            format!("{p}.mlp.linear_fc2.weight"),
            vec![vh, v.intermediate_size],
        );
        add(format!("{p}.mlp.linear_fc2.bias"), vec![vh]);
    }
    let mut merger = |p: String, norm: usize| {
        add(format!("{p}.norm.weight"), vec![norm]);
        add(format!("{p}.norm.bias"), vec![norm]);
        add(format!("{p}.linear_fc1.weight"), vec![merged, merged]);
        add(format!("{p}.linear_fc1.bias"), vec![merged]);
        add(
            format!("{p}.linear_fc2.weight"),
            vec![v.out_hidden_size, merged],
        );
        add(format!("{p}.linear_fc2.bias"), vec![v.out_hidden_size]);
    };
    merger(format!("{vp}.merger"), vh);
    for i in 0..v.deepstack_visual_indexes.len() {
        merger(format!("{vp}.deepstack_merger_list.{i}"), merged);
    }
    out
}

/// Random values scaled so activations stay of order one through every layer: a parity test
/// on near-zero outputs would hide mistakes.
/// [`Init::Trainable`] redraws the language model's tensors from the same stream, so the
/// vision tower's weights are the same under either init.
fn random_tensors(
    config: &Qwen3VlConfig,
    seed: u64,
    init: Init,
    range: f64,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = SeededRng::new(seed);
    tensor_shapes(config)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let language = name.starts_with("model.language_model.") || name == "lm_head.weight";
            if init == Init::Trainable && language {
                let drawn = rng.normals(n, range);
                let data = if name.ends_with("norm.weight") {
                    vec![1.0; n]
                } else {
                    drawn
                };
                return (name, shape, data);
            }
            let data = if name.ends_with("norm.weight")
                || name.contains("layernorm")
                || name.contains(".norm1.weight")
                || name.contains(".ln_q.weight")
                || name.contains(".norm2.weight")
            {
                rng.normals(n, 0.1).into_iter().map(|x| 1.0 + x).collect()
            } else if name.ends_with(".bias") {
                rng.normals(n, 0.1)
            } else if name.contains("embed_tokens") || name.contains("pos_embed") {
                rng.normals(n, 1.0)
            } else {
                let fan_in: usize = shape[1..].iter().product();
                rng.normals(n, 1.0 / (fan_in.max(1) as f64).sqrt())
            };
            (name, shape, data)
        })
        .collect()
}

/// Writes f32 tensors with PyTorch's `{"format": "pt"}` metadata.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), shape.clone(), raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ModelError::CorruptWeights {
            path: path.into(),
            reason: e.to_string(),
        })?;
    let metadata: Option<std::collections::HashMap<String, String>> = Some(
        [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect(),
    );
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| ModelError::CorruptWeights {
        path: path.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trainable_init_draws_the_language_model_small_and_leaves_the_vision_tower() {
        let config: Qwen3VlConfig =
            serde_json::from_value(default_config()).expect("the default config parses");
        let order_one = random_tensors(&config, 3, Init::OrderOne, 0.02);
        let trainable = random_tensors(&config, 3, Init::Trainable, 0.02);
        let std = |data: &[f32]| {
            (data.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / data.len() as f64).sqrt()
        };
        for ((name, _, a), (_, _, b)) in order_one.iter().zip(&trainable) {
            if !name.starts_with("model.language_model.") {
                assert_eq!(a, b, "{name} changed");
            } else if name.ends_with("norm.weight") {
                assert!(b.iter().all(|&v| v == 1.0), "{name} is not all ones");
            } else {
                let (sa, sb) = (std(a), std(b));
                assert!((0.015..0.025).contains(&sb), "{name}: std {sb}");
                assert!(sa > 4.0 * sb, "{name}: order-one std {sa}");
            }
        }
    }

    #[test]
    fn words_become_single_tokens_only_where_they_stand_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let words: Vec<String> = ["red", "button", "375"].map(String::from).to_vec();
        let mut config = default_config();
        config["text_config"]["vocab_size"] = (words_base() + words.len()).into();
        write_tiny_model_with_words(dir.path(), &config, 1, &words).expect("written");
        let tokenizer =
            tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("loads");
        let ids = |text: &str| {
            tokenizer
                .encode(text, false)
                .expect("encodes")
                .get_ids()
                .to_vec()
        };
        let red = words_base() as u32;
        let number = red + 2;
        let clicked = ids("Click the red button (375,250)");
        assert!(clicked.contains(&red) && clicked.contains(&(red + 1)));
        assert!(clicked.contains(&number), "{clicked:?}");
        assert!(
            !ids("ordered").contains(&red),
            "a word inside another stays bytes"
        );
        let decoded = tokenizer.decode(&clicked, true).expect("decodes");
        assert_eq!(decoded, "Click the red button (375,250)");
        // Too small a vocabulary for the words is refused.
        let mut small = default_config();
        small["text_config"]["vocab_size"] = (vocab_size_for(words.len()) - 1).into();
        assert!(write_tiny_model_with_words(dir.path(), &small, 1, &words).is_err());
    }
}
