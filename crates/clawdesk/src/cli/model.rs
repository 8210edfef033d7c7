//! `clawdesk model ...`: make tiny models, dump logits, make test adapters, generate.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use clawdesk_model::chat::{Message, Role};
use clawdesk_model::generate::{Sampling, generate};
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{LoraConfig, Mode, peft, tiny};

use super::load::ArchArg;

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Write a seeded random tiny Qwen3-VL or Qwen2.5-VL directory in HF's format.
    Tiny(TinyArgs),
    /// Save the full logits of a rendered prompt to a safetensors file.
    Logits(LogitsArgs),
    /// Write a PEFT adapter with random non-zero A and B (for testing export paths).
    AdapterRandom(AdapterRandomArgs),
    /// Generate a reply to a prompt.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct TinyArgs {
    /// The folder to write the model into.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON file whose fields override the default tiny config (any HF config field).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The model family to write.
    #[arg(long, value_enum, default_value_t = ArchArg::Qwen3Vl)]
    arch: ArchArg,
}

/// Where and how to run the model.
#[derive(Debug, Args)]
struct ModelSourceArgs {
    /// A local HF model directory or a hub repo id (resolved through the HF cache).
    #[arg(long)]
    model: String,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    on: super::load::DeviceArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Fast,
    Train,
}

/// The prompt: one user message of images then text, rendered by the model's chat template.
#[derive(Debug, Args)]
struct PromptArgs {
    /// The user message's text.
    #[arg(long)]
    prompt: String,
    /// An image to show before the text; repeatable.
    #[arg(long = "image")]
    images: Vec<PathBuf>,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
}

#[derive(Debug, Args)]
struct LogitsArgs {
    #[command(flatten)]
    source: ModelSourceArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// Fast (generation's kernels and cache) or Train (the differentiable path).
    #[arg(long, value_enum, default_value_t = ModeArg::Fast)]
    mode: ModeArg,
    /// The safetensors file to write the logits into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct AdapterRandomArgs {
    /// The base model (folder or hub id) the adapter is for.
    #[arg(long)]
    model: String,
    /// The adapter's rank.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// The adapter's alpha (default: twice the rank).
    #[arg(long)]
    alpha: Option<f64>,
    /// Seed of the adapter's random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The folder to write the PEFT adapter into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    #[command(flatten)]
    source: ModelSourceArgs,
    #[command(flatten)]
    prompt: PromptArgs,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// The sampling temperature; 0 picks the likeliest token.
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Nucleus sampling: draw from the likeliest tokens whose probabilities sum to this.
    #[arg(long, default_value_t = 0.8)]
    top_p: f64,
    /// Draw from this many likeliest tokens (0: all).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    /// The sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Tiny(a) => run_tiny(a),
        ModelCommand::Logits(a) => run_logits(a),
        ModelCommand::AdapterRandom(a) => run_adapter_random(a),
        ModelCommand::Generate(a) => run_generate(a),
    }
}

fn run_tiny(a: TinyArgs) -> anyhow::Result<()> {
    let mut config = tiny::default_config_for(a.arch.into());
    if let Some(path) = &a.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let overlay: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        tiny::merge_json(&mut config, &overlay);
    }
    tiny::write_tiny_model(&a.out, &config, a.seed)?;
    println!("{}", a.out.display());
    Ok(())
}

fn load(source: &ModelSourceArgs) -> anyhow::Result<LoadedModel> {
    super::load::model(&source.model, source.adapter.as_ref(), &source.on)
}

fn prompt_input(
    loaded: &LoadedModel,
    prompt: &PromptArgs,
) -> anyhow::Result<clawdesk_model::ModelInput> {
    let images = prompt
        .images
        .iter()
        .map(|p| clawdesk_model::preprocess::load_image(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut messages = Vec::new();
    if let Some(system) = &prompt.system {
        messages.push(Message::text(Role::System, system.clone()));
    }
    messages.push(Message::images_then_text(
        Role::User,
        images.len(),
        prompt.prompt.clone(),
    ));
    Ok(loaded.processor.prompt(&messages, &[], &images)?)
}

fn run_logits(a: LogitsArgs) -> anyhow::Result<()> {
    let loaded = load(&a.source)?;
    let input = prompt_input(&loaded, &a.prompt)?;
    let mode = match a.mode {
        ModeArg::Fast => Mode::Fast,
        ModeArg::Train => Mode::Train,
    };
    let lora = a.source.adapter.is_some();
    let logits = loaded.model.full_logits(&input, mode, lora)?;
    let ids: Vec<i64> = input.ids.iter().map(|&i| i as i64).collect();
    let n = ids.len();
    // Saving copies each tensor to the host, wherever it lives.
    let ids = candle_core::Tensor::from_vec(ids, n, logits.device())?;
    let mut out = HashMap::new();
    out.insert("logits".to_string(), logits);
    out.insert("input_ids".to_string(), ids);
    candle_core::safetensors::save(&out, &a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!("{}", a.out.display());
    Ok(())
}

fn run_adapter_random(a: AdapterRandomArgs) -> anyhow::Result<()> {
    // Only the shapes matter for a random adapter: the CPU is enough.
    let mut loaded = super::load::model(&a.model, None, &super::load::DeviceArgs::CPU)?;
    let config = LoraConfig::new(a.rank, a.alpha.unwrap_or(2.0 * a.rank as f64));
    peft::write_random_adapter(&mut loaded.model, config, a.seed, &a.out, &a.model)?;
    println!("{}", a.out.display());
    Ok(())
}

fn run_generate(a: GenerateArgs) -> anyhow::Result<()> {
    let loaded = load(&a.source)?;
    let input = prompt_input(&loaded, &a.prompt)?;
    let sampling = Sampling {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        max_tokens: a.max_tokens,
        stop: loaded.processor.stop_ids().to_vec(),
        top_logprobs: 0,
    };
    let mut cache = loaded.model.new_cache();
    let lora = a.source.adapter.is_some();
    let processor = &loaded.processor;
    let mut stdout = std::io::stdout();
    let mut shown = String::new();
    let mut tokens = Vec::new();
    let generation = generate(
        &loaded.model,
        &mut cache,
        &input,
        &sampling,
        lora,
        &mut |t| {
            tokens.push(t);
            // Print the text as it grows; decoding the whole prefix keeps multi-byte characters whole.
            if let Ok(text) = processor.decode(&tokens, true)
                && text.len() > shown.len()
                && text.starts_with(&shown)
            {
                let _ = write!(stdout, "{}", &text[shown.len()..]);
                let _ = stdout.flush();
                shown = text;
            }
        },
    )?;
    println!();
    tracing::info!(tokens = generation.tokens.len(), finish = ?generation.finish, "generated");
    Ok(())
}
