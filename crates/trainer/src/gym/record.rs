//! Practice episodes recorded into the store as an agent's would be: before and after
//! screenshots and trees as blobs, the policy turn (prompt, tokens, log-probabilities) with
//! each step, and the rule judge's verdict with its hindsight hint. The training loop then
//! learns from the store exactly as it does from a live run.

use clawdesk_gym::{Split, Task, TaskKind, sample_task};
use clawdesk_model::generate::Sampling;
use clawdesk_model::rng::SeededRng;
use clawdesk_store::{
    BlobId, BlobKind, EpisodeStatus, NewEpisode, NewStep, NewVerdict, StepOutcome, Store,
    VerdictSource, now_ms,
};

use crate::error::{Result, TrainerError};
use crate::gym::episode::{GymPolicy, HintWhen};
use clawdesk_agent::turn::PolicyTurn;

/// The judge name the gym's rule verifier stores its verdicts under.
pub const RULE_JUDGE: &str = "gym-rule";

/// How many episodes and steps were recorded, and how many succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordReport {
    /// Episodes played and stored.
    pub episodes: usize,
    /// Steps stored, each with its verdict, over all episodes.
    pub steps: usize,
    /// Episodes whose task was solved (stored as done; the rest as failed).
    pub succeeded: usize,
}

fn store_err(e: clawdesk_store::StoreError) -> TrainerError {
    TrainerError::Input(format!("store: {e}"))
}

/// Plays `episodes` train tasks with `policy` (LoRA on), storing every step and its verdict.
pub fn record_episodes(
    store: &Store,
    policy: &GymPolicy<'_>,
    episodes: usize,
    seed: u64,
    hints: HintWhen,
    policy_version: Option<i64>,
) -> Result<RecordReport> {
    let mut rng = SeededRng::new(seed);
    let mut report = RecordReport::default();
    for _ in 0..episodes {
        let mut task = sample_task(Split::Train, &TaskKind::ALL, &mut rng);
        let sampling = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: rng.next_u64(),
            max_tokens: crate::gym::episode::MAX_REPLY_TOKENS,
            stop: Vec::new(),
            top_logprobs: 0,
        };
        record_one(
            store,
            policy,
            &mut task,
            &sampling,
            hints,
            policy_version,
            &mut report,
        )?;
    }
    Ok(report)
}

fn record_one(
    store: &Store,
    policy: &GymPolicy<'_>,
    task: &mut Task,
    sampling: &Sampling,
    hints: HintWhen,
    policy_version: Option<i64>,
    report: &mut RecordReport,
) -> Result<()> {
    let episode = store
        .begin_episode(&NewEpisode {
            task: task.instruction().to_string(),
            app: Some("clawdesk-gym".into()),
        })
        .map_err(store_err)?;
    let mut sampling = sampling.clone();
    let mut index = 0;
    while !task.is_done() {
        let started = now_ms();
        let (before_image, before_tree) = snapshot(store, task)?;
        let acted = policy.act(task, &sampling, true)?;
        sampling.seed = sampling.seed.wrapping_add(0x9E37_79B9);
        let Some(outcome) = task.step(acted.action.as_ref()) else {
            break;
        };
        let (after_image, after_tree) = snapshot(store, task)?;
        let turn = PolicyTurn {
            tools: Vec::new(),
            messages: acted.messages,
            images: vec![before_image.clone()],
            text: acted.reply.clone(),
            tokens: acted.tokens,
            logprobs: acted.logprobs,
        };
        let action = match &acted.action {
            Some(a) => serde_json::json!({ "gym": a.to_string() }),
            None => serde_json::json!({ "invalid": acted.reply }),
        };
        let step = store
            .insert_step(&NewStep {
                episode,
                index,
                before_image,
                after_image: Some(after_image),
                before_tree: Some(before_tree),
                after_tree: Some(after_tree),
                surface: serde_json::json!({
                    "width": clawdesk_gym::screen::WIDTH,
                    "height": clawdesk_gym::screen::HEIGHT,
                }),
                action,
                response: Some(turn.to_json()),
                policy_version,
                outcome: StepOutcome::Executed,
                error: None,
                started_at_ms: started,
                ended_at_ms: now_ms(),
            })
            .map_err(store_err)?;
        store
            .add_verdict(&NewVerdict {
                step,
                source: VerdictSource::Judge,
                score: if outcome.reward > 0.0 { 1 } else { -1 },
                votes: None,
                hint: hints.hint(&outcome),
                judge: Some(RULE_JUDGE.into()),
                mean: Some(f64::from(outcome.reward)),
                correction: None,
            })
            .map_err(store_err)?;
        index += 1;
        report.steps += 1;
    }
    let status = if task.succeeded() {
        report.succeeded += 1;
        EpisodeStatus::Done
    } else {
        EpisodeStatus::Failed
    };
    store
        .finish_episode(episode, status, None)
        .map_err(store_err)?;
    report.episodes += 1;
    Ok(())
}

fn snapshot(store: &Store, task: &Task) -> Result<(BlobId, BlobId)> {
    let mut png = Vec::new();
    task.screen()
        .render()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainerError::Input(format!("encoding a gym screenshot: {e}")))?;
    let image = store.put_blob(&png, BlobKind::Png).map_err(store_err)?;
    let tree = serde_json::to_vec(&task.screen().tree())
        .map_err(|e| TrainerError::Input(format!("serialising a gym tree: {e}")))?;
    let tree = store.put_blob(&tree, BlobKind::Json).map_err(store_err)?;
    Ok((image, tree))
}
