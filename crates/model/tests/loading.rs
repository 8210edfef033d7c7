//! Loading a model whose weights are split into shards with an index, as HF writes large
//! checkpoints: the same model, the same logits.

use candle_core::{Device, Tensor};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{Mode, tiny};

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
    let diff = (la - lb)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff");
    assert_eq!(diff, 0.0);

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
