//! Parity with HF transformers + PEFT on a tiny Qwen3-VL: the goldens in `goldens/` were written
//! by `scripts/hf/make-goldens.sh` from the model and adapter that this test regenerates from
//! the same seeds. Logits must agree within 1e-4 in both modes, prefill and prefill + decode,
//! with and without the adapter; token ids and preprocessed pixels must match.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp, Tensor};
use clawdesk_model::chat::{Message, Role};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, Mode, ModelInput, PreparedImage, peft, preprocess, tiny};
use sha2::Digest;

const TOLERANCE: f32 = 1e-4;
const MODEL_SEED: u64 = 7;
const ADAPTER_SEED: u64 = 3;
const ADAPTER_RANK: usize = 4;

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(goldens().join("manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest json")
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tiny model and adapter the goldens were made from, rebuilt from their seeds.
struct Fixture {
    _dir: tempfile::TempDir,
    model_dir: PathBuf,
    adapter_dir: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("tiny");
    let adapter_dir = dir.path().join("adapter");
    tiny::write_tiny_model(&model_dir, &tiny::default_config(), MODEL_SEED).expect("tiny model");
    let m = manifest();
    assert_eq!(
        sha256(&model_dir.join("model.safetensors")),
        m["model_sha256"].as_str().expect("sha"),
        "the tiny-model generator's output changed: rerun scripts/hf/make-goldens.sh"
    );
    let mut loaded = LoadedModel::load(
        model_dir.to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    let config = LoraConfig::new(ADAPTER_RANK, 2.0 * ADAPTER_RANK as f64);
    peft::write_random_adapter(
        &mut loaded.model,
        config,
        ADAPTER_SEED,
        &adapter_dir,
        "tiny",
    )
    .expect("adapter");
    assert_eq!(
        sha256(&adapter_dir.join("adapter_model.safetensors")),
        m["adapter_sha256"].as_str().expect("sha"),
        "the adapter writer's output changed: rerun scripts/hf/make-goldens.sh"
    );
    Fixture {
        _dir: dir,
        model_dir,
        adapter_dir,
    }
}

fn load_goldens(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(goldens().join(format!("{name}.safetensors")), &Device::Cpu)
        .expect("golden file")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// The same messages goldens.py renders.
fn case_messages(name: &str) -> (Vec<Message>, Vec<serde_json::Value>, Vec<&'static str>) {
    match name {
        "text" => (
            vec![
                Message::text(Role::System, "You operate a desktop."),
                Message::text(Role::User, "Open the settings, then say done."),
            ],
            vec![clawdesk_model::chat::computer_use_tool(1280, 800).expect("tool")],
            vec![],
        ),
        "image" => (
            vec![Message::images_then_text(
                Role::User,
                1,
                "What is on screen?",
            )],
            vec![],
            vec!["small.png"],
        ),
        "two_images" => (
            vec![Message::images_then_text(Role::User, 2, "Compare.")],
            vec![],
            vec!["wide.png", "large.png"],
        ),
        other => panic!("unknown case {other}"),
    }
}

/// Renders the case's messages (which must give HF's text) and tokenises them with HF's own
/// pixel values, so that this checks the model apart from the resampler (tested below).
fn build_input(loaded: &LoadedModel, name: &str, g: &HashMap<String, Tensor>) -> ModelInput {
    let (messages, tools, _) = case_messages(name);
    let text = loaded
        .processor
        .render(&messages, &tools, true)
        .expect("render");
    let expected = manifest()["cases"][name]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert_eq!(
        text, expected,
        "chat template rendering differs from HF for {name}"
    );
    let images = match (g.get("pixels_u8"), g.get("image_grid_thw")) {
        (Some(pixels), Some(grids)) => hf_images(pixels, grids),
        _ => Vec::new(),
    };
    loaded
        .processor
        .encode_prepared(&text, images)
        .expect("encode")
}

/// Rebuilds HF's normalised, temporally duplicated patches from the stored 8-bit first copies.
fn hf_images(pixels: &Tensor, grids: &Tensor) -> Vec<PreparedImage> {
    let rows = pixels
        .to_dtype(candle_core::DType::U32)
        .and_then(|t| t.to_vec2::<u32>())
        .expect("pixels");
    let mut rows = rows.into_iter();
    let mut out = Vec::new();
    for grid in grids.to_vec2::<i64>().expect("grids") {
        let (t, h, w) = (grid[0] as usize, grid[1] as usize, grid[2] as usize);
        let mut values = Vec::new();
        for _ in 0..t * h * w {
            let row = rows.next().expect("enough patches");
            let half = row.len() / 3;
            for c in 0..3 {
                let copy: Vec<f32> = row[c * half..(c + 1) * half]
                    .iter()
                    .map(|&k| (k as f32 * (1.0 / 255.0) - 0.5) / 0.5)
                    .collect();
                values.extend_from_slice(&copy);
                values.extend_from_slice(&copy);
            }
        }
        out.push(PreparedImage {
            patch_dim: values.len() / (t * h * w),
            pixels: values,
            grid: (t, h, w),
            frame: clawdesk_model::ImageFrame {
                source: (w as u32 * 16, h as u32 * 16),
                resized: (w as u32 * 16, h as u32 * 16),
            },
        });
    }
    out
}

fn check_case(fx: &Fixture, name: &str) {
    let mut loaded = LoadedModel::load(
        fx.model_dir.to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    let g = load_goldens(name);
    let input = build_input(&loaded, name, &g);
    let ids: Vec<i64> = input.ids.iter().map(|&i| i as i64).collect();
    assert_eq!(
        ids,
        g["input_ids"].to_vec1::<i64>().expect("ids"),
        "token ids differ for {name}"
    );
    if let Some(grid) = g.get("image_grid_thw") {
        let ours: Vec<Vec<i64>> = input
            .images
            .iter()
            .map(|im| vec![im.grid.0 as i64, im.grid.1 as i64, im.grid.2 as i64])
            .collect();
        assert_eq!(ours, grid.to_vec2::<i64>().expect("grid"));
    }
    let positions = &g["prefill_positions"];
    let continuation: Vec<u32> = g["decode_tokens"]
        .to_vec1::<i64>()
        .expect("tokens")
        .iter()
        .map(|&t| t as u32)
        .collect();
    for lora in [false, true] {
        if lora {
            peft::import_adapter(&mut loaded.model, &fx.adapter_dir).expect("import adapter");
        }
        let key = |k: &str| {
            if lora {
                format!("lora_{k}")
            } else {
                k.to_string()
            }
        };
        let want_prefill = &g[&key("prefill_logits")];
        for mode in [Mode::Fast, Mode::Train] {
            let logits = loaded
                .model
                .full_logits(&input, mode, lora)
                .expect("logits");
            let picked = logits.index_select(positions, 0).expect("positions");
            let diff = max_abs_diff(&picked, want_prefill);
            assert!(
                diff < TOLERANCE,
                "{name} prefill, {mode:?}, lora {lora}: max |diff| {diff}"
            );
        }
        // Cached decoding, one token at a time, against HF's full forward pass.
        let want_decode = &g[&key("decode_logits")];
        let mut cache = loaded.model.new_cache();
        loaded
            .model
            .prefill(&mut cache, &input, lora, clawdesk_model::Logits::Last)
            .expect("prefill");
        for (i, &token) in continuation.iter().enumerate() {
            let logits = loaded
                .model
                .decode(&mut cache, token, lora)
                .expect("decode");
            let diff = max_abs_diff(&logits, &want_decode.i(i).expect("row"));
            assert!(
                diff < TOLERANCE,
                "{name} decode step {i}, lora {lora}: max |diff| {diff}"
            );
        }
        // Train mode over prompt + continuation reproduces the same positions.
        let mut extended = input.clone();
        extended.ids.extend_from_slice(&continuation);
        let logits = loaded
            .model
            .full_logits(&extended, Mode::Train, lora)
            .expect("train logits");
        let tail = logits
            .narrow(0, input.ids.len(), continuation.len())
            .expect("tail");
        let diff = max_abs_diff(&tail, want_decode);
        assert!(
            diff < TOLERANCE,
            "{name} train over continuation, lora {lora}: {diff}"
        );
    }
}

#[test]
fn text_prompt_with_tool_schema_matches_hf() {
    check_case(&fixture(), "text");
}

#[test]
fn one_image_prompt_matches_hf() {
    check_case(&fixture(), "image");
}

#[test]
fn two_image_prompt_matches_hf() {
    check_case(&fixture(), "two_images");
}

/// Our resampler against HF's default (torchvision) processor: the grid exactly, every 8-bit
/// value within one level (the two round a few values differently).
#[test]
fn preprocessing_matches_hf_processor() {
    let config_dir = tempfile::tempdir().expect("tempdir");
    tiny::write_tiny_model(config_dir.path(), &tiny::default_config(), MODEL_SEED).expect("tiny");
    let config = clawdesk_model::PreprocessorConfig::from_file(
        &config_dir.path().join("preprocessor_config.json"),
    )
    .expect("config");
    let mut checked = 0;
    for case in ["image", "two_images"] {
        let g = load_goldens(case);
        let want = hf_images(&g["pixels_u8"], &g["image_grid_thw"]);
        let (_, _, files) = case_messages(case);
        for (file, want) in files.iter().zip(&want) {
            let img = image::open(goldens().join(file)).expect("image");
            let ours = preprocess::prepare(&img, &config).expect("prepare");
            assert_eq!(ours.grid, want.grid, "{file}: grid");
            assert_eq!(ours.pixels.len(), want.pixels.len(), "{file}: size");
            let level = 2.0 / 255.0; // one 8-bit step after normalising by std 0.5
            let mut off = 0usize;
            for (a, b) in ours.pixels.iter().zip(&want.pixels) {
                let d = (a - b).abs();
                assert!(
                    d < level * 1.01,
                    "{file}: a value differs by {} levels",
                    d / level
                );
                if d > 1e-6 {
                    off += 1;
                }
            }
            // Rounding differences are rare, not systematic.
            assert!(
                off * 1000 < ours.pixels.len(),
                "{file}: {off} values differ"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}
