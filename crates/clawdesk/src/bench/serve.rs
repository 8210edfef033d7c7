//! `clawdesk bench serve`: the OpenAI-compatible server under load on loopback. Latency of one
//! policy call made directly (the baseline: no HTTP, no JSON), the same over HTTP from one
//! client, and from many concurrent clients for a bounded time, where the bounded queue turns
//! the excess away with 429s; then the limits: a 50 MB body and a 30000×30000 image must get
//! 413 and the server must answer the next request.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use clawdesk_agent::{Policy, PolicyRequest};
use clawdesk_model::chat::{Message, Role};
use clawdesk_model::generate::Sampling;
use clawdesk_model::source::LoadedModel;
use clawdesk_server::{Api, ServerConfig};
use serde_json::json;

use super::{Row, Stats, table};

#[derive(Debug, Clone, Args)]
pub struct ServeBenchArgs {
    /// The policy: a model folder or hub id (default: a generated tiny model).
    #[arg(long)]
    pub model: Option<String>,
    #[command(flatten)]
    pub on: crate::cli::load::DeviceArgs,
    /// Concurrent clients in the load phase.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds the load phase lasts.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Requests in each of the one-at-a-time phases.
    #[arg(long, default_value_t = 30)]
    pub requests: usize,
    /// Tokens each request asks for.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// The server's queue: requests waiting for or using the model before 429.
    #[arg(long, default_value_t = 32)]
    pub queue: usize,
}

/// What the run measured; `problems` is empty when every answer was a 200 or a deliberate 429
/// and the limits held.
#[derive(Debug)]
pub struct ServeReport {
    pub table: String,
    pub problems: Vec<String>,
}

fn bench_error(e: impl std::fmt::Display) -> anyhow::Error {
    super::failed(e.to_string())
}

fn request_body(seed: u64, max_tokens: usize) -> String {
    json!({"model": "clawdesk", "messages": [{"role": "user", "content": "Say hello."}],
           "max_tokens": max_tokens, "temperature": 1.0, "top_p": 1.0, "seed": seed})
    .to_string()
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub async fn run(args: ServeBenchArgs) -> anyhow::Result<ServeReport> {
    let work = tempfile::tempdir().map_err(bench_error)?;
    let model = super::model_or_tiny(args.model.as_deref(), work.path())?;
    let device = args.on.open()?;
    let dtype = args.on.dtype.dtype(&device);
    let loaded = tokio::task::block_in_place(|| {
        LoadedModel::load(&model, &device, Some(dtype), &mut |_| {})
    })?;
    let tokenizer = loaded.processor.tokenizer().clone();
    let policy = Policy::spawn(loaded);
    let sampling = Sampling {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_tokens: args.max_tokens,
        ..Sampling::default()
    };

    let mut direct = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let request = PolicyRequest::new(
            vec![Message::text(Role::User, "Say hello.")],
            Vec::new(),
            Vec::new(),
            Sampling {
                seed: i as u64,
                ..sampling.clone()
            },
        );
        let start = Instant::now();
        policy.generate(request).await?;
        direct.push(millis(start));
    }

    let config = ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        queue: args.queue,
        ..ServerConfig::default()
    };
    let api = Api::new(policy, tokenizer, None, config.clone()).map_err(bench_error)?;
    let listener = api.bind().await.map_err(bench_error)?;
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().map_err(bench_error)?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()
        .map_err(bench_error)?;
    let max_tokens = args.max_tokens;
    let body = move |seed: u64| request_body(seed, max_tokens);
    let post = |payload: String| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(payload)
            .send()
    };

    let mut problems = Vec::new();
    let mut one = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let start = Instant::now();
        match post(body(i as u64)).await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                one.push(millis(start));
            }
            Ok(r) => problems.push(format!("one client: status {}", r.status())),
            Err(e) => problems.push(format!("one client: {e}")),
        }
    }

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let load_start = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let (mut ok, mut busy, mut errors) = (Vec::new(), 0usize, Vec::new());
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += 1;
                    let start = Instant::now();
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body(c as u64 * 1_000_000 + n))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok.push(millis(start));
                        }
                        Ok(r) if r.status().as_u16() == 429 => {
                            busy += 1;
                            // A polite client backs off as Retry-After says (1 s); a tenth
                            // of that keeps the pressure on.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Ok(r) => errors.push(format!("status {}", r.status())),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (ok, busy, errors)
            })
        })
        .collect();
    let (mut loaded_ok, mut busy) = (Vec::new(), 0usize);
    for client in clients {
        let (ok, b, errors) = client.await.map_err(bench_error)?;
        loaded_ok.extend(ok);
        busy += b;
        problems.extend(errors.into_iter().map(|e| format!("under load: {e}")));
    }
    let load_seconds = load_start.elapsed().as_secs_f64();

    let mut limits = Vec::new();
    let fifty_mb = json!({"messages": [{"role": "user", "content": "x".repeat(50 << 20)}]});
    let huge_image = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD
            .encode(clawdesk_server::convert::png_declaring(30_000, 30_000))
    );
    let image_request = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": huge_image}}]}], "max_tokens": 1});
    for (what, payload) in [
        ("a 50 MB body", fifty_mb.to_string()),
        ("a 30000×30000 image", image_request.to_string()),
        ("the next ordinary request", body(7)),
    ] {
        let expected = if what.starts_with("the next") {
            200
        } else {
            413
        };
        let got = match post(payload).await {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) => format!("no answer ({e})"),
        };
        if got != expected.to_string() {
            problems.push(format!("{what}: expected {expected}, got {got}"));
        }
        limits.push(format!("{what} → {got}"));
    }
    let _ = stop.send(());
    server.await.map_err(bench_error)?.map_err(bench_error)?;

    let baseline = Stats::of(&direct);
    let rows = [
        Row {
            what: "one request over HTTP".into(),
            ours: Stats::of(&one),
            baseline,
        },
        Row {
            what: format!("{} concurrent clients over HTTP", args.clients),
            ours: Stats::of(&loaded_ok),
            baseline,
        },
    ];
    let mut out = table(
        &format!(
            "OpenAI-compatible server on loopback ({} tokens per reply, queue {})",
            args.max_tokens, args.queue
        ),
        "direct policy call",
        &rows,
    );
    let _ = writeln!(
        out,
        "\nload: {} clients for {:.1} s: {} answered ({:.1}/s), {} turned away with 429, {} other errors",
        args.clients,
        load_seconds,
        loaded_ok.len(),
        loaded_ok.len() as f64 / load_seconds,
        busy,
        problems.len()
    );
    let _ = writeln!(out, "limits: {}", limits.join("; "));
    for p in problems.iter().take(10) {
        let _ = writeln!(out, "problem: {p}");
    }
    Ok(ServeReport {
        table: out,
        problems,
    })
}
