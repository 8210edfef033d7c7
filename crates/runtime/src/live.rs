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

use crate::RuntimeError;
use crate::episode::{AgentSettings, AgentSummary, Supervisor, run_agent};

/// How the three loops run.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// How the agent runs each episode: its instruction, app, step limit and sampling.
    pub agent: AgentSettings,
    /// Episodes the agent runs before the live loop ends.
    pub episodes: usize,
    /// The base model (folder or hub id) the trainer's adapters are recorded against.
    pub base_model: String,
    /// The shape of the adapter the trainer attaches to the shared base weights.
    pub lora: LoraConfig,
    /// How the trainer batches, steps and checkpoints.
    pub train: TrainLoopSettings,
    /// Publish the adapter to the policy every this many updates.
    pub publish_every: u64,
    /// Where published adapters (`v<N>/`) go.
    pub adapters_dir: PathBuf,
    /// Published versions whose folders are kept (0: all); older ones are pruned, except
    /// any a person exported or activated.
    pub keep_adapters: usize,
    /// Where the trainer writes its checkpoints and resumes from the newest.
    pub checkpoints_dir: PathBuf,
    /// How the judge loop paces itself.
    pub judge: LoopOptions,
    /// How long the trainer sleeps when fewer than a batch of judged steps is ready.
    pub trainer_idle: Duration,
    /// CPU threads of the policy's and the trainer's own pools (`None`: both share the
    /// global pool). On a small CPU a split keeps training from taking generation's cores.
    pub policy_threads: Option<usize>,
    /// CPU threads of the trainer's own pool (`None`: the global pool).
    pub trainer_threads: Option<usize>,
    /// Held-out gym tasks each published adapter is scored on (0: not scored). The score
    /// lands on the adapter's row after it is handed to the policy.
    pub gym_tasks: usize,
    /// Told how far the scoring of a published adapter has got, for a progress bar: minutes
    /// of gym tasks on a CPU would otherwise pass without a sign.
    pub on_scoring: Option<ScoringProgress>,
    /// Also serve the policy over the OpenAI-compatible API while the loop runs: the same
    /// policy thread (one model in memory, the adapters as they are published), and the
    /// sessions' main turns go to the same store for the judge and the trainer.
    pub serve: Option<ServerConfig>,
}

impl LiveSettings {
    /// The live loop's defaults around what the caller chose: one episode, an adapter
    /// published after every update, published adapters under `data/adapters` (the newest 50
    /// kept) and checkpoints under `data/checkpoints/live`, the judge's and the trainer's
    /// default pacing, shared CPU pools, no gym score, no API. Callers change what they offer.
    pub fn new(
        agent: AgentSettings,
        base_model: String,
        lora: LoraConfig,
        train: TrainLoopSettings,
        data: &std::path::Path,
    ) -> Self {
        Self {
            agent,
            episodes: 1,
            base_model,
            lora,
            train,
            publish_every: 1,
            adapters_dir: data.join("adapters"),
            keep_adapters: 50,
            checkpoints_dir: data.join("checkpoints").join("live"),
            judge: LoopOptions::default(),
            trainer_idle: Duration::from_millis(250),
            policy_threads: None,
            trainer_threads: None,
            gym_tasks: 0,
            on_scoring: None,
            serve: None,
        }
    }
}

/// Called with (adapter version, tasks played, tasks in all) as a published adapter is scored:
/// once with none played, then after each task.
#[derive(Clone)]
pub struct ScoringProgress(pub Arc<dyn Fn(i64, usize, usize) + Send + Sync>);

impl std::fmt::Debug for ScoringProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScoringProgress(..)")
    }
}

/// What happened in a live run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveReport {
    /// One summary per episode the agent ran, in order.
    pub episodes: Vec<AgentSummary>,
    /// Adapter versions published to the policy, in order.
    pub published: Vec<i64>,
    /// Updates the trainer made to its adapter.
    pub updates: u64,
    /// Batches the trainer passed over (non-finite numbers, or nothing to learn from).
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
) -> Result<Serving, RuntimeError> {
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
) -> Result<LiveReport, RuntimeError> {
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
            .map_err(|e| RuntimeError::External {
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
        .map_err(|e| RuntimeError::External {
            program: "trainer thread".into(),
            detail: e.to_string(),
        })?
        .map_err(|_| RuntimeError::External {
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
) -> Result<(u64, u64), RuntimeError> {
    let mut train = TrainLoop::open(
        store,
        loaded,
        &settings.base_model,
        &settings.checkpoints_dir,
        hints,
        settings.train.clone(),
    )?;
    let resumed = train.steps();
    if resumed > 0 {
        // The resumed weights are published as a new version: the checkpoint may be older
        // than adapters already published, whose folders steps point at.
        let (version, dir) = publish_adapter(store, loaded, settings, resumed, None)?;
        tracing::info!(
            version,
            step = resumed,
            "serving the adapter the trainer resumed from"
        );
        let _ = ready.send(Some((version, dir)));
        score_adapter(store, loaded, settings, version)?;
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
                let (version, dir) = publish_adapter(store, loaded, settings, step, metrics)?;
                tracing::info!(version, step, "adapter published");
                if settings.keep_adapters > 0 {
                    let pruned =
                        prune_adapters(store, &settings.adapters_dir, settings.keep_adapters)?;
                    if !pruned.is_empty() {
                        tracing::info!(?pruned, "old adapter versions pruned");
                    }
                }
                if publish.blocking_send((version, dir)).is_err() {
                    break;
                }
                score_adapter(store, loaded, settings, version)?;
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

/// Publishes the trainer's adapter as a new version and returns the version and its folder.
fn publish_adapter(
    store: &Store,
    loaded: &LoadedModel,
    settings: &LiveSettings,
    step: u64,
    metrics: Option<serde_json::Value>,
) -> Result<(i64, PathBuf), RuntimeError> {
    publish_new_version(
        store,
        &settings.adapters_dir,
        &settings.base_model,
        step,
        metrics,
        |dir| {
            Ok(clawdesk_model::peft::export_adapter(
                &loaded.model,
                dir,
                &settings.base_model,
            )?)
        },
    )
}

/// Writes an adapter as a version never used before and records it.
///
/// A published folder is never written again: steps name the version that produced them,
/// and the trainer learns from them against those weights. The version is the trainer's
/// step when that is new (so staleness reads as steps), else one past every version the
/// store or the folder has seen (a trainer resumed from an older checkpoint). The folder is
/// written under a temporary name, synced, then renamed, so a crash leaves either nothing or
/// the whole adapter; a folder left by a crash before its row was recorded keeps its number.
pub fn publish_new_version(
    store: &Store,
    adapters_dir: &std::path::Path,
    base_model: &str,
    step: u64,
    metrics: Option<serde_json::Value>,
    write: impl FnOnce(&std::path::Path) -> Result<(), RuntimeError>,
) -> Result<(i64, PathBuf), RuntimeError> {
    let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
        RuntimeError::Io(format!("{what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(adapters_dir).map_err(|e| io("creating", adapters_dir, e))?;
    let mut version = (step as i64).max(store.next_adapter_version()?);
    while adapters_dir.join(format!("v{version}")).exists() {
        version += 1;
    }
    let dir = adapters_dir.join(format!("v{version}"));
    let partial = adapters_dir.join(format!(".v{version}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| io("removing", &partial, e))?;
    }
    if let Err(e) = write(&partial) {
        // A full disk should get its space back, not keep half an adapter.
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    let entries = std::fs::read_dir(&partial).map_err(|e| io("reading", &partial, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io("reading", &partial, e))?.path();
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("syncing", &path, e))?;
    }
    sync_dir(&partial).map_err(|e| io("syncing", &partial, e))?;
    std::fs::rename(&partial, &dir).map_err(|e| io("publishing", &dir, e))?;
    sync_dir(adapters_dir).map_err(|e| io("syncing", adapters_dir, e))?;
    store.add_adapter(&NewAdapter {
        version,
        base_model: base_model.to_owned(),
        path: dir.display().to_string(),
        metrics,
    })?;
    Ok((version, dir))
}

/// Removes the folders of versions past the newest `keep` (never one a person exported or
/// activated, never a folder outside `adapters_dir`) and returns their versions. The row stays
/// and is marked pruned first, so a crash leaves at worst a folder to remove, never a row that
/// claims a folder half gone.
pub fn prune_adapters(
    store: &Store,
    adapters_dir: &std::path::Path,
    keep: usize,
) -> Result<Vec<i64>, RuntimeError> {
    let prunable = store.prunable_adapters(keep.max(1))?;
    let rows = store.adapters()?;
    let mut pruned = Vec::new();
    for version in prunable {
        let Some(row) = rows.iter().find(|a| a.version == version) else {
            continue;
        };
        let folder = std::path::Path::new(&row.path);
        if !folder.starts_with(adapters_dir) {
            continue;
        }
        store.mark_adapter_pruned(version)?;
        if folder.exists() {
            std::fs::remove_dir_all(folder)
                .map_err(|e| RuntimeError::Io(format!("pruning {}: {e}", folder.display())))?;
        }
        pruned.push(version);
    }
    Ok(pruned)
}

/// Makes a folder's entries (a rename into it, files made in it) durable.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Scores version `step` on the gym's held-out tasks (when the settings ask for it) and keeps
/// the score on its row.
fn score_adapter(
    store: &Store,
    loaded: &LoadedModel,
    settings: &LiveSettings,
    version: i64,
) -> Result<(), RuntimeError> {
    if settings.gym_tasks > 0 {
        let tasks = settings.gym_tasks;
        let tell = |played: usize| {
            if let Some(ScoringProgress(f)) = &settings.on_scoring {
                f(version, played, tasks);
            }
        };
        tell(0);
        let score = crate::gym_score::gym_score_shown(loaded, tasks, &mut |played| tell(played))?;
        store.set_adapter_gym_score(version, score)?;
        tracing::info!(version, score, "adapter scored on the gym");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(
        text: &'static str,
    ) -> impl FnOnce(&std::path::Path) -> Result<(), RuntimeError> {
        move |dir| {
            std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Io(e.to_string()))?;
            std::fs::write(dir.join("adapter_model.safetensors"), text)
                .map_err(|e| RuntimeError::Io(e.to_string()))
        }
    }

    /// Issue 26: a trainer resumed from an older checkpoint used to export `v{step}` again,
    /// over the folder that steps recorded under that version point at.
    #[test]
    fn a_published_folder_is_never_written_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("data")).expect("store");
        let adapters = dir.path().join("adapters");
        let (v, first) =
            publish_new_version(&store, &adapters, "base", 3, None, write_marker("first"))
                .expect("published");
        assert_eq!(v, 3, "a new step keeps its number");
        // Resumed from a checkpoint at step 2: a new version, v3 untouched.
        let (v, second) =
            publish_new_version(&store, &adapters, "base", 2, None, write_marker("second"))
                .expect("published");
        assert_eq!(v, 4);
        let read = |d: &std::path::Path| {
            std::fs::read_to_string(d.join("adapter_model.safetensors")).expect("weights")
        };
        assert_eq!(read(&first), "first");
        assert_eq!(read(&second), "second");
        // A folder a crash left without its row keeps its number too.
        std::fs::create_dir_all(adapters.join("v5")).expect("leftover");
        std::fs::write(
            adapters.join("v5").join("adapter_model.safetensors"),
            "crash",
        )
        .expect("leftover");
        let (v, third) =
            publish_new_version(&store, &adapters, "base", 5, None, write_marker("third"))
                .expect("published");
        assert_eq!(v, 6);
        assert_eq!(read(&adapters.join("v5")), "crash");
        assert_eq!(read(&third), "third");
        let versions: Vec<i64> = store
            .adapters()
            .expect("adapters")
            .iter()
            .map(|a| a.version)
            .collect();
        assert_eq!(versions, [3, 4, 6]);
        // A write that fails leaves no folder under a version's name.
        let failed = publish_new_version(&store, &adapters, "base", 7, None, |_| {
            Err(RuntimeError::Io("disk full".into()))
        });
        assert!(failed.is_err());
        assert!(!adapters.join("v7").exists());

        // Pruning to one keeps the newest folder, and never touches a folder it does not own;
        // the rows stay, marked.
        store
            .add_adapter(&NewAdapter {
                version: 100,
                base_model: "base".into(),
                path: dir.path().join("elsewhere").display().to_string(),
                metrics: None,
            })
            .expect("a row for a folder elsewhere");
        std::fs::create_dir_all(dir.path().join("elsewhere")).expect("elsewhere");
        let (v, _) =
            publish_new_version(&store, &adapters, "base", 0, None, write_marker("fourth"))
                .expect("published");
        assert_eq!(v, 101);
        let pruned = prune_adapters(&store, &adapters, 1).expect("pruned");
        assert_eq!(pruned, [3, 4, 6]);
        assert!(!first.exists() && !second.exists() && !third.exists());
        assert!(adapters.join("v101").exists());
        assert!(dir.path().join("elsewhere").exists(), "not ours to remove");
        assert!(
            adapters.join("v5").exists(),
            "a crash's leftover has no row"
        );
        assert_eq!(store.adapters().expect("rows").len(), 5);
    }
}
