//! `clawdesk serve`: the policy behind the OpenAI-compatible API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clawdesk_agent::Policy;
use clawdesk_server::{Api, ServerConfig};
use clawdesk_store::Store;

use super::data_dir;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The policy: a model folder or hub id.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    on: super::load::DeviceArgs,
    /// Where to listen; anything but loopback needs a token. Port 0 picks a free port (the
    /// address is printed as JSON on the first line of stdout).
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// The bearer token clients must send (default: $CLAWDESK_API_TOKEN).
    #[arg(long)]
    token: Option<String>,
    /// The model id clients name, as vLLM's flag of the same name (default: the `--model`
    /// value, as vLLM answers).
    #[arg(long, visible_alias = "name")]
    served_model_name: Option<String>,
    /// A PEFT adapter folder to serve (default: the activated adapter, if any).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The version number the adapter's served turns are recorded under.
    #[arg(long, default_value_t = 1, requires = "adapter")]
    adapter_version: i64,
    /// Requests waiting for or using the model before more get 429.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Seconds a request may take (`--timeout-s`, as the judge spells it; `--timeout` is kept
    /// as an alias).
    #[arg(long = "timeout-s", visible_alias = "timeout", default_value_t = 300)]
    timeout: u64,
    /// The largest request body, in MiB.
    #[arg(long, default_value_t = 32)]
    max_body_mb: usize,
    /// The most images one request may carry.
    #[arg(long, default_value_t = 8)]
    max_images: usize,
    /// Fetch http(s) image URLs (default: data URLs only).
    #[arg(long)]
    allow_remote_images: bool,
    /// Serve without storing sessions' turns.
    #[arg(long)]
    no_store: bool,
    /// Where the store lives (default: $CLAWDESK_DATA_DIR,
    /// else the window's Data folder setting, else the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        bind: a.bind,
        token: api_token(&a.token),
        model_name: a
            .served_model_name
            .clone()
            .unwrap_or_else(|| a.model.clone()),
        max_body_bytes: a.max_body_mb << 20,
        max_images: a.max_images,
        queue: a.queue,
        request_timeout: Duration::from_secs(a.timeout),
        allow_remote_images: a.allow_remote_images,
        ..ServerConfig::default()
    };
    // Checked before the model loads: a refused bind should not cost a minute of loading.
    config.check()?;
    let store = Arc::new(Store::open(data_dir(&a.data_dir)?)?);
    let loaded = tokio::task::block_in_place(|| super::load::model(&a.model, None, &a.on))?;
    let tokenizer = loaded.processor.tokenizer().clone();
    let policy = Policy::spawn(loaded);
    super::load::activate_adapter(&policy, &store, a.adapter.as_ref(), a.adapter_version).await?;
    let api = Api::new(policy, tokenizer, (!a.no_store).then_some(store), config)?;
    let listener = api.bind().await?;
    let addr = listener.local_addr()?;
    println!("{}", serde_json::json!({"listening": addr.to_string()}));
    api.serve(listener, shutdown_signal()).await?;
    eprintln!("server stopped; requests in flight were finished");
    Ok(())
}

/// The API's bearer token: the flag, else $CLAWDESK_API_TOKEN.
pub(super) fn api_token(flag: &Option<String>) -> Option<String> {
    // Trimmed here as the config's check trims it, so a token read with a trailing newline
    // is the token that was validated.
    flag.clone()
        .or_else(|| std::env::var("CLAWDESK_API_TOKEN").ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
