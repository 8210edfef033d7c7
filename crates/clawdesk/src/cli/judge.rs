//! `clawdesk judge`: run the step judge over the store, give a person's verdict, and see how
//! far each judge agrees with people.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use clawdesk_judge::{
    ApiKey, EndpointConfig, EndpointJudge, ImageEncoding, Judge, JudgeEvent, JudgeLoop,
    JudgePrompts, LocalJudge, LoopOptions, PersonAnswer, VoteSettings, person_verdict,
};
use clawdesk_model::source::LoadedModel;
use clawdesk_store::{StepId, Store};

use super::data_dir;

#[derive(Debug, Args)]
pub struct JudgeArgs {
    #[command(subcommand)]
    command: JudgeCommand,
}

#[derive(Debug, Subcommand)]
enum JudgeCommand {
    /// Judge every step the store holds that this judge has not judged, then keep watching
    /// for new ones (Ctrl-C stops; a restart carries on where it stopped).
    Run(RunArgs),
    /// Record a person's verdict on a step; it overrides every judge's.
    Verdict(VerdictArgs),
    /// How often each judge agreed with the people who checked its steps.
    Agreement(StoreArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    judge: JudgeChoice,
    /// Where a --local judge's model runs.
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Steps judged at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// A folder of prompt templates overriding the built-in ones (see prompts/README.md).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Stop once nothing is left that can be judged now, instead of watching for new steps.
    #[arg(long)]
    until_idle: bool,
}

/// Which judge scores steps, and how it votes; shared by `judge run` and `agent live`.
#[derive(Debug, Args, Clone)]
pub struct JudgeChoice {
    /// An OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (vLLM) or
    /// https://api.openai.com/v1.
    #[arg(long, conflicts_with = "local", required_unless_present = "local")]
    endpoint: Option<String>,
    /// The endpoint's model name.
    #[arg(long = "judge-model", requires = "endpoint")]
    judge_model: Option<String>,
    /// Read the API key from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "keyring_account")]
    api_key_env: Option<String>,
    /// Read the API key from the Secret Service keyring item service=clawdesk account=NAME.
    #[arg(long, value_name = "NAME")]
    keyring_account: Option<String>,
    /// Judge with the local model instead: a model folder or hub id.
    #[arg(long, value_name = "MODEL")]
    local: Option<String>,
    /// Votes per step.
    #[arg(long, default_value_t = 3)]
    votes: usize,
    /// The judge's sampling temperature.
    #[arg(long = "judge-temperature", default_value_t = 0.6)]
    judge_temperature: f64,
    /// The most tokens a judge's answer may have (its reasoning included).
    #[arg(long = "judge-max-tokens", default_value_t = 1024)]
    judge_max_tokens: u32,
    /// Do not ask for hindsight hints.
    #[arg(long)]
    no_hints: bool,
    /// Screenshots are scaled down to at most this many pixels.
    #[arg(long, default_value_t = 1280 * 800)]
    pixel_budget: u64,
    /// Send screenshots as JPEG at this quality instead of PNG.
    #[arg(long, value_name = "QUALITY")]
    jpeg: Option<u8>,
    /// Seconds a request may take.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

impl JudgeChoice {
    /// The judge these flags name, with prompts from `prompt_dirs`. A local judge runs where
    /// `on` says; when it names the model of `shared` (`agent live`'s policy), it judges with
    /// that model's base weights instead of loading a second copy.
    pub async fn build(
        &self,
        prompt_dirs: &[PathBuf],
        on: &super::load::DeviceArgs,
        shared: Option<(&str, &LoadedModel)>,
    ) -> anyhow::Result<Arc<dyn Judge>> {
        let prompts = JudgePrompts::load(prompt_dirs)?;
        let settings = VoteSettings {
            votes: self.votes,
            temperature: self.judge_temperature,
            max_tokens: self.judge_max_tokens,
            hints: !self.no_hints,
            pixel_budget: self.pixel_budget,
            encoding: match self.jpeg {
                Some(quality) => ImageEncoding::Jpeg { quality },
                None => ImageEncoding::Png,
            },
        };
        Ok(match (&self.endpoint, &self.local) {
            (Some(endpoint), _) => {
                let api_key = match (&self.api_key_env, &self.keyring_account) {
                    (Some(var), _) => ApiKey::Env { var: var.clone() },
                    (None, Some(account)) => ApiKey::Keyring {
                        service: "clawdesk".into(),
                        account: account.clone(),
                    },
                    (None, None) => ApiKey::None,
                };
                let config = EndpointConfig {
                    base_url: endpoint.clone(),
                    model: self
                        .judge_model
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("--endpoint needs --judge-model"))?,
                    api_key,
                    timeout: std::time::Duration::from_secs(self.timeout_s),
                    ..EndpointConfig::default()
                };
                Arc::new(EndpointJudge::new(config, settings, prompts).await?)
            }
            (None, Some(spec)) => {
                let loaded = match shared {
                    Some((name, base)) if name == spec => base.share_base()?,
                    _ => tokio::task::block_in_place(|| super::load::model(spec, None, on))?,
                };
                Arc::new(LocalJudge::new(Arc::new(loaded), prompts, settings, spec)?)
            }
            (None, None) => {
                anyhow::bail!("give --endpoint URL --judge-model NAME, or --local MODEL")
            }
        })
    }
}

#[derive(Debug, Args)]
struct VerdictArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The step's id.
    step: i64,
    /// Approve the step (+1).
    #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
    approve: bool,
    /// Reject the step (-1).
    #[arg(long)]
    reject: bool,
    /// A hint for distillation: what the agent should have done.
    #[arg(long)]
    hint: Option<String>,
    /// The corrected action, as JSON in the internal form, e.g. '{"kind":"key","combo":"Return"}'.
    #[arg(long)]
    correction: Option<String>,
}

pub async fn run(args: JudgeArgs) -> anyhow::Result<()> {
    match args.command {
        JudgeCommand::Run(a) => run_loop(a).await,
        JudgeCommand::Verdict(a) => verdict(a),
        JudgeCommand::Agreement(a) => agreement(a),
    }
}

async fn run_loop(a: RunArgs) -> anyhow::Result<()> {
    let root = data_dir(&a.store.data_dir)?;
    let store = Arc::new(Store::open(&root)?);
    let dirs = clawdesk_prompts::search_path(a.prompts.as_deref(), Some(&root));
    let judge = a.judge.build(&dirs, &a.on, None).await?;
    let name = judge.name().to_owned();
    let owed = store.owed_count(&name, judge.source())?;
    eprintln!("judge {name}: {owed} steps to judge in {}", root.display());
    let mut judge_loop = JudgeLoop::new(
        store.clone(),
        judge,
        LoopOptions {
            concurrency: a.concurrency,
            until_idle: a.until_idle,
            ..LoopOptions::default()
        },
    )?;
    let mut events = judge_loop.subscribe();
    let progress = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                JudgeEvent::Judged {
                    step,
                    score,
                    mean,
                    hint,
                } => println!(
                    "step {} judged {score:+} (mean {}){}",
                    step.0,
                    mean.map_or("-".to_owned(), |m| format!("{m:.2}")),
                    if hint { ", with a hint" } else { "" }
                ),
                JudgeEvent::Failed {
                    step,
                    attempts,
                    error,
                    retry_in,
                } => eprintln!(
                    "step {} not judged (attempt {attempts}, retry in {}s): {error}",
                    step.0,
                    retry_in.as_secs()
                ),
                JudgeEvent::GaveUp {
                    step,
                    attempts,
                    error,
                } => eprintln!(
                    "step {} given up on after {attempts} attempts (unjudgeable; the trainer \
                     passes over it): {error}",
                    step.0
                ),
            }
        }
    });
    let stats = judge_loop
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = progress.await;
    let left = store.owed_count(&name, clawdesk_store::VerdictSource::Judge)?;
    eprintln!(
        "judged {}, {} already judged, {} failures; {left} steps still owed",
        stats.judged, stats.already_judged, stats.failures
    );
    Ok(())
}

fn verdict(a: VerdictArgs) -> anyhow::Result<()> {
    let store = Store::open(data_dir(&a.store.data_dir)?)?;
    let correction = a
        .correction
        .as_deref()
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("--correction is not JSON: {e}"))?;
            serde_json::from_value::<clawdesk_desktop::Action>(value.clone())
                .map_err(|e| anyhow::anyhow!("--correction is not an action: {e}"))?
                .validate()?;
            Ok::<_, anyhow::Error>(value)
        })
        .transpose()?;
    let answer = PersonAnswer {
        approve: a.approve,
        correction,
        hint: a.hint,
    };
    store.add_verdict(&person_verdict(StepId(a.step), &answer))?;
    println!(
        "step {}: {}",
        a.step,
        if a.approve { "approved" } else { "rejected" }
    );
    Ok(())
}

fn agreement(a: StoreArgs) -> anyhow::Result<()> {
    let store = Store::open(data_dir(&a.data_dir)?)?;
    let rows = store.agreement()?;
    if rows.is_empty() {
        println!("no step has both a judge's and a person's verdict yet");
        return Ok(());
    }
    println!("| judge | steps checked by a person | agreed | undecided | agreement |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.judge,
            r.compared,
            r.agreed,
            r.undecided,
            r.rate()
                .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x))
        );
    }
    Ok(())
}
