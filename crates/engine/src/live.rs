//! The live loop: the agent acts, the judge scores, the trainer learns, all at once. Three
//! loops on their own clocks with channels between them, as OpenClaw-RL runs them:
//!
//! - the policy thread owns the serving model and answers the agent in order;
//! - the judge loop scores each step as it lands in the store;
//! - the trainer (its own thread; its own adapter on the policy's base weights, which are held
//!   once, see [`LoadedModel::share_base`]) takes judged steps in
//!   order, updates the adapter, and every `publish_every` updates writes it as a PEFT folder,
//!   records it as an adapter version and hands it to the policy, which swaps it in between
//!   two generations. The agent never waits for training.
//!
//! Every step records the version that produced it, and the trainer's ratio uses the
//! log-probabilities recorded with the step, so a step from an older version is still learned
//! from correctly.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clawdesk_agent::policy::in_pool;
use clawdesk_agent::{AgentPrompts, Policy};
use clawdesk_desktop::Desktop;
use clawdesk_judge::Judge;
use clawdesk_judge::{JudgeLoop, LoopOptions};
use clawdesk_model::LoraConfig;
use clawdesk_model::source::LoadedModel;
use clawdesk_server::{Api, ServerConfig};
use clawdesk_store::{NewAdapter, Store};
use clawdesk_trainer::run::{TrainLoop, TrainLoopSettings, Turn, metrics_json};
use clawdesk_trainer::teacher::HintTemplate;
use tokio::sync::mpsc;

use crate::EngineError;
use crate::agent::{AgentSettings, AgentSummary, Supervisor, run_agent};

/// How the three loops run.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub agent: AgentSettings,
    /// Episodes the agent runs before the live loop ends.
    pub episodes: usize,
    /// The base model (folder or hub id) the trainer's adapters are recorded against.
    pub base_model: String,
    pub lora: LoraConfig,
    pub train: TrainLoopSettings,
    /// Publish the adapter to the policy every this many updates.
    pub publish_every: u64,
    /// Where published adapters (`v<N>/`) and the trainer's checkpoints go.
    pub adapters_dir: PathBuf,
    pub checkpoints_dir: PathBuf,
    pub judge: LoopOptions,
    /// How long the trainer sleeps when fewer than a batch of judged steps is ready.
    pub trainer_idle: Duration,
    /// CPU threads of the policy's and the trainer's own pools (`None`: both share the
    /// global pool). On a small CPU a split keeps training from taking generation's cores.
    pub policy_threads: Option<usize>,
    pub trainer_threads: Option<usize>,
    /// Held-out gym tasks each published adapter is scored on (0: not scored). The score
    /// lands on the adapter's row after it is handed to the policy.
    pub gym_tasks: usize,
    /// Also serve the policy over the OpenAI-compatible API while the loop runs: the same
    /// policy thread (one model in memory, the adapters as they are published), and the
    /// sessions' main turns go to the same store for the judge and the trainer.
    pub serve: Option<ServerConfig>,
}

/// What happened in a live run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveReport {
    pub episodes: Vec<AgentSummary>,
    /// Adapter versions published to the policy, in order.
    pub published: Vec<i64>,
    pub updates: u64,
    pub skipped: u64,
}

type Serving = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), clawdesk_server::ServerError>>,
);

/// Starts the API over `policy`; it stops (finishing its requests) when the sender fires.
async fn serve(
    policy: &Policy,
    tokenizer: tokenizers::Tokenizer,
    store: &Arc<Store>,
    config: &ServerConfig,
) -> Result<Serving, EngineError> {
    let api = Api::new(
        policy.clone(),
        tokenizer,
        Some(store.clone()),
        config.clone(),
    )?;
    let listener = api.bind().await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "the live policy is served over the API");
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok((stop, task))
}

/// How long the judge goes on after the agent ends, to score the steps still owed.
const JUDGE_DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs `settings.episodes` episodes with the judge and the trainer learning alongside.
/// `base` is loaded once: the policy serves it and the trainer trains its own adapter on the
/// same weights. Without a judge only the person's verdicts (given in the store) train.
#[allow(clippy::too_many_arguments)]
pub async fn run_live(
    desktop: &Desktop,
    store: Arc<Store>,
    base: LoadedModel,
    judge: Option<Arc<dyn Judge>>,
    prompts: &AgentPrompts,
    hints: HintTemplate,
    settings: &LiveSettings,
    supervisor: &dyn Supervisor,
) -> Result<LiveReport, EngineError> {
    // Checked before any thread starts, so a bad judge setting leaves nothing running.
    let judged_as = judge.as_ref().map(|j| (j.name().to_owned(), j.source()));
    let judge_loop = match judge {
        Some(judge) => Some(JudgeLoop::new(
            store.clone(),
            judge,
            settings.judge.clone(),
        )?),
        None => None,
    };
    let mut training = base.share_base()?;
    training.model.attach_lora(settings.lora.clone(), 0)?;
    let tokenizer = base.processor.tokenizer().clone();
    let policy = Policy::spawn_with_threads(base, settings.policy_threads);
    let server = match &settings.serve {
        Some(config) => Some(serve(&policy, tokenizer, &store, config).await?),
        None => None,
    };

    // The trainer thread, publishing adapters over a channel.
    let stop = Arc::new(AtomicBool::new(false));
    let (publish, mut published_rx) = mpsc::channel::<(i64, PathBuf)>(8);
    // The trainer says once it has opened its state: the adapter it resumed from, if any.
    let (ready, resumed) = tokio::sync::oneshot::channel::<Option<(i64, PathBuf)>>();
    let trainer = {
        let store = store.clone();
        let stop = stop.clone();
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("clawdesk-trainer".into())
            .spawn(move || {
                in_pool(settings.trainer_threads, "trainer", || {
                    train(&store, &training, hints, &settings, &stop, ready, &publish)
                })
            })
            .map_err(|e| EngineError::External {
                program: "trainer thread".into(),
                detail: e.to_string(),
            })?
    };
    // The publisher: swaps each new adapter into the policy as it comes.
    let swapper = {
        let policy = policy.clone();
        tokio::spawn(async move {
            let mut versions = Vec::new();
            while let Some((version, dir)) = published_rx.recv().await {
                match policy.activate(version, dir).await {
                    Ok(()) => versions.push(version),
                    Err(e) => tracing::warn!(version, error = %e, "adapter not swapped in"),
                }
            }
            versions
        })
    };
    // The judge loop, until the agent is done.
    let (judge_stop, judge_stopped) = tokio::sync::oneshot::channel::<()>();
    let judging = judge_loop.map(|judge_loop| {
        let store = store.clone();
        tokio::spawn(judge_loop.run(async move {
            let _ = judge_stopped.await;
            // The agent's last steps are judged before the loop stops, for a while: a slow
            // endpoint's leftovers stay owed and are judged in the next session.
            let Some((name, source)) = judged_as else {
                return;
            };
            let deadline = std::time::Instant::now() + JUDGE_DRAIN;
            while std::time::Instant::now() < deadline
                && store.owed_count(&name, source).unwrap_or(0) > 0
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }))
    });

    // A resumed adapter is active before the first step (the same queue serves both, so
    // activating it here orders it ahead of every generation).
    let mut initial = None;
    if let Ok(Some((version, dir))) = resumed.await {
        match policy.activate(version, dir).await {
            Ok(()) => initial = Some(version),
            Err(e) => tracing::warn!(version, error = %e, "resumed adapter not swapped in"),
        }
    }

    let mut episodes = Vec::new();
    let mut failure = None;
    for _ in 0..settings.episodes {
        match run_agent(
            desktop,
            &store,
            &policy,
            prompts,
            &settings.agent,
            supervisor,
            |report| {
                tracing::info!(
                    step = report.index,
                    outcome = ?report.outcome,
                    version = ?report.version,
                    "agent step"
                )
            },
        )
        .await
        {
            Ok(summary) => {
                let stopped = desktop.stop_flag().is_stopped();
                episodes.push(summary);
                if stopped {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }

    if let Some((stop_serving, serving)) = server {
        let _ = stop_serving.send(());
        match serving.await {
            Ok(Ok(())) => tracing::info!("API server stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "API server failed"),
            Err(e) => tracing::warn!(error = %e, "API server panicked"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = judge_stop.send(());
    let trained = tokio::task::spawn_blocking(move || trainer.join())
        .await
        .map_err(|e| EngineError::External {
            program: "trainer thread".into(),
            detail: e.to_string(),
        })?
        .map_err(|_| EngineError::External {
            program: "trainer thread".into(),
            detail: "it panicked".into(),
        })?;
    let published: Vec<i64> = initial
        .into_iter()
        .chain(swapper.await.unwrap_or_default())
        .collect();
    if let Some(judging) = judging {
        match judging.await {
            Ok(Ok(stats)) => tracing::info!(?stats, "judge loop ended"),
            Ok(Err(e)) => tracing::warn!(error = %e, "judge loop failed"),
            Err(e) => tracing::warn!(error = %e, "judge loop panicked"),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let (updates, skipped) = trained?;
    Ok(LiveReport {
        episodes,
        published,
        updates,
        skipped,
    })
}

/// The trainer's loop: turns until told to stop; returns (updates, skipped batches).
///
/// A trainer that resumed from a checkpoint hands that adapter over on `ready` before its
/// first turn: otherwise the policy would serve the bare base, whose steps are all older than
/// the staleness bound allows, and the trainer would never find a step to learn from.
fn train(
    store: &Store,
    loaded: &LoadedModel,
    hints: HintTemplate,
    settings: &LiveSettings,
    stop: &AtomicBool,
    ready: tokio::sync::oneshot::Sender<Option<(i64, PathBuf)>>,
    publish: &mpsc::Sender<(i64, PathBuf)>,
) -> Result<(u64, u64), EngineError> {
    let mut train = TrainLoop::open(
        store,
        loaded,
        &settings.base_model,
        &settings.checkpoints_dir,
        hints,
        settings.train.clone(),
    )?;
    let mut known: Vec<i64> = store.adapters()?.iter().map(|a| a.version).collect();
    let resumed = train.steps();
    if resumed > 0 {
        tracing::info!(
            version = resumed,
            "serving the adapter the trainer resumed from"
        );
        let dir = record_adapter(store, loaded, settings, &mut known, resumed, None)?;
        let _ = ready.send(Some((resumed as i64, dir)));
        score_adapter(store, loaded, settings, resumed)?;
    } else {
        let _ = ready.send(None);
    }
    let (mut updates, mut skipped) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        match train.turn()? {
            Turn::Updated { step, metrics } => {
                updates += 1;
                if step % settings.publish_every.max(1) != 0 {
                    continue;
                }
                let metrics = Some(metrics_json(&metrics));
                let dir = record_adapter(store, loaded, settings, &mut known, step, metrics)?;
                tracing::info!(version = step, "adapter published");
                if publish.blocking_send((step as i64, dir)).is_err() {
                    break;
                }
                score_adapter(store, loaded, settings, step)?;
            }
            Turn::Skipped { step, reason } => {
                skipped += 1;
                tracing::warn!(step, reason, "training batch passed over");
            }
            Turn::Waiting { .. } => std::thread::sleep(settings.trainer_idle),
        }
    }
    Ok((updates, skipped))
}

/// Writes the trainer's adapter as version `step` and records it (once); returns its folder.
fn record_adapter(
    store: &Store,
    loaded: &LoadedModel,
    settings: &LiveSettings,
    known: &mut Vec<i64>,
    step: u64,
    metrics: Option<serde_json::Value>,
) -> Result<PathBuf, EngineError> {
    let version = step as i64;
    let dir = settings.adapters_dir.join(format!("v{version}"));
    clawdesk_model::peft::export_adapter(&loaded.model, &dir, &settings.base_model)?;
    if !known.contains(&version) {
        store.add_adapter(&NewAdapter {
            version,
            base_model: settings.base_model.clone(),
            path: dir.display().to_string(),
            metrics,
        })?;
        known.push(version);
    }
    Ok(dir)
}

/// Scores version `step` on the gym's held-out tasks (when the settings ask for it) and keeps
/// the score on its row.
fn score_adapter(
    store: &Store,
    loaded: &LoadedModel,
    settings: &LiveSettings,
    step: u64,
) -> Result<(), EngineError> {
    if settings.gym_tasks > 0 {
        let score = crate::gym_score::gym_score(loaded, settings.gym_tasks)?;
        store.set_adapter_gym_score(step as i64, score)?;
        tracing::info!(version = step, score, "adapter scored on the gym");
    }
    Ok(())
}
