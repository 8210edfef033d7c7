//! Bad input gives an error that names the file, tensor or limit: never a panic, never
//! silent truncation.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{ModelError, preprocess, tiny};

fn tiny_dir(overrides: serde_json::Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = tiny::default_config();
    tiny::merge_json(&mut config, &overrides);
    tiny::write_tiny_model(dir.path(), &config, 1).expect("tiny");
    dir
}

fn load(dir: &Path) -> Result<LoadedModel, ModelError> {
    LoadedModel::load(dir.to_str().expect("utf8"), &Device::Cpu, None, &mut |_| {})
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("load");
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).expect("save");
}

const Q_PROJ: &str = "model.language_model.layers.1.self_attn.q_proj.weight";

#[test]
fn a_missing_tensor_is_named() {
    let dir = tiny_dir(serde_json::json!({}));
    rewrite_weights(dir.path(), |t| {
        t.remove(Q_PROJ);
    });
    let err = load(dir.path()).err().expect("refused");
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains(Q_PROJ), "{err}");
}

#[test]
fn an_extra_tensor_is_named() {
    let dir = tiny_dir(serde_json::json!({}));
    rewrite_weights(dir.path(), |t| {
        let extra = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).expect("zeros");
        t.insert(
            "model.language_model.layers.9.mlp.up_proj.weight".into(),
            extra,
        );
    });
    let err = load(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("layers.9.mlp.up_proj"), "{err}");
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let dir = tiny_dir(serde_json::json!({}));
    rewrite_weights(dir.path(), |t| {
        let wrong = Tensor::zeros((64, 63), candle_core::DType::F32, &Device::Cpu).expect("zeros");
        t.insert(Q_PROJ.into(), wrong);
    });
    let err = load(dir.path()).err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains(Q_PROJ) && text.contains("[64, 63]") && text.contains("[64, 64]"),
        "{text}"
    );
}

#[test]
fn a_corrupt_weights_file_is_named() {
    let dir = tiny_dir(serde_json::json!({}));
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load(dir.path()).err().expect("refused");
    assert!(matches!(err, ModelError::CorruptWeights { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn an_unsupported_architecture_is_named() {
    let dir = tiny_dir(serde_json::json!({}));
    let path = dir.path().join("config.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    value["model_type"] = "qwen2_vl".into();
    std::fs::write(&path, value.to_string()).expect("write");
    let err = load(dir.path()).err().expect("refused");
    assert!(
        matches!(err, ModelError::UnsupportedArchitecture { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("qwen2_vl"), "{err}");
}

#[test]
fn a_broken_tokenizer_is_named() {
    let dir = tiny_dir(serde_json::json!({}));
    std::fs::write(
        dir.path().join("tokenizer.json"),
        "{\"version\": \"1.0\", \"model\": 7}",
    )
    .expect("write");
    let err = load(dir.path()).err().expect("refused");
    assert!(matches!(err, ModelError::Tokenizer { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_not_truncated() {
    let dir = tiny_dir(serde_json::json!({"text_config": {"max_position_embeddings": 64}}));
    let loaded = load(dir.path()).expect("load");
    let input = loaded
        .processor
        .encode(&"word ".repeat(40), &[])
        .expect("encode");
    assert!(input.ids.len() > 64);
    let err = loaded
        .model
        .prefill(
            &mut loaded.model.new_cache(),
            &input,
            false,
            clawdesk_model::Logits::Last,
        )
        .expect_err("refused");
    assert!(
        matches!(err, ModelError::ContextOverflow { limit: 64, .. }),
        "{err}"
    );
}

#[test]
fn placeholders_and_images_must_agree() {
    let dir = tiny_dir(serde_json::json!({}));
    let loaded = load(dir.path()).expect("load");
    let image = image::DynamicImage::new_rgb8(64, 64);
    let err = loaded
        .processor
        .encode("<|image_pad|> and <|image_pad|>", &[image])
        .expect_err("refused");
    assert!(
        matches!(
            err,
            ModelError::ImageCountMismatch {
                placeholders: 2,
                images: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn degenerate_and_huge_images_are_refused() {
    let err = preprocess::check_size(1, 1).expect_err("1x1");
    assert!(err.to_string().contains("1x1"), "{err}");
    let err = preprocess::check_size(20000, 20000).expect_err("huge");
    assert!(
        err.to_string().contains("20000x20000") && err.to_string().contains("limit"),
        "{err}"
    );
    // A file that claims 20000x20000 is refused from its header, before decoding.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.png");
    std::fs::write(&path, png_header(20000, 20000)).expect("write");
    let err = preprocess::load_image(&path).expect_err("huge file");
    assert!(err.to_string().contains("20000x20000"), "{err}");
}

/// A PNG signature, IHDR (8-bit RGB), an empty IDAT and IEND, with CRCs: a header that claims
/// any size in a few bytes.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", ihdr),
        (b"IDAT", Vec::new()),
        (b"IEND", Vec::new()),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn decoding_with_lora_switched_since_the_prefill_is_refused() {
    let dir = tiny_dir(serde_json::json!({}));
    let mut loaded = load(dir.path()).expect("load");
    loaded
        .model
        .attach_lora(clawdesk_model::LoraConfig::new(2, 4.0), 0)
        .expect("attach");
    let input = loaded.processor.encode("hello", &[]).expect("encode");
    let mut cache = loaded.model.new_cache();
    loaded
        .model
        .prefill(&mut cache, &input, false, clawdesk_model::Logits::Last)
        .expect("prefill");
    let err = loaded
        .model
        .decode(&mut cache, 65, true)
        .expect_err("mixed");
    assert!(
        err.to_string().contains("LoRA on") && err.to_string().contains("LoRA off"),
        "{err}"
    );
    let err = loaded
        .model
        .decode(&mut loaded.model.new_cache(), 65, false)
        .expect_err("no prefill");
    assert!(err.to_string().contains("before prefill"), "{err}");
}

#[test]
fn adapters_peft_would_read_differently_are_refused_with_the_reason() {
    let dir = tiny_dir(serde_json::json!({}));
    let mut loaded = load(dir.path()).expect("load");
    let adapter = dir.path().join("adapter");
    clawdesk_model::peft::write_random_adapter(
        &mut loaded.model,
        clawdesk_model::LoraConfig::new(2, 4.0),
        1,
        &adapter,
        "tiny",
    )
    .expect("adapter");
    let config_path = adapter.join("adapter_config.json");
    let original = std::fs::read_to_string(&config_path).expect("config");
    let edit = |field: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(&original).expect("json");
        v[field] = value;
        std::fs::write(&config_path, v.to_string()).expect("write");
    };
    for (field, value, words) in [
        ("use_dora", serde_json::json!(true), "DoRA"),
        (
            "target_modules",
            serde_json::json!(".*proj"),
            "regular expression",
        ),
        (
            "rank_pattern",
            serde_json::json!({"q_proj": 4}),
            "rank_pattern",
        ),
        ("peft_type", serde_json::json!("IA3"), "LORA"),
    ] {
        edit(field, value);
        let err =
            clawdesk_model::peft::import_adapter(&mut loaded.model, &adapter).expect_err(field);
        assert!(err.to_string().contains(words), "{field}: {err}");
    }
    std::fs::write(&config_path, &original).expect("restore");
    clawdesk_model::peft::import_adapter(&mut loaded.model, &adapter).expect("valid adapter");

    // A lora_A without its lora_B is refused, naming the module.
    let weights = adapter.join("adapter_model.safetensors");
    let key = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight";
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).expect("load");
    assert!(tensors.remove(key).is_some());
    candle_core::safetensors::save(&tensors, &weights).expect("save");
    let err = clawdesk_model::peft::import_adapter(&mut loaded.model, &adapter).expect_err("half");
    assert!(
        err.to_string().contains("layers.0.self_attn.q_proj"),
        "{err}"
    );
}
