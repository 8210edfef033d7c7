//! Agent step latency with the trainer idle and with it training, in one run: the measure of
//! whether learning in the background slows the agent down (OpenClaw-RL's claim that serving
//! never waits for training). Each step is timed from the start of its generation to its
//! commit in the store, screens and all.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clawdesk_agent::{AgentPrompts, Policy};
use clawdesk_desktop::{Accessibility, Desktop, DesktopConfig};
use clawdesk_judge::{LoopOptions, RuleJudge};
use clawdesk_model::LoraConfig;
use clawdesk_model::source::LoadedModel;
use clawdesk_store::{EpisodeId, Store};
use clawdesk_trainer::LearningChoices;
use clawdesk_trainer::teacher::HintTemplate;

use super::Stats;
use clawdesk_runtime::episode::{AgentSettings, StopOnLoop, run_agent};
use clawdesk_runtime::live::{LiveSettings, run_live};
use clawdesk_runtime::rules::text_appears;

/// `clawdesk bench agent`.
#[derive(Debug, Clone, Args)]
pub struct AgentBenchArgs {
    /// The policy: a model folder or hub id (default: a generated tiny model).
    #[arg(long)]
    pub model: Option<String>,
    /// Where the policy and the trainer run.
    #[command(flatten)]
    pub on: crate::cli::load::DeviceArgs,
    /// Agent steps per phase.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Tokens the policy may write per step.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// Training batch (judged steps per update) in the training phase.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// The sandbox screen, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x800")]
    pub size: String,
    /// Threads of the policy's own CPU pool (default: the shared global pool).
    #[arg(long)]
    pub policy_threads: Option<usize>,
    /// Threads of the trainer's own CPU pool (default: the shared global pool).
    #[arg(long)]
    pub trainer_threads: Option<usize>,
}

fn external(program: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::from(super::External {
        program: program.into(),
        detail: e.to_string(),
    })
}

fn step_millis(store: &Store, episode: i64) -> anyhow::Result<Vec<f64>> {
    Ok(store
        .steps(EpisodeId(episode))?
        .iter()
        .map(|s| (s.ended_at_ms - s.started_at_ms) as f64)
        .collect())
}

pub async fn run(args: AgentBenchArgs) -> anyhow::Result<String> {
    let (w, h) = clawdesk_runtime::parse_size(&args.size).map_err(|detail| {
        clawdesk_runtime::RuntimeError::Script {
            path: "--size".into(),
            detail,
        }
    })?;
    let work = tempfile::tempdir().map_err(|e| external("tempdir", e))?;
    let model = super::model_or_tiny(args.model.as_deref(), work.path())?;
    let device = args.on.open()?;
    let dtype = args.on.dtype.dtype(&device);
    let load = |spec: &str| -> anyhow::Result<LoadedModel> {
        Ok(LoadedModel::load(spec, &device, Some(dtype), &mut |_| {})?)
    };
    let mut sandbox = super::start_sandbox(w, h).await?;
    sandbox.launch("zenity", &["--entry", "--text=Type hello"])?;
    let a11y = Accessibility::connect(Some(sandbox.dbus_address())).await?;
    a11y.wait_for_application("zenity", Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut config = DesktopConfig::for_sandbox(&sandbox);
    config.stop_key = None;
    config.guard.max_steps = None;
    let desktop = Desktop::connect(config).await?;
    let store = Arc::new(Store::open(work.path().join("data"))?);
    let prompts = AgentPrompts::built_in()?;

    let mut agent = AgentSettings::new("Type hello into the entry.");
    agent.app = Some("zenity".into());
    agent.max_steps = args.steps;
    agent.sampling.max_tokens = args.max_tokens;
    agent.loop_repeats = usize::MAX;

    tracing::info!(steps = args.steps, "phase 1: the trainer idle");
    let idle = {
        let policy = Policy::spawn_with_threads(load(&model)?, args.policy_threads);
        let summary = run_agent(
            &desktop,
            &store,
            &policy,
            &prompts,
            &agent,
            &StopOnLoop,
            |_| {},
        )
        .await?;
        step_millis(&store, summary.episode)?
    };

    tracing::info!(steps = args.steps, "phase 2: the trainer training");
    let learning = LearningChoices {
        batch: args.batch,
        checkpoint_every: u64::MAX,
        lr: 1e-4,
        max_staleness: None,
        ..LearningChoices::default()
    };
    let settings = LiveSettings {
        keep_adapters: 0,
        checkpoints_dir: work.path().join("checkpoints"),
        judge: LoopOptions {
            poll: Duration::from_millis(100),
            ..LoopOptions::default()
        },
        trainer_idle: Duration::from_millis(50),
        policy_threads: args.policy_threads,
        trainer_threads: args.trainer_threads,
        ..LiveSettings::new(
            agent.clone(),
            model.clone(),
            LoraConfig::new(8, 16.0),
            learning.train_loop("main"),
            work.path(),
        )
    };
    let report = run_live(
        &desktop,
        store.clone(),
        load(&model)?,
        Some(Arc::new(RuleJudge::new(
            "typed-hello",
            text_appears("hello", "Click the text entry, then type hello."),
        ))),
        &prompts,
        HintTemplate::built_in()?,
        &settings,
        &StopOnLoop,
    )
    .await?;
    let training = match report.episodes.first() {
        Some(e) => step_millis(&store, e.episode)?,
        None => Vec::new(),
    };

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench agent — {} steps per phase on zenity ({w}x{h}), model {}, {} tokens per reply",
        args.steps,
        args.model.as_deref().unwrap_or("tiny (generated)"),
        args.max_tokens
    );
    let split = match (args.policy_threads, args.trainer_threads) {
        (None, None) => {
            format!("the policy and the trainer share {threads} cores (one global pool)")
        }
        (p, t) => format!(
            "policy pool {}, trainer pool {} threads, on {threads} cores",
            p.map_or("global".to_owned(), |n| n.to_string()),
            t.map_or("global".to_owned(), |n| n.to_string())
        ),
    };
    let _ = writeln!(
        out,
        "CPU: {split}; training phase: {} updates, {} adapters published, batch {}\n",
        report.updates,
        report.published.len(),
        args.batch
    );
    let _ = writeln!(out, "| phase | steps | step p50 ms | step p95 ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let (a, b) = (Stats::of(&idle), Stats::of(&training));
    for (name, s) in [("trainer idle", a), ("trainer training", b)] {
        match s {
            Some(s) => {
                let _ = writeln!(out, "| {name} | {} | {:.0} | {:.0} |", s.n, s.p50, s.p95);
            }
            None => {
                let _ = writeln!(out, "| {name} | 0 | — | — |");
            }
        }
    }
    if let (Some(a), Some(b)) = (a, b) {
        let _ = writeln!(
            out,
            "\np95 training / idle: {:.2} (p50 {:.2})",
            b.p95 / a.p95.max(1e-9),
            b.p50 / a.p50.max(1e-9)
        );
    }
    drop(sandbox);
    Ok(out)
}
