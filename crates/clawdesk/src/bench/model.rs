//! `clawdesk bench model`: prefill, decode and LoRA train-step throughput of our Qwen3-VL or
//! Qwen2.5-VL beside PyTorch + transformers + PEFT on the same model directory, in the same run.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer;
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{Family, Logits, LoraConfig, ModelInput, ScoreItem, tiny};

use crate::cli::load::ArchArg;

/// Model shapes the benchmark can build with random weights (no download).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// The test suite's tiny model (hidden 64, 2 layers).
    Tiny,
    /// A small CPU model (hidden 256, 4 layers, vocabulary 2048).
    Small,
    /// The real Qwen3-VL-2B text and vision shape (for GPUs; Qwen3-VL only).
    #[value(name = "2b")]
    TwoB,
    /// The real Qwen2.5-VL-3B text and vision shape (for GPUs; Qwen2.5-VL only).
    #[value(name = "3b")]
    ThreeB,
}

impl Shape {
    fn overrides(self, family: Family) -> anyhow::Result<serde_json::Value> {
        Ok(match (family, self) {
            (_, Shape::Tiny) => serde_json::json!({}),
            (Family::Qwen25Vl, Shape::Small) => serde_json::json!({
                "text_config": {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 768,
                    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                        "mrope_section": [6, 5, 5]}},
                "vision_config": {"out_hidden_size": 256}
            }),
            (Family::Qwen25Vl, Shape::ThreeB) => serde_json::json!({
                "text_config": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008,
                    "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                    "max_position_embeddings": 128000,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                        "mrope_section": [16, 24, 24]}},
                "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420,
                    "num_heads": 16, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                    "out_hidden_size": 2048},
                "tie_word_embeddings": true
            }),
            (Family::Qwen3Vl, Shape::Small) => serde_json::json!({
                "text_config": {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 768,
                    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "head_dim": 32, "rope_scaling": {"mrope_section": [6, 5, 5]}},
                "vision_config": {"out_hidden_size": 256}
            }),
            (Family::Qwen3Vl, Shape::TwoB) => serde_json::json!({
                "text_config": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
                    "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                    "head_dim": 128, "max_position_embeddings": 262144,
                    "rope_scaling": {"mrope_section": [24, 20, 20]}},
                "vision_config": {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096,
                    "num_heads": 16, "out_hidden_size": 2048, "num_position_embeddings": 2304,
                    "deepstack_visual_indexes": [5, 11, 17]}
            }),
            (family, shape) => anyhow::bail!(
                "the {shape:?} shape is not a {} shape (2b is Qwen3-VL's, 3b Qwen2.5-VL's)",
                family.display_name()
            ),
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ModelBenchArgs {
    /// The model family to measure.
    #[arg(long, value_enum, default_value_t = ArchArg::Qwen3Vl)]
    pub arch: ArchArg,
    /// Model shapes to measure; repeatable.
    #[arg(long = "shape", value_enum, default_values_t = [Shape::Tiny, Shape::Small])]
    pub shapes: Vec<Shape>,
    /// Prompt tokens for the prefill and the decode.
    #[arg(long, default_value_t = 256)]
    pub prompt_tokens: usize,
    /// Tokens decoded one at a time after the prefill.
    #[arg(long, default_value_t = 32)]
    pub decode_tokens: usize,
    /// Image tokens (after the 2×2 merge) of the screenshot-sized prompt whose prefill is also
    /// measured, rounded to a square grid; 0 skips it. 1296 is a 36×36 grid: 1152² pixels for
    /// Qwen3-VL, 1008² for Qwen2.5-VL.
    #[arg(long, default_value_t = 1296)]
    pub image_tokens: usize,
    /// Sequences per train step.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Response tokens per sequence in a train step (log-probabilities and loss on these).
    #[arg(long, default_value_t = 64)]
    pub response_tokens: usize,
    /// The LoRA rank of the train step's adapter.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Timed repetitions of each operation per round.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Alternating rounds of ours and the baseline; medians are reported. Rounds even out
    /// the drift of a shared machine between the two measurements.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Python with torch, transformers and peft (default: ~/.cache/clawdesk/hf-venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Measure only ourselves.
    #[arg(long)]
    pub no_baseline: bool,
    /// Where ours runs (auto, cpu, cuda or cuda:N); PyTorch + PEFT runs on the same kind of
    /// device.
    #[arg(long, default_value = "auto")]
    pub device: clawdesk_model::DeviceChoice,
    /// Measure only these operations (for profiling); default all.
    #[arg(long = "only", value_enum)]
    pub only: Vec<Operation>,
}

/// The three measured operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Operation {
    Prefill,
    Decode,
    Train,
}

impl ModelBenchArgs {
    fn wants(&self, op: Operation) -> bool {
        self.only.is_empty() || self.only.contains(&op)
    }
}

/// Throughputs of one implementation on one shape, tokens per second.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct Rates {
    pub prefill: f64,
    pub decode: f64,
    pub train: f64,
    /// The screenshot-sized prompt's prefill: its image and text tokens over the time of the
    /// vision tower and the decoder together.
    #[serde(default = "not_measured")]
    pub prefill_image: f64,
}

fn not_measured() -> f64 {
    f64::NAN
}

impl Rates {
    fn median_of(rounds: &[Rates]) -> Rates {
        Rates {
            prefill: median(rounds.iter().map(|r| r.prefill).collect()),
            decode: median(rounds.iter().map(|r| r.decode).collect()),
            train: median(rounds.iter().map(|r| r.train).collect()),
            prefill_image: median(rounds.iter().map(|r| r.prefill_image).collect()),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `f` once to warm up, then `iterations` times; returns the median seconds.
fn time(iterations: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn model_err(e: impl std::fmt::Display) -> anyhow::Error {
    super::failed(e.to_string())
}

pub fn run(args: ModelBenchArgs) -> anyhow::Result<String> {
    let device = args.device.open()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let family = Family::from(args.arch);
    let mut out = format!(
        "bench model: {}, prompt {} tokens, decode {}, train batch {} x ({} + {}) tokens, LoRA r={} on 7 linears, {} ({} threads), median of {} alternating rounds\n\n",
        family.display_name(),
        args.prompt_tokens,
        args.decode_tokens,
        args.batch,
        args.prompt_tokens,
        args.response_tokens,
        args.rank,
        clawdesk_model::device::describe(&device),
        threads,
        args.rounds.max(1)
    );
    out.push_str("| shape | operation | ClawDesk tok/s | PyTorch+PEFT tok/s | ratio |\n|---|---|---:|---:|---:|\n");
    for shape in &args.shapes {
        let dir = tempfile::tempdir().map_err(model_err)?;
        let mut config = tiny::default_config_for(family);
        tiny::merge_json(&mut config, &shape.overrides(family)?);
        tiny::write_tiny_model(dir.path(), &config, 0).map_err(model_err)?;
        let mut ours_rounds = Vec::new();
        let mut base_rounds = Vec::new();
        let mut baseline_ok = !args.no_baseline;
        for _ in 0..args.rounds.max(1) {
            ours_rounds.push(measure(&args, dir.path(), &device)?);
            if baseline_ok {
                match baseline(&args, dir.path(), threads, &device) {
                    Ok(r) => base_rounds.push(r),
                    Err(e) => {
                        tracing::warn!("baseline unavailable: {e}");
                        baseline_ok = false;
                    }
                }
            }
        }
        let ours = Rates::median_of(&ours_rounds);
        let baseline = (!base_rounds.is_empty()).then(|| Rates::median_of(&base_rounds));
        let name = format!("{shape:?}").to_lowercase();
        let image_row = format!(
            "prefill, image prompt ({} image + {} text tokens)",
            image_side(args.image_tokens).pow(2),
            args.prompt_tokens
        );
        for (op, o, b) in [
            ("prefill", ours.prefill, baseline.map(|b| b.prefill)),
            (
                image_row.as_str(),
                ours.prefill_image,
                baseline.map(|b| b.prefill_image),
            ),
            ("decode", ours.decode, baseline.map(|b| b.decode)),
            (
                "train step (fwd+bwd+AdamW)",
                ours.train,
                baseline.map(|b| b.train),
            ),
        ] {
            if o.is_nan() {
                continue;
            }
            let (bs, ratio) = match b {
                Some(b) if b > 0.0 => (format!("{b:.0}"), format!("{:.2}×", o / b)),
                _ => ("—".into(), "—".into()),
            };
            out.push_str(&format!("| {name} | {op} | {o:.0} | {bs} | {ratio} |\n"));
        }
    }
    Ok(out)
}

fn measure(args: &ModelBenchArgs, dir: &std::path::Path, device: &Device) -> anyhow::Result<Rates> {
    let path = dir.to_string_lossy().into_owned();
    let mut loaded = LoadedModel::load(&path, device, None, &mut |_| {}).map_err(model_err)?;
    let mut rng = clawdesk_model::rng::SeededRng::new(0);
    let mut ids =
        |n: usize| -> Vec<u32> { (0..n).map(|_| (rng.next_u64() % 256) as u32).collect() };
    let prompt = ModelInput {
        ids: ids(args.prompt_tokens),
        images: Vec::new(),
    };
    let model = &loaded.model;
    let mut cache = model.new_cache();
    let prefill = if !args.wants(Operation::Prefill) {
        f64::NAN
    } else {
        time(args.iterations, || {
            model
                .prefill(&mut cache, &prompt, false, Logits::Last)
                .map(drop)
                .map_err(model_err)
        })?
    };
    let prefill_image = match image_prompt(args, model, &prompt) {
        Some(input) if args.wants(Operation::Prefill) => {
            let tokens = input.ids.len() as f64;
            tokens
                / time(args.iterations, || {
                    model
                        .prefill(&mut cache, &input, false, Logits::Last)
                        .map(drop)
                        .map_err(model_err)
                })?
        }
        _ => f64::NAN,
    };
    let continuation = ids(args.decode_tokens);
    // Decode alone: each run prefills afresh (untimed), then times the token loop; the first
    // run warms up.
    let decode = if args.wants(Operation::Decode) {
        let mut times = Vec::new();
        for run in 0..=args.iterations.max(1) {
            model
                .prefill(&mut cache, &prompt, false, Logits::Last)
                .map_err(model_err)?;
            let start = Instant::now();
            for &t in &continuation {
                model.decode(&mut cache, t, false).map_err(model_err)?;
            }
            if run > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        median(times)
    } else {
        f64::NAN
    };

    loaded
        .model
        .attach_lora(LoraConfig::new(args.rank, 2.0 * args.rank as f64), 0)
        .map_err(model_err)?;
    let model = &loaded.model;
    let items: Vec<ScoreItem> = (0..args.batch)
        .map(|_| ScoreItem {
            prompt: ModelInput {
                ids: ids(args.prompt_tokens),
                images: Vec::new(),
            },
            response: ids(args.response_tokens),
        })
        .collect();
    let mut opt = candle_nn::AdamW::new_lr(model.lora_vars(), 1e-4).map_err(model_err)?;
    if !args.wants(Operation::Train) {
        return Ok(Rates {
            prefill: args.prompt_tokens as f64 / prefill,
            decode: args.decode_tokens as f64 / decode,
            train: f64::NAN,
            prefill_image,
        });
    }
    let train = time(args.iterations, || {
        let scored = model.score(&items, true).map_err(model_err)?;
        let loss: Tensor = scored
            .logprobs
            .mean_all()
            .and_then(|m| m.neg())
            .map_err(model_err)?;
        opt.backward_step(&loss).map_err(model_err)?;
        Ok(())
    })?;
    let train_tokens = args.batch * (args.prompt_tokens + args.response_tokens);
    Ok(Rates {
        prefill: args.prompt_tokens as f64 / prefill,
        decode: args.decode_tokens as f64 / decode,
        train: train_tokens as f64 / train,
        prefill_image,
    })
}

/// Merged tokens per side of the image prompt's square grid.
fn image_side(tokens: usize) -> usize {
    (tokens as f64).sqrt().round() as usize
}

/// The screenshot-sized prompt: one image of `--image-tokens` merged tokens (random patch
/// values, as the processor would hand them over) before the text prompt, in the model's own
/// image tokens; `None` when not asked for.
fn image_prompt(
    args: &ModelBenchArgs,
    model: &clawdesk_model::Qwen3Vl,
    text: &ModelInput,
) -> Option<ModelInput> {
    let side = image_side(args.image_tokens);
    if side == 0 {
        return None;
    }
    let config = model.config();
    let v = &config.vision_config;
    let merge = v.spatial_merge_size;
    let grid = (1, side * merge, side * merge);
    let patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size.pow(2);
    let patches = grid.1 * grid.2;
    let mut rng = clawdesk_model::rng::SeededRng::new(1);
    let pixels = rng.normals(patches * patch_dim, 1.0);
    let px = (grid.2 * v.patch_size) as u32;
    let py = (grid.1 * v.patch_size) as u32;
    let mut ids = vec![config.vision_start_token_id];
    ids.extend(std::iter::repeat_n(config.image_token_id, side * side));
    ids.push(config.vision_end_token_id);
    ids.extend_from_slice(&text.ids);
    Some(ModelInput {
        ids,
        images: vec![clawdesk_model::PreparedImage {
            pixels,
            patch_dim,
            grid,
            frame: clawdesk_model::ImageFrame {
                source: (px, py),
                resized: (px, py),
            },
        }],
    })
}

fn default_python() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/clawdesk/hf-venv/bin/python")
}

fn baseline(
    args: &ModelBenchArgs,
    dir: &std::path::Path,
    threads: usize,
    device: &Device,
) -> anyhow::Result<Rates> {
    let python = args.python.clone().unwrap_or_else(default_python);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/hf_model_bench.py");
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(dir)
        .args(
            [
                args.prompt_tokens,
                args.decode_tokens,
                args.batch,
                args.response_tokens,
                args.iterations,
                args.rank,
                threads,
            ]
            .map(|n| n.to_string()),
        )
        // The same GPU as ours, by ordinal: plain "cuda" would be GPU 0 whatever --device said.
        .arg(match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cpu".to_string(),
        })
        .arg(image_side(args.image_tokens).to_string())
        .output()
        .map_err(|e| {
            super::failed(format!(
                "{}: {e} (run scripts/hf/make-goldens.sh or pass --python)",
                python.display()
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(super::failed(format!(
            "baseline failed: {}",
            tail.join(" | ")
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| super::failed(format!("baseline output {line:?}: {e}")))
}
