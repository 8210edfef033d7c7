//! Loading a model whose weights are split into shards with an index, as HF writes large
//! checkpoints: the same model, the same logits.

use candle_core::{Device, Tensor};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{Mode, tiny};

fn max_abs_diff(a: Tensor, b: Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn sharded_weights_with_an_index_load_to_the_same_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let single = dir.path().join("single");
    tiny::write_tiny_model(&single, &tiny::default_config(), 8).expect("tiny");
    let sharded = dir.path().join("sharded");
    std::fs::create_dir_all(&sharded).expect("dir");
    for entry in std::fs::read_dir(&single).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), sharded.join(entry.file_name())).expect("copy");
        }
    }
    let tensors = candle_core::safetensors::load(single.join("model.safetensors"), &Device::Cpu)
        .expect("load");
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let shard: std::collections::HashMap<String, Tensor> = part
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&shard, sharded.join(file)).expect("save shard");
        for n in part {
            map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("index");

    let load = |p: &std::path::Path| {
        LoadedModel::load(p.to_str().expect("utf8"), &Device::Cpu, None, &mut |_| {})
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (a, b) = (load(&single), load(&sharded));
    let input = a
        .processor
        .encode("<|im_start|>user\nhello<|im_end|>\n", &[])
        .expect("encode");
    let la = a
        .model
        .full_logits(&input, Mode::Fast, false)
        .expect("logits");
    let lb = b
        .model
        .full_logits(&input, Mode::Fast, false)
        .expect("logits");
    assert_eq!(max_abs_diff(la, lb), 0.0);

    // A shard named by the index but absent is named in the error.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).expect("remove");
    let err = LoadedModel::load(
        sharded.to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .err()
    .expect("missing shard refused");
    assert!(
        err.to_string().contains("model-00002-of-00002.safetensors"),
        "{err}"
    );
}

/// Qwen2.5-VL checkpoints on the hub (and what transformers 5 itself saves for this family)
/// name the tensors `visual.*` and `model.layers.*`, with the text fields at the config's top
/// level: the same model in that layout loads to the same logits, image included.
#[test]
fn a_qwen25_checkpoint_in_the_hub_s_layout_loads_to_the_same_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = dir.path().join("ours");
    let config = tiny::default_qwen25_config();
    tiny::write_tiny_model(&ours, &config, 4).expect("tiny");
    let hub = dir.path().join("hub");
    std::fs::create_dir_all(&hub).expect("dir");
    for entry in std::fs::read_dir(&ours).expect("list") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name != "model.safetensors" && name != "config.json" {
            std::fs::copy(entry.path(), hub.join(&name)).expect("copy");
        }
    }
    let tensors =
        candle_core::safetensors::load(ours.join("model.safetensors"), &Device::Cpu).expect("load");
    let renamed: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let old = if let Some(rest) = name.strip_prefix("model.visual.") {
                format!("visual.{rest}")
            } else if let Some(rest) = name.strip_prefix("model.language_model.") {
                format!("model.{rest}")
            } else {
                name
            };
            (old, t)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.starts_with("visual.blocks.")));
    assert!(renamed.keys().any(|k| k.starts_with("model.layers.")));
    candle_core::safetensors::save(&renamed, hub.join("model.safetensors")).expect("save");
    // The flat config: text fields at the top, rope as the hub spells it.
    let mut flat = config["text_config"].as_object().expect("text").clone();
    flat.remove("rope_parameters");
    flat.insert("rope_theta".into(), 1_000_000.0.into());
    flat.insert(
        "rope_scaling".into(),
        serde_json::json!({"type": "mrope", "mrope_section": [2, 3, 3]}),
    );
    for key in [
        "architectures",
        "model_type",
        "image_token_id",
        "video_token_id",
        "vision_start_token_id",
        "vision_end_token_id",
        "tie_word_embeddings",
        "vision_config",
    ] {
        flat.insert(key.into(), config[key].clone());
    }
    std::fs::write(
        hub.join("config.json"),
        serde_json::Value::Object(flat).to_string(),
    )
    .expect("config");

    let load = |p: &std::path::Path| {
        LoadedModel::load(p.to_str().expect("utf8"), &Device::Cpu, None, &mut |_| {})
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (a, b) = (load(&ours), load(&hub));
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(112, 84, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    }));
    let text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hello<|im_end|>\n";
    let input = a.processor.encode(text, &[image]).expect("encode");
    assert!(!input.images.is_empty());
    let logits = |m: &LoadedModel| {
        m.model
            .full_logits(&input, Mode::Fast, false)
            .expect("logits")
    };
    assert_eq!(max_abs_diff(logits(&a), logits(&b)), 0.0);
}
