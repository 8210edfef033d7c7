//! `clawdesk bench judge`: judged steps per second against an endpoint with a set latency, at
//! several concurrencies, beside the endpoint-bound ideal (concurrency ÷ latency). The loop is
//! doing its job when it keeps the endpoint busy: achieved close to ideal, and the endpoint
//! seeing concurrency × votes requests at once.

use std::fmt::Write as _;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawdesk_judge::stub::{Reply, StubEndpoint};
use clawdesk_judge::{
    EndpointConfig, EndpointJudge, JudgeLoop, JudgePrompts, LoopOptions, VoteSettings,
};
use clawdesk_store::{BlobKind, NewEpisode, NewStep, StepOutcome, Store};

#[derive(Debug, Clone, clap::Args)]
pub struct JudgeBenchArgs {
    /// The stub endpoint's answer time per request, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
    /// Steps judged per concurrency level.
    #[arg(long, default_value_t = 64)]
    pub steps: u32,
    /// Votes per step (parallel requests).
    #[arg(long, default_value_t = 3)]
    pub votes: usize,
    /// Concurrency levels, comma-separated; the first is the baseline of the speed-up column.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Screenshot size, WIDTHxHEIGHT (PNG, sent as data URLs like a real step's).
    #[arg(long, default_value = "1280x720")]
    pub size: String,
}

/// One concurrency level's result.
#[derive(Debug, Clone)]
struct Level {
    concurrency: usize,
    seconds: f64,
    judged: u64,
    max_in_flight: usize,
}

pub async fn run(args: JudgeBenchArgs) -> anyhow::Result<String> {
    let (w, h) =
        clawdesk_runtime::parse_size(&args.size).map_err(|e| anyhow::anyhow!("--size {e}"))?;
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(!args.concurrency.is_empty(), "--concurrency needs a level");
    let latency = Duration::from_millis(args.latency_ms);
    let screens = [screenshot(w, h, 1)?, screenshot(w, h, 2)?];
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        anyhow::ensure!(concurrency > 0, "a concurrency level must be at least 1");
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path())?);
        seed_steps(&store, args.steps, &screens)?;
        let stub = StubEndpoint::start(false, move |n, _| {
            let score = if n % 5 == 0 { "-1" } else { "1" };
            Reply::Answer(format!("The display changed as asked. \\boxed{{{score}}}"))
                .after(latency)
        })
        .await?;
        let judge = EndpointJudge::new(
            EndpointConfig {
                base_url: stub.base_url.clone(),
                model: "bench".into(),
                ..EndpointConfig::default()
            },
            VoteSettings {
                votes: args.votes,
                ..VoteSettings::default()
            },
            JudgePrompts::builtin()?,
        )
        .await?;
        let judge_loop = JudgeLoop::new(
            store.clone(),
            Arc::new(judge),
            LoopOptions {
                concurrency,
                until_idle: true,
                ..LoopOptions::default()
            },
        )?;
        let start = Instant::now();
        let stats = judge_loop.run(std::future::pending()).await?;
        let seconds = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            stats.judged == u64::from(args.steps),
            "judged {} of {} steps ({} failures)",
            stats.judged,
            args.steps,
            stats.failures
        );
        tracing::info!(concurrency, seconds, "judge bench level done");
        levels.push(Level {
            concurrency,
            seconds,
            judged: stats.judged,
            max_in_flight: stub.max_in_flight(),
        });
    }
    Ok(table(&args, w, h, &levels))
}

fn table(args: &JudgeBenchArgs, w: u32, h: u32, levels: &[Level]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Judge loop vs an endpoint answering in {} ms; {} steps of {w}x{h} PNG screenshots, {} votes each\n",
        args.latency_ms, args.steps, args.votes
    );
    let _ = writeln!(
        out,
        "| concurrency | steps/s | ideal steps/s (endpoint-bound) | endpoint kept busy | requests in flight (max / expected) | speed-up vs {} |",
        levels.first().map_or(1, |l| l.concurrency)
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    let base = levels.first().map(|l| l.judged as f64 / l.seconds);
    for level in levels {
        let rate = level.judged as f64 / level.seconds;
        // Each step's votes go out together, so a step takes one latency; c steps at a time.
        let batches = (u64::from(args.steps)).div_ceil(level.concurrency as u64) as f64;
        let ideal = u64::from(args.steps) as f64 / (batches * args.latency_ms as f64 / 1000.0);
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.0}% | {} / {} | {:.1}× |",
            level.concurrency,
            rate,
            ideal,
            100.0 * rate / ideal,
            level.max_in_flight,
            level.concurrency.min(args.steps as usize) * args.votes,
            base.map_or(1.0, |b| rate / b)
        );
    }
    out
}

/// A screenshot-like PNG: flat panels with text-like noise, so it compresses as screens do.
fn screenshot(w: u32, h: u32, seed: u32) -> anyhow::Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let panel = ((x / 160 + y / 90 + seed) % 4) as u8 * 40 + 60;
        let ink =
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed).is_multiple_of(11);
        if ink && y % 18 < 12 {
            image::Rgb([20, 20, 20])
        } else {
            image::Rgb([panel, panel, 230])
        }
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

fn seed_steps(store: &Store, steps: u32, screens: &[Vec<u8>; 2]) -> anyhow::Result<()> {
    let episode = store.begin_episode(&NewEpisode {
        task: "open the settings and turn on dark mode".into(),
        app: Some("bench".into()),
    })?;
    let before = store.put_blob(&screens[0], BlobKind::Png)?;
    let after = store.put_blob(&screens[1], BlobKind::Png)?;
    for index in 0..steps {
        store.insert_step(&NewStep {
            episode,
            index,
            before_image: before.clone(),
            after_image: Some(after.clone()),
            before_tree: None,
            after_tree: None,
            surface: serde_json::json!({"width": 1280, "height": 720}),
            action: serde_json::json!({"kind": "click", "at": {"x": 0.5, "y": 0.5}}),
            response: Some(serde_json::json!({
                "text": "I will open the settings.\nAction: click the gear icon"
            })),
            policy_version: Some(0),
            outcome: StepOutcome::Executed,
            error: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })?;
    }
    Ok(())
}
