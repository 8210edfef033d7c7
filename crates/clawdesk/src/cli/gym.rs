//! `clawdesk gym`: the practice base (a warm-started tiny model), recorded practice episodes,
//! and held-out success of a model or adapter.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use clawdesk_gym::split::evaluation_set;
use clawdesk_gym::{Split, TaskKind};
use clawdesk_store::Store;
use clawdesk_trainer::gym::episode::{GymPolicy, HintWhen, greedy};
use clawdesk_trainer::gym::record::record_episodes;
use clawdesk_trainer::gym::warm_start::{Mistakes, WarmStartSettings, practice_base_on};

use super::data_dir;

#[derive(Debug, Args)]
pub struct GymArgs {
    #[command(subcommand)]
    command: GymCommand,
}

#[derive(Debug, Subcommand)]
enum GymCommand {
    /// Make (or find in the cache) the practice base: a tiny Qwen3-VL warm-started on gym
    /// demonstrations. Prints its folder.
    Base(BaseArgs),
    /// Play gym tasks with a model and record every step, with the rule judge's verdicts and
    /// hints, into the store.
    Record(RecordArgs),
    /// Greedy success of a model (and adapter) on held-out gym tasks.
    Eval(EvalArgs),
}

/// Which warm start makes a practice base (`gym base`, `bench learn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecipeArg {
    /// The practice recipe, as practice mode uses it: shipped made for seeds 1-3 (unpacked in
    /// a moment), trained for others; the recipe flags do not apply.
    Practice,
    /// The recipe the other flags describe, trained and cached on first use.
    Flags,
}

impl RecipeArg {
    /// The settings to make: `flags` as given, or the practice recipe for their seed, which
    /// refuses flags that would otherwise be silently ignored.
    pub fn settings(self, flags: WarmStartSettings) -> anyhow::Result<WarmStartSettings> {
        match self {
            RecipeArg::Flags => Ok(flags),
            RecipeArg::Practice => flags.practice_if_untouched().ok_or_else(|| {
                anyhow::anyhow!(
                    "the warm-start flags make a recipe of their own: add --recipe flags to use them"
                )
            }),
        }
    }
}

#[derive(Debug, Args)]
struct BaseArgs {
    /// The practice recipe, or one of the flags below.
    #[arg(long, value_enum, default_value_t = RecipeArg::Practice)]
    recipe: RecipeArg,
    /// Seeds the random model, the adapter, the demonstrations and the held-out set.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Supervised warm-start updates (the base is cached by its settings).
    #[arg(long, default_value_t = WarmStartSettings::default().steps)]
    warm_steps: usize,
    /// How often the demonstrator without a hint picks the right action (1.0: a supervised
    /// ceiling rather than an imperfect base).
    #[arg(long, default_value_t = WarmStartSettings::default().demo_accuracy)]
    demo_accuracy: f64,
    /// Share of demonstrations with the hint in the prompt.
    #[arg(long, default_value_t = WarmStartSettings::default().hint_share)]
    hint_share: f64,
    /// The demonstrator's mistakes are random other elements, not the first one listed.
    #[arg(long)]
    random_mistakes: bool,
    /// Decoder layers of the tiny model.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Demonstrations per update.
    #[arg(long, default_value_t = WarmStartSettings::default().batch)]
    batch: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    #[arg(long, default_value_t = WarmStartSettings::default().lr)]
    lr: f64,
    /// Give each of the gym's names and numbers a token of its own (default: one token per
    /// character).
    #[arg(long)]
    word_tokens: bool,
    /// Also train the language model's norm weights, not only the adapter (the q/k norms'
    /// scale bounds how sharply attention can pick one list line).
    #[arg(long)]
    train_norms: bool,
    /// Also train the token embeddings and the head tied to them.
    #[arg(long)]
    train_embeddings: bool,
    /// Demonstrated clicks first quote the element line they act on (a grounded reply).
    #[arg(long)]
    grounded: bool,
    /// Draw the random model's language weights as HF does for training (small, near the
    /// identity) instead of at order one.
    #[arg(long)]
    trainable_init: bool,
    /// Demonstrate only these kinds of task (click, type, menu); repeatable. Default: all.
    #[arg(long = "kind")]
    kinds: Vec<TaskKind>,
    /// Hold the peak learning rate after the warm-up instead of a cosine decay.
    #[arg(long)]
    flat_lr: bool,
    /// First N updates with an always-right demonstrator (cached as a base of its own),
    /// then `--warm-steps` with the imperfect one (`--demo-accuracy`).
    #[arg(long, default_value_t = 0)]
    ceiling_steps: usize,
    /// Before the always-right phase, N always-right updates on the `--lead-kind` kinds
    /// alone (cached as a base of its own), which the whole mix continues from.
    #[arg(long, default_value_t = 0)]
    lead_steps: usize,
    /// The kinds of the lead phase (click, type, menu); repeatable.
    #[arg(long = "lead-kind")]
    lead_kinds: Vec<TaskKind>,
    /// The embeddings' learning rate as a share of `--lr` (with `--train-embeddings`).
    #[arg(long, default_value_t = 1.0)]
    embeddings_lr_share: f64,
    /// A curriculum on the prompt: start with the element list and the instruction alone,
    /// add the format line and then the screenshot as checks pass; the norms and embeddings
    /// (when trained) learn only once a check passes on the whole prompt.
    #[arg(long)]
    context_grow: bool,
    /// More overrides of the tiny model's HF `text_config`, as a JSON object (for example
    /// `{"rope_theta": 10000, "hidden_size": 128}`); they join the recipe's cache key.
    #[arg(long, value_parser = parse_json_object)]
    text_config: Option<serde_json::Value>,
    /// Where the warm start trains: auto, cpu, cuda or cuda:N (always in f32); a base made on
    /// a GPU is cached as if made on the CPU.
    #[arg(long, default_value = "auto")]
    device: clawdesk_model::DeviceChoice,
    /// Where generated models are cached (default: the user cache directory).
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RecordArgs {
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The policy: a model folder or hub id.
    #[arg(long)]
    model: String,
    /// A PEFT adapter folder to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Episodes (gym tasks) to play and record.
    #[arg(long, default_value_t = 16)]
    episodes: usize,
    /// Seed of the tasks and of sampling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write hints after every step, not only after wrong ones.
    #[arg(long)]
    hint_always: bool,
    /// A folder of prompt templates that override the built-in ones (see prompts/README.md).
    #[arg(long)]
    prompts: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The policy: a model folder or hub id.
    #[arg(long)]
    model: String,
    /// A PEFT adapter folder to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Held-out tasks to play.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Seed of the held-out tasks drawn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only tasks of these kinds (click, type, menu); repeatable. Default: all.
    #[arg(long = "kind")]
    kinds: Vec<TaskKind>,
    /// Evaluate on the training layouts instead (to tell memorising from not learning).
    #[arg(long)]
    train_split: bool,
    /// Print the prompt and greedy reply of the first N tasks' first steps.
    #[arg(long, default_value_t = 0)]
    show: usize,
}

pub fn run(args: GymArgs) -> anyhow::Result<()> {
    match args.command {
        GymCommand::Base(a) => {
            let cache = match a.cache {
                Some(c) => c,
                None => crate_cache()?,
            };
            let settings = WarmStartSettings {
                seed: a.seed,
                steps: a.warm_steps,
                demo_accuracy: a.demo_accuracy,
                hint_share: a.hint_share,
                mistakes: if a.random_mistakes {
                    Mistakes::Random
                } else {
                    Mistakes::Salient
                },
                batch: a.batch,
                lr: a.lr,
                config: tiny_overrides(a.layers, a.text_config.as_ref()),
                word_tokens: a.word_tokens,
                train_norms: a.train_norms,
                train_embeddings: a.train_embeddings,
                grounded: a.grounded,
                trainable_init: a.trainable_init,
                kinds: a.kinds,
                flat_lr: a.flat_lr,
                ceiling_steps: a.ceiling_steps,
                lead_steps: a.lead_steps,
                lead_kinds: a.lead_kinds,
                embeddings_lr_share: a.embeddings_lr_share,
                context_grow: a.context_grow,
                ..WarmStartSettings::default()
            };
            let settings = a.recipe.settings(settings)?;
            let device = a.device.open()?;
            let (dir, report) = practice_base_on(
                &cache,
                &settings,
                &device,
                &mut super::progress::warm_start(),
            )?;
            tracing::info!(
                without_hint = report.success_without_hint,
                with_hint = report.success_with_hint,
                "held-out greedy success of the practice base"
            );
            println!("{}", dir.display());
            Ok(())
        }
        GymCommand::Record(a) => {
            let data = data_dir(&a.data_dir)?;
            let store = Store::open(&data)?;
            let loaded = super::load::model(&a.model, a.adapter.as_ref(), &a.on)?;
            let dirs = clawdesk_prompts::search_path(a.prompts.as_deref(), Some(&data));
            let policy = GymPolicy::load(&loaded, &dirs)?;
            let when = if a.hint_always {
                HintWhen::Always
            } else {
                HintWhen::OnFailure
            };
            let report = record_episodes(&store, &policy, a.episodes, a.seed, when, None)?;
            println!(
                "recorded {} episodes, {} steps, {} succeeded",
                report.episodes, report.steps, report.succeeded
            );
            Ok(())
        }
        GymCommand::Eval(a) => {
            let loaded = super::load::model(&a.model, a.adapter.as_ref(), &a.on)?;
            let policy = GymPolicy::built_in(&loaded)?;
            let kinds = TaskKind::or_all(&a.kinds);
            let (split, name) = if a.train_split {
                (Split::Train, "train")
            } else {
                (Split::HeldOut, "held-out")
            };
            let tasks = evaluation_set(split, &kinds, a.tasks, a.seed);
            for task in tasks.iter().take(a.show) {
                let acted = policy.act(task, &greedy(), true)?;
                let right = task.expert().map(|a| a.to_string());
                println!(
                    "--- {}\n{}\nreplied: {:?}\nright:   {:?}",
                    task.instruction(),
                    task.elements().join("\n"),
                    acted.reply,
                    right.unwrap_or_default()
                );
            }
            let shown = super::progress::bar(tasks.len() as u64, "playing held-out tasks", false);
            let success =
                policy.success_rate_shown(&tasks, true, &mut |n| shown.set_position(n as u64))?;
            shown.finish_and_clear();
            println!("{name} success {success:.3} over {} tasks", tasks.len());
            Ok(())
        }
    }
}

/// The tiny model's config overrides: the layer count, then anything `--text-config` adds.
fn tiny_overrides(layers: usize, text_config: Option<&serde_json::Value>) -> serde_json::Value {
    let mut text = serde_json::json!({"num_hidden_layers": layers});
    if let Some(extra) = text_config {
        clawdesk_model::tiny::merge_json(&mut text, extra);
    }
    // The vision tower's merger writes into the text model's width, so a wider text model
    // takes a wider merger with it.
    match text.get("hidden_size").cloned() {
        Some(width) => serde_json::json!({
            "text_config": text,
            "vision_config": {"out_hidden_size": width},
        }),
        None => serde_json::json!({ "text_config": text }),
    }
}

fn parse_json_object(raw: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object, like {\"rope_theta\": 10000}".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn crate_cache() -> anyhow::Result<PathBuf> {
    Ok(clawdesk_runtime::paths::default_cache()?)
}
