//! Gradients through Train mode: every LoRA weight gets a finite, non-zero gradient from a
//! loss on response log-probabilities (image prompt included, so DeepStack and M-RoPE paths are
//! on the graph), finite differences agree, and a loss computed in Fast mode is refused.

use candle_core::{D, Device, Tensor, Var};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, Mode, ModelInput, Qwen3Vl, ScoreItem, tiny};

fn model_with_adapter() -> (tempfile::TempDir, LoadedModel) {
    model_with_adapter_from(&tiny::default_config())
}

fn model_with_adapter_from(config: &serde_json::Value) -> (tempfile::TempDir, LoadedModel) {
    model_with(config, LoraConfig::new(4, 8.0))
}

fn model_with(config: &serde_json::Value, lora: LoraConfig) -> (tempfile::TempDir, LoadedModel) {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(dir.path(), config, 21).expect("tiny");
    let mut loaded = LoadedModel::load(
        dir.path().to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    loaded.model.attach_lora(lora, 5).expect("attach");
    // B starts at zero, which would give A no gradient at all; make it non-zero.
    let mut rng = clawdesk_model::rng::SeededRng::new(9);
    for (_, lora) in loaded.model.lora_weights() {
        let b = lora.b.as_tensor();
        let values = Tensor::from_vec(rng.normals(b.elem_count(), 0.2), b.dims(), b.device())
            .expect("values");
        lora.b.set(&values).expect("set");
    }
    (dir, loaded)
}

fn batch(loaded: &LoadedModel) -> Vec<ScoreItem> {
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(90, 70, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 3) as u8, ((x ^ y) * 5) as u8])
    }));
    let with_image = loaded
        .processor
        .encode(
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Click it<|im_end|>\n<|im_start|>assistant\n",
            &[image],
        )
        .expect("encode");
    let text_only = loaded
        .processor
        .encode(
            "<|im_start|>user\nType hello please<|im_end|>\n<|im_start|>assistant\n",
            &[],
        )
        .expect("encode");
    let response = loaded
        .processor
        .tokenize("left_click(500, 300)")
        .expect("tokens");
    vec![
        ScoreItem {
            prompt: with_image,
            response: response.clone(),
        },
        ScoreItem {
            prompt: text_only,
            response: response[..7].to_vec(),
        },
    ]
}

/// A text prompt of several of attention's blocks (64 query rows each).
fn long_prompt(loaded: &LoadedModel) -> ModelInput {
    let prompt = loaded
        .processor
        .encode(
            &format!(
                "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
                "Type hello please, then click the blue button. ".repeat(12)
            ),
            &[],
        )
        .expect("encode");
    assert!(prompt.ids.len() > 2 * 64, "{} tokens", prompt.ids.len());
    prompt
}

fn loss(model: &Qwen3Vl, items: &[ScoreItem]) -> Tensor {
    let scored = model.score(items, true).expect("score");
    scored
        .logprobs
        .mean_all()
        .expect("mean")
        .neg()
        .expect("neg")
}

#[test]
fn every_lora_weight_gets_a_gradient_that_finite_differences_confirm() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let l = loss(&loaded.model, &items);
    let grads = l.backward().expect("backward");
    let pairs = loaded
        .model
        .lora_gradients(&grads)
        .expect("all gradients present");
    assert_eq!(pairs.len(), 2 * 7 * 2, "7 targets x 2 layers x (A, B)");
    for (var, g) in &pairs {
        let values = g
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("grad");
        assert!(values.iter().all(|v| v.is_finite()), "non-finite gradient");
        assert!(
            values.iter().any(|v| v.abs() > 0.0),
            "zero gradient for a {:?} weight",
            var.dims()
        );
    }
    // Central differences on the largest gradient entry of a few weights.
    for &which in &[0usize, 1, 9, 27] {
        let (var, g) = &pairs[which];
        let gv = g
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("grad");
        let (idx, &analytic) = gv
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("entry");
        let eps = 1e-2f32;
        let numeric = (eval_with(&loaded.model, &items, var, idx, eps)
            - eval_with(&loaded.model, &items, var, idx, -eps))
            / (2.0 * eps);
        let err = (numeric - analytic).abs();
        assert!(
            err <= 0.03 * analytic.abs() + 1e-4,
            "weight {which} entry {idx}: analytic {analytic}, numeric {numeric}"
        );
    }
}

#[test]
fn trained_norms_and_embeddings_get_gradients_that_finite_differences_confirm() {
    let (_dir, mut loaded) = model_with_adapter();
    let vars = loaded
        .model
        .train_base_weights(true, true)
        .expect("trainable");
    // Four norms per layer and the final one, then the (tied) embeddings.
    assert_eq!(vars.len(), 2 * 4 + 1 + 1);
    assert!(
        vars[2].0.ends_with("self_attn.q_norm.weight"),
        "{}",
        vars[2].0
    );
    let items = batch(&loaded);
    assert_gradients_match_finite_differences(&loaded.model, &items, &vars);
    // What is saved is what was trained: moving a norm shows in the saved weights.
    let (name, var) = &vars[2];
    assert_saved_as_trained(&mut loaded.model, name, var, 3.0);
}

#[test]
fn an_untied_head_trains_beside_the_embeddings_and_is_saved() {
    let mut config = tiny::default_config();
    tiny::merge_json(
        &mut config,
        &serde_json::json!({"tie_word_embeddings": false, "text_config": {"tie_word_embeddings": false}}),
    );
    let (_dir, mut loaded) = model_with_adapter_from(&config);
    let vars = loaded
        .model
        .train_base_weights(false, true)
        .expect("trainable");
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["model.language_model.embed_tokens.weight", "lm_head.weight"]
    );
    let items = batch(&loaded);
    assert_gradients_match_finite_differences(&loaded.model, &items, &vars);
    // The head is saved as trained, under its own name.
    let (name, head) = &vars[1];
    assert_saved_as_trained(&mut loaded.model, name, head, 2.0);
}

/// Every var gets a finite, non-zero gradient whose largest entry central differences
/// confirm.
fn assert_gradients_match_finite_differences(
    model: &Qwen3Vl,
    items: &[ScoreItem],
    vars: &[(String, Var)],
) {
    let grads = loss(model, items).backward().expect("backward");
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let gv = g
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("grad");
        assert!(gv.iter().all(|v| v.is_finite()), "{name}");
        let (idx, &analytic) = gv
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("entry");
        assert!(analytic.abs() > 0.0, "zero gradient for {name}");
        let eps = 1e-2f32;
        let numeric = (eval_with(model, items, var, idx, eps)
            - eval_with(model, items, var, idx, -eps))
            / (2.0 * eps);
        assert!(
            (numeric - analytic).abs() <= 0.03 * analytic.abs() + 1e-4,
            "{name} entry {idx}: analytic {analytic}, numeric {numeric}"
        );
    }
}

/// Scales `var` by `factor` and checks that [`Qwen3Vl::text_weights`] saves it as moved,
/// under `name`.
fn assert_saved_as_trained(model: &mut Qwen3Vl, name: &str, var: &Var, factor: f64) {
    let moved = (var.as_tensor() * factor).expect("scaled");
    var.set(&moved).expect("set");
    let saved = model.text_weights();
    let (_, w) = saved
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not saved"));
    let diff = (w - &moved)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff");
    assert_eq!(diff, 0.0, "{name} is saved as trained");
}

/// The loss with one entry of `var` moved by `delta` (restored afterwards).
fn eval_with(model: &Qwen3Vl, items: &[ScoreItem], var: &Var, idx: usize, delta: f32) -> f32 {
    let original = var.as_tensor().copy().expect("copy");
    let mut values = original
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values");
    values[idx] += delta;
    var.set(&Tensor::from_vec(values, original.dims(), original.device()).expect("tensor"))
        .expect("set");
    let value = loss(model, items).to_scalar::<f32>().expect("scalar");
    var.set(&original).expect("restore");
    value
}

#[test]
fn a_loss_from_fast_mode_is_refused() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let input: &ModelInput = &items[1].prompt;
    let logits = loaded
        .model
        .full_logits(input, Mode::Fast, true)
        .expect("logits");
    let l = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .and_then(|t| t.mean_all())
        .expect("loss");
    let grads = l.backward().expect("backward");
    let err = loaded
        .model
        .lora_gradients(&grads)
        .expect_err("no gradients in Fast mode");
    assert!(err.to_string().contains("Train mode"), "{err}");
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn a_shared_base_is_one_copy_with_its_own_adapter() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let with = loaded.model.score(&items, true).expect("score").logprobs;
    let base = loaded.model.score(&items, false).expect("score").logprobs;

    let mut shared = loaded.share_base().expect("share");
    assert!(
        shared.model.lora_weights().is_empty(),
        "the adapter came along"
    );
    let ids = |m: &Qwen3Vl| -> Vec<_> {
        m.text_linear_weights()
            .iter()
            .map(|(_, t)| t.id())
            .collect()
    };
    assert_eq!(
        ids(&loaded.model),
        ids(&shared.model),
        "weights were copied"
    );
    // With no adapter, "LoRA on" is the frozen base.
    let plain = shared.model.score(&items, true).expect("score").logprobs;
    assert!(max_diff(&plain, &base) < 1e-6);

    // Its own adapter, trained and merged, leaves the first model as it was.
    shared
        .model
        .attach_lora(LoraConfig::new(2, 4.0), 77)
        .expect("attach");
    for (_, lora) in shared.model.lora_weights() {
        let b = lora.b.as_tensor();
        lora.b
            .set(
                &b.ones_like()
                    .expect("ones")
                    .affine(0.1, 0.0)
                    .expect("scale"),
            )
            .expect("set");
    }
    let own = shared.model.score(&items, true).expect("score").logprobs;
    assert!(max_diff(&own, &base) > 1e-3, "its adapter does nothing");
    shared.model.merge_lora().expect("merge");
    assert_eq!(loaded.model.lora_weights().len(), 14);
    let after_with = loaded.model.score(&items, true).expect("score").logprobs;
    let after_base = loaded.model.score(&items, false).expect("score").logprobs;
    assert!(max_diff(&after_with, &with) < 1e-6, "its adapter moved");
    assert!(max_diff(&after_base, &base) < 1e-6, "its base moved");
}

#[test]
fn lora_off_is_the_frozen_base() {
    let (_dir, mut loaded) = model_with_adapter();
    let items = batch(&loaded);
    let with = loaded.model.score(&items, true).expect("score");
    let without = loaded.model.score(&items, false).expect("score");
    let diff = max_diff(&with.logprobs, &without.logprobs);
    assert!(diff > 1e-3, "the adapter changes nothing ({diff})");
    // Merging folds the adapter into the weights: LoRA-on scores are kept.
    loaded.model.merge_lora().expect("merge");
    let merged = loaded.model.score(&items, false).expect("score");
    let diff = max_diff(&with.logprobs, &merged.logprobs);
    assert!(diff < 1e-4, "merged model differs by {diff}");
}

#[test]
fn scoring_matches_generation_logprobs_under_greedy_decoding() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let sampling = clawdesk_model::generate::Sampling {
        temperature: 0.0,
        max_tokens: 6,
        ..Default::default()
    };
    let mut cache = loaded.model.new_cache();
    let generation = clawdesk_model::generate::generate(
        &loaded.model,
        &mut cache,
        &items[0].prompt,
        &sampling,
        true,
        &mut |_| {},
    )
    .expect("generate");
    assert_eq!(generation.tokens.len(), 6);
    let scored = loaded
        .model
        .score(
            &[ScoreItem {
                prompt: items[0].prompt.clone(),
                response: generation.tokens.clone(),
            }],
            true,
        )
        .expect("score");
    let train = scored.logprobs.to_vec1::<f32>().expect("values");
    for (a, b) in train.iter().zip(&generation.logprobs) {
        assert!((a - b).abs() < 1e-4, "train {a} vs generation {b}");
    }
}

/// Right-padded batches score each item as it scores alone, on the fused f32 kernels and on
/// the composed path (taken here by f64, as on GPUs by bf16).
#[test]
fn batched_scores_equal_single_scores_on_both_attention_paths() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(dir.path(), &tiny::default_config(), 21).expect("tiny");
    let f64_model = LoadedModel::load(
        dir.path().to_str().expect("utf8"),
        &Device::Cpu,
        Some(candle_core::DType::F64),
        &mut |_| {},
    )
    .expect("load f64");
    for (name, model, lora) in [
        ("f32", &loaded.model, true),
        ("f64", &f64_model.model, false),
    ] {
        let together = model.score(&items, lora).expect("batch");
        let all = together
            .logprobs
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        for (i, item) in items.iter().enumerate() {
            let alone = model
                .score(std::slice::from_ref(item), lora)
                .expect("single");
            let alone = alone
                .logprobs
                .to_dtype(candle_core::DType::F32)
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values");
            let (start, len) = together.spans[i];
            for (a, b) in all[start..start + len].iter().zip(&alone) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{name}: item {i}: batched {a} vs alone {b}"
                );
            }
        }
    }
    // And the two paths agree with each other on the base model.
    let base32 = loaded.model.score(&items, false).expect("f32");
    let base64 = f64_model.model.score(&items, false).expect("f64");
    let d = (base32.logprobs
        - base64
            .logprobs
            .to_dtype(candle_core::DType::F32)
            .expect("cast"))
    .and_then(|t| t.abs())
    .and_then(|t| t.max(0))
    .and_then(|t| t.to_scalar::<f32>())
    .expect("diff");
    assert!(d < 1e-4, "fused and composed paths differ by {d}");
}

/// A reply never holds an image placeholder, however likely the model finds one: a rollout
/// with one could not be scored for training (there is no image to place there). With the
/// final norm zeroed every token is equally likely, so without the mask one reply in ~70
/// tokens would open an image; the mass of the masked ids goes to the rest.
#[test]
fn sampling_never_chooses_a_vision_placeholder() {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(dir.path(), &tiny::default_config(), 21).expect("tiny");
    let path = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("load");
    let norm = "model.language_model.norm.weight";
    let zeros = tensors[norm].zeros_like().expect("zeros");
    tensors.insert(norm.to_string(), zeros);
    candle_core::safetensors::save(&tensors, &path).expect("save");
    let loaded = LoadedModel::load(
        dir.path().to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    let items = batch(&loaded);
    let sampling = clawdesk_model::generate::Sampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        max_tokens: 600,
        seed: 4,
        ..Default::default()
    };
    let mut cache = loaded.model.new_cache();
    let generation = clawdesk_model::generate::generate(
        &loaded.model,
        &mut cache,
        &items[1].prompt,
        &sampling,
        false,
        &mut |_| {},
    )
    .expect("generate");
    assert_eq!(generation.tokens.len(), 600);
    let vision = loaded.model.config().vision_token_ids();
    let opened: Vec<_> = generation
        .tokens
        .iter()
        .filter(|t| vision.contains(t))
        .collect();
    assert!(opened.is_empty(), "the reply holds vision ids {opened:?}");
    let vocab = loaded.model.config().text_config.vocab_size;
    let even = -((vocab - vision.len()) as f32).ln();
    for lp in &generation.logprobs {
        assert!((lp - even).abs() < 1e-3, "{lp} vs {even}");
    }
}

/// Top-k scoring agrees with plain scoring and with the full distribution: its top-k are the
/// likeliest tokens with their whole-vocabulary log-probabilities, reading the response
/// tokens back with `at` gives `score`'s values, and the top-k carry gradient to the LoRA.
#[test]
fn top_k_scoring_matches_the_full_distribution_and_carries_gradient() {
    let (_dir, loaded) = model_with_adapter();
    let items = batch(&loaded);
    let k = 4;
    let plain: Vec<f32> = loaded
        .model
        .score(&items, true)
        .expect("score")
        .logprobs
        .to_vec1()
        .expect("values");
    let at: Vec<u32> = items
        .iter()
        .flat_map(|it| it.response.iter().flat_map(|&t| [t; 4]))
        .collect();
    let scored = loaded
        .model
        .score_top_k(&items, true, k, Some(&at))
        .expect("top-k");
    let read: Vec<Vec<f32>> = scored.at.as_ref().expect("at").to_vec2().expect("rows");
    // `score` takes the one-node head on the CPU and `score_top_k` the composed one: they
    // differ by rounding, which at a log-probability of -22 is already a unit in the last place.
    for (row, want) in read.iter().zip(&plain) {
        for v in row {
            assert!(
                (v - want).abs() < 1e-6 * want.abs().max(1.0),
                "{v} vs {want}"
            );
        }
    }
    // The first item's positions against the full distribution of Train mode.
    let mut input = items[0].prompt.clone();
    let n = items[0].response.len();
    input.ids.extend_from_slice(&items[0].response[..n - 1]);
    let logits = loaded
        .model
        .full_logits(&input, Mode::Train, true)
        .expect("logits");
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).expect("log_softmax");
    let rows: Vec<Vec<f32>> = logp.to_vec2().expect("rows");
    let top: Vec<Vec<f32>> = scored.top.to_vec2().expect("top");
    let p = items[0].prompt.ids.len();
    for j in 0..n {
        let full = &rows[p - 1 + j];
        let mut sorted = full.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for r in 0..k {
            let id = scored.indices[j * k + r] as usize;
            assert!((full[id] - sorted[r]).abs() < 1e-5, "rank {r} at {j}");
            assert!(
                (top[j][r] - full[id]).abs() < 1e-4,
                "{} vs {}",
                top[j][r],
                full[id]
            );
        }
    }
    let grads = scored
        .top
        .sum_all()
        .expect("sum")
        .backward()
        .expect("backward");
    let lora = loaded.model.lora_gradients(&grads).expect("gradients");
    assert!(!lora.is_empty());
    assert!(
        lora.iter().any(|(_, g)| g
            .abs()
            .and_then(|a| a.sum_all())
            .and_then(|s| s.to_scalar::<f32>())
            .is_ok_and(|s| s > 0.0)),
        "no LoRA weight has a gradient"
    );
    assert!(
        loaded
            .model
            .score_top_k(&items, true, k, Some(&at[1..]))
            .is_err()
    );
}

/// What a whole-layer comparison trains and how it scores.
#[derive(Clone, Copy)]
struct Trains {
    norms: bool,
    embeddings: bool,
    /// Score with the adapters applied (off: the frozen base, as the OPD teacher scores).
    lora_pass: bool,
}

const ADAPTER_ONLY: Trains = Trains {
    norms: false,
    embeddings: false,
    lora_pass: true,
};

/// The loss and the gradient of every trained variable from whole layers (one node each,
/// hand-written backward) against the composed ops they replace, on an image prompt, a text
/// prompt and both padded into one batch. Fails too when the two agree to the last bit,
/// which would mean the whole path did not run.
fn assert_whole_layers_match_composed(
    what: &str,
    config: &serde_json::Value,
    lora: LoraConfig,
    trains: Trains,
) {
    let (_dir, mut loaded) = model_with(config, lora);
    let mut vars = loaded
        .model
        .train_base_weights(trains.norms, trains.embeddings)
        .expect("trainable");
    if trains.lora_pass {
        for (path, lora) in loaded.model.lora_weights() {
            vars.push((format!("{path}.lora_A"), lora.a));
            vars.push((format!("{path}.lora_B"), lora.b));
        }
    }
    let items = batch(&loaded);
    // Beside a shorter prompt padded to its length: block edges and padding inside a block.
    let long = ScoreItem {
        prompt: long_prompt(&loaded),
        response: items[0].response.clone(),
    };
    let cases: [(&str, Vec<ScoreItem>); 4] = [
        ("image and text, padded", items.clone()),
        ("image alone", vec![items[0].clone()]),
        ("text alone", vec![items[1].clone()]),
        (
            "a long prompt and a short one, padded",
            vec![long, items[0].clone()],
        ),
    ];
    for (case, items) in cases {
        let run = |model: &Qwen3Vl| {
            let l = model
                .score(&items, trains.lora_pass)
                .and_then(|s| Ok(s.logprobs.mean_all()?.neg()?))
                .expect("loss");
            let grads = l.backward().expect("backward");
            let grads: Vec<Tensor> = vars
                .iter()
                .map(|(name, var)| {
                    grads
                        .get(var.as_tensor())
                        .unwrap_or_else(|| panic!("{what}, {case}: no gradient for {name}"))
                        .clone()
                })
                .collect();
            (l.to_scalar::<f32>().expect("loss"), grads)
        };
        loaded.model.set_whole_layers(false);
        let (composed_loss, composed) = run(&loaded.model);
        loaded.model.set_whole_layers(true);
        let (whole_loss, whole) = run(&loaded.model);
        let mut any = (composed_loss - whole_loss).abs();
        assert!(
            any <= 1e-5 * composed_loss.abs().max(1.0),
            "{what}, {case}: loss {whole_loss} against {composed_loss}"
        );
        for (((name, _), w), c) in vars.iter().zip(&whole).zip(&composed) {
            let scale = c
                .abs()
                .and_then(|t| t.max_all())
                .and_then(|t| t.to_scalar::<f32>())
                .expect("max");
            let diff = (w - c)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{what}, {case}: {name} differs by {diff} (largest entry {scale})"
            );
            any = any.max(diff);
        }
        assert!(
            any > 0.0,
            "{what}, {case}: both paths agree to the bit; did whole layers run?"
        );
    }
}

#[test]
fn whole_layers_give_the_composed_gradients() {
    let mut mha = tiny::default_config();
    mha["text_config"]["num_key_value_heads"] = 4.into();
    let subset = LoraConfig {
        target_modules: ["q_proj", "v_proj", "down_proj"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..LoraConfig::new(4, 8.0)
    };
    let all = || LoraConfig::new(4, 8.0);
    let qwen3 = tiny::default_config();
    let qwen25 = tiny::default_qwen25_config();
    assert_whole_layers_match_composed("Qwen3", &qwen3, all(), ADAPTER_ONLY);
    assert_whole_layers_match_composed("Qwen2.5 (q/k/v biases)", &qwen25, all(), ADAPTER_ONLY);
    assert_whole_layers_match_composed("Qwen3, one query head per key", &mha, all(), ADAPTER_ONLY);
    assert_whole_layers_match_composed(
        "Qwen3, three adapters of seven",
        &qwen3,
        subset,
        ADAPTER_ONLY,
    );
}

/// The same with base weights trained beside the adapter, as the practice base's warm
/// start trains them, and with the norms trained under a pass without the adapters.
#[test]
fn whole_layers_give_the_composed_gradients_of_trained_norms_and_embeddings() {
    let both = Trains {
        norms: true,
        embeddings: true,
        lora_pass: true,
    };
    let norms = Trains {
        embeddings: false,
        ..both
    };
    let base_pass = Trains {
        lora_pass: false,
        ..norms
    };
    let all = || LoraConfig::new(4, 8.0);
    let qwen3 = tiny::default_config();
    let qwen25 = tiny::default_qwen25_config();
    assert_whole_layers_match_composed("Qwen3, norms and embeddings", &qwen3, all(), both);
    assert_whole_layers_match_composed("Qwen2.5, norms and embeddings", &qwen25, all(), both);
    assert_whole_layers_match_composed("Qwen3, norms", &qwen3, all(), norms);
    assert_whole_layers_match_composed("Qwen3, norms, adapters off", &qwen3, all(), base_pass);
}

/// A prefill as whole layers, and as composed ops with attention in blocks, gives the logits
/// of Train mode's composed reference (every score computed, then masked), and leaves a cache
/// from which decoding continues as the reference does on the longer prompt.
#[test]
fn a_prefill_as_whole_layers_gives_the_reference_logits_and_cache() {
    let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    };
    for (family, config) in [
        ("Qwen3", tiny::default_config()),
        ("Qwen2.5", tiny::default_qwen25_config()),
    ] {
        let (_dir, mut loaded) = model_with_adapter_from(&config);
        let prompts = [
            ("image prompt", batch(&loaded)[0].prompt.clone()),
            ("long prompt", long_prompt(&loaded)),
        ];
        for (case, prompt) in prompts {
            let next = 17u32;
            let mut longer = prompt.clone();
            longer.ids.push(next);
            loaded.model.set_whole_layers(false);
            let model = &loaded.model;
            let reference = model
                .full_logits(&prompt, Mode::Train, true)
                .expect("train");
            let s = longer.ids.len();
            let reference_next = model
                .full_logits(&longer, Mode::Train, true)
                .and_then(|l| Ok(l.narrow(0, s - 1, 1)?.squeeze(0)?))
                .expect("train");
            let mut prefills = Vec::new();
            for whole in [true, false] {
                loaded.model.set_whole_layers(whole);
                let model = &loaded.model;
                let mut cache = model.new_cache();
                let logits = model
                    .prefill(&mut cache, &prompt, true, clawdesk_model::Logits::All)
                    .expect("prefill");
                let decoded = model.decode(&mut cache, next, true).expect("decode");
                for (what, ours, want) in [
                    ("prefill", &logits, &reference),
                    ("decode", &decoded, &reference_next),
                ] {
                    let diff = max_diff(ours, want);
                    assert!(
                        diff < 1e-4,
                        "{family}, {case}, whole layers {whole}: {what} differs by {diff}"
                    );
                }
                prefills.push(logits);
            }
            assert!(
                max_diff(&prefills[0], &prefills[1]) > 0.0,
                "{family}, {case}: both prefills agree to the bit; did whole layers run?"
            );
        }
    }
}
