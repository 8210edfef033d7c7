//! The routes: `GET /v1/models`, `POST /v1/chat/completions` (whole or streamed as SSE),
//! served by the same policy thread as the GUI agent, with the server's limits applied
//! before any work reaches the model.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clawdesk_agent::turn::PolicyTurn;
use clawdesk_agent::{Generated, Policy, PolicyRequest};
use clawdesk_model::generate::Finish;
use clawdesk_store::{EpisodeId, StepId, Store};
use futures::StreamExt;
use image::DynamicImage;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::config::ServerConfig;
use crate::convert::{self, ImageSource};
use crate::error::{ApiError, ServerError};
use crate::fetch::ImageFetcher;
use crate::reply::{self, Reply};
use crate::session::{self, ServedTurn, Session, TurnType};
use crate::wire::ChatRequest;

/// The API over one policy. Clones share everything.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Policy,
    tokenizer: tokenizers::Tokenizer,
    store: Option<Arc<Store>>,
    config: ServerConfig,
    queue: Arc<Semaphore>,
    /// One permit a pixel of the decoded images held by requests in flight.
    pixels: Arc<Semaphore>,
    images: ImageFetcher,
    /// The folder under which `/v1/load_lora_adapter` takes paths, if any (made canonical
    /// per request: it may appear after the server started).
    adapters_dir: Option<std::path::PathBuf>,
    /// The adapter loaded with `/v1/load_lora_adapter`, served under its name (and the base's).
    lora: std::sync::Mutex<Option<String>>,
}

/// A body larger than the limit is read to its end (up to this many times the limit) and
/// dropped, so the client gets its 413 instead of a reset connection.
const DRAIN_FACTOR: usize = 8;

impl Api {
    /// `tokenizer` turns token ids into text for streaming and log-probabilities (the model
    /// itself stays on the policy thread); `store` keeps sessions' main turns (`None`: serve
    /// only).
    pub fn new(
        policy: Policy,
        tokenizer: tokenizers::Tokenizer,
        store: Option<Arc<Store>>,
        config: ServerConfig,
    ) -> Result<Api, ServerError> {
        config.check()?;
        let images = ImageFetcher::new(std::time::Duration::from_secs(30))
            .map_err(|e| ServerError::Config(format!("an HTTP client for images: {e}")))?;
        let adapters_dir = config
            .adapters_dir
            .clone()
            .or_else(|| store.as_ref().map(|s| s.root().join("adapters")));
        Ok(Api {
            inner: Arc::new(Inner {
                queue: Arc::new(Semaphore::new(config.queue)),
                pixels: Arc::new(Semaphore::new(config.max_pixels_in_flight as usize)),
                policy,
                tokenizer,
                store,
                config,
                images,
                adapters_dir,
                lora: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The limits and names this API was started with.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The HTTP routes (`/v1/models`, `/v1/chat/completions`, vLLM's LoRA load and unload)
    /// behind the token and browser checks, and `/health`; for a server or a test to call.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .route("/v1/load_lora_adapter", post(load_lora))
            .route("/v1/unload_lora_adapter", post(unload_lora))
            .fallback(not_found)
            .method_not_allowed_fallback(wrong_method)
            .layer(middleware::from_fn_with_state(self.clone(), authorize))
            .layer(middleware::from_fn_with_state(self.clone(), no_browsers))
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Listens on the configured address.
    pub async fn bind(&self) -> Result<TcpListener, ServerError> {
        let addr = self.inner.config.bind;
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight (their turns
    /// are stored before their answers go out) and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, model = %self.inner.config.model_name, "serving the OpenAI-compatible API");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve)
    }

    fn lora(&self) -> Option<String> {
        self.inner
            .lora
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn token_text(&self, id: u32, as_ids: bool) -> String {
        if as_ids {
            return format!("token_id:{id}");
        }
        self.inner
            .tokenizer
            .decode(&[id], false)
            .unwrap_or_default()
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.inner.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// Decodes the request's images, each after its pixels are taken from the budget of
    /// pixels in flight; the permits go back when the request lets them go.
    async fn images(
        &self,
        sources: Vec<ImageSource>,
    ) -> Result<(Vec<DynamicImage>, Vec<OwnedSemaphorePermit>), ApiError> {
        let max_pixels = self.inner.config.max_image_pixels;
        let budget = self.inner.config.max_pixels_in_flight;
        let mut images = Vec::with_capacity(sources.len());
        let mut permits = Vec::with_capacity(sources.len());
        let mut wanted = 0u64;
        for source in sources {
            let bytes = match source {
                ImageSource::Data(bytes) => bytes,
                ImageSource::Remote(url) => self.fetch(&url).await?,
            };
            let pixels = convert::image_pixels(&bytes, max_pixels)?;
            wanted += pixels;
            if wanted > budget {
                return Err(ApiError::TooLarge(format!(
                    "the request's images come to {wanted} pixels to hold; this server holds at \
                     most {budget} at once"
                )));
            }
            let permit = self
                .inner
                .pixels
                .clone()
                .try_acquire_many_owned(pixels as u32)
                .map_err(|_| ApiError::PixelsBusy { budget })?;
            permits.push(permit);
            let image =
                tokio::task::spawn_blocking(move || convert::decode_image(&bytes, max_pixels))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??;
            images.push(image);
        }
        Ok((images, permits))
    }

    /// The adapter folder a load names, if it is one this server may read: one the store
    /// published, or one under the data directory's adapters. Anything else (`/etc`, a
    /// symbolic link out of the adapters folder) is refused before it is opened.
    fn adapter_folder(&self, path: &std::path::Path) -> Result<std::path::PathBuf, ApiError> {
        let refused = || {
            ApiError::Forbidden(format!(
                "{} is not an adapter this ClawDesk published; it loads only adapters under its \
                 data directory's adapters folder",
                path.display()
            ))
        };
        let Ok(wanted) = std::fs::canonicalize(path) else {
            return Err(refused());
        };
        if self
            .inner
            .adapters_dir
            .as_ref()
            .and_then(|root| std::fs::canonicalize(root).ok())
            .is_some_and(|root| wanted.starts_with(&root) && wanted != root)
        {
            return Ok(wanted);
        }
        if let Some(store) = &self.inner.store {
            let adapters = store
                .adapters()
                .map_err(|e| ApiError::Internal(format!("the data store: {e}")))?;
            if adapters
                .iter()
                .any(|a| std::fs::canonicalize(&a.path).is_ok_and(|p| p == wanted))
            {
                return Ok(wanted);
            }
        }
        Err(refused())
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, ApiError> {
        let limit = self.inner.config.max_body_bytes;
        self.inner.images.fetch(url, limit).await
    }
}

/// Without a token the server trusts whoever can reach loopback, and a web page in the
/// person's browser can reach it too: a `text/plain` POST needs no CORS preflight, and a
/// DNS-rebinding name makes the page same-origin. So requests whose `Host` is not a loopback
/// name, or that come with a foreign `Origin`, are refused; and every POST must say it is JSON
/// (which a page can only send after a preflight this server never grants).
async fn no_browsers(
    State(api): State<Api>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    if api.inner.config.token.is_none() {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if !host.is_some_and(is_loopback_authority) {
            return Err(ApiError::Forbidden(
                "this server answers only requests addressed to a loopback name (Host: \
                 127.0.0.1, localhost or [::1]); set a token to serve other names"
                    .into(),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let loopback = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https") && is_loopback_authority(rest)
                });
            if !loopback {
                return Err(ApiError::Forbidden(
                    "requests from web pages are refused (a foreign Origin header)".into(),
                ));
            }
        }
    }
    if request.method() == axum::http::Method::POST {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::Forbidden(
                "a POST must be sent as Content-Type: application/json".into(),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Whether `authority` (`host[:port]`) names this machine's loopback.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) if tail.is_empty() || tail.starts_with(':') => h,
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => authority,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn authorize(
    State(api): State<Api>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &api.inner.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.trim().as_bytes(), token.as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

/// Compares without stopping at the first difference and in a time set by the given value's
/// length alone, so timing says nothing of the token, not even its length.
fn same(given: &[u8], token: &[u8]) -> bool {
    if token.is_empty() {
        return false;
    }
    let mut diff = u64::from(given.len() != token.len());
    for (i, g) in given.iter().enumerate() {
        diff |= u64::from(g ^ token[i % token.len()]);
    }
    diff == 0
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; this server has /v1/models and /v1/chat/completions".into())
}

async fn wrong_method() -> Response {
    let body = json!({"error": {
        "message": "this route takes another method (GET /v1/models, POST /v1/chat/completions)",
        "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}});
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

async fn models(State(api): State<Api>) -> Response {
    let model =
        |id: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": "clawdesk"});
    let mut data = vec![model(&api.inner.config.model_name)];
    data.extend(api.lora().as_deref().map(model));
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

#[derive(serde::Deserialize)]
struct LoraRequest {
    lora_name: String,
    #[serde(default)]
    lora_path: Option<String>,
}

/// vLLM's dynamic LoRA loading, so `clawdesk adapters push` and a remote ClawDesk agent can
/// swap what this server serves. One adapter at a time: loading one makes it active for every
/// request. Its version is the store's record of that folder, else the name's `-vN` suffix.
async fn load_lora(State(api): State<Api>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&HeaderMap::new(), body, 64 << 10).await?;
    let request: LoraRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))?;
    let Some(path) = request.lora_path.filter(|p| !p.is_empty()) else {
        return Err(ApiError::BadRequest("lora_path is required".into()));
    };
    let dir = api.adapter_folder(std::path::Path::new(&path))?;
    let version = adapter_version(api.inner.store.as_deref(), &dir, &request.lora_name)?;
    api.inner.policy.activate(version, dir).await?;
    *api.inner.lora.lock().unwrap_or_else(|p| p.into_inner()) = Some(request.lora_name.clone());
    tracing::info!(name = %request.lora_name, version, %path, "adapter loaded");
    Ok(format!(
        "Success: LoRA adapter '{}' added successfully.",
        request.lora_name
    )
    .into_response())
}

async fn unload_lora(State(api): State<Api>, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&HeaderMap::new(), body, 64 << 10).await?;
    let request: LoraRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))?;
    if api.lora().as_deref() != Some(request.lora_name.as_str()) {
        return Err(ApiError::NotFound(format!(
            "adapter `{}` is not loaded",
            request.lora_name
        )));
    }
    api.inner.policy.deactivate().await?;
    *api.inner.lora.lock().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(format!(
        "Success: LoRA adapter '{}' removed successfully.",
        request.lora_name
    )
    .into_response())
}

fn adapter_version(
    store: Option<&Store>,
    dir: &std::path::Path,
    name: &str,
) -> Result<i64, ApiError> {
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let wanted = dir.to_path_buf();
    if let Some(store) = store {
        let adapters = store
            .adapters()
            .map_err(|e| ApiError::Internal(format!("the data store: {e}")))?;
        if let Some(a) = adapters
            .iter()
            .find(|a| canonical(std::path::Path::new(&a.path)).as_ref() == Some(&wanted))
        {
            return Ok(a.version);
        }
    }
    name.rsplit_once("-v")
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{} is not an adapter this ClawDesk published, and the name `{name}` carries no \
                 `-vN` version",
                dir.display()
            ))
        })
}

async fn chat(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    match answer(api, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = |n: String| {
        ApiError::TooLarge(format!(
            "a request body of {n} bytes; this server takes at most {limit}"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    if let Some(declared) = declared.filter(|&d| d > limit) {
        // Answered at once; what the client still sends is read and dropped off to the side
        // (up to a bound), so it sees its 413 rather than a reset connection.
        tokio::spawn(async move {
            let drain = async {
                let mut seen = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    seen += chunk.len();
                    if seen > limit * DRAIN_FACTOR {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
        });
        return Err(too_large(declared.to_string()));
    }
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        seen += chunk.len();
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        } else if seen > limit * DRAIN_FACTOR {
            break;
        }
    }
    if seen > limit || declared.is_some_and(|d| d > limit) {
        return Err(too_large(declared.unwrap_or(seen).to_string()));
    }
    Ok(bytes)
}

/// What a main turn needs to be stored once it is generated.
struct Recorder {
    store: Arc<Store>,
    episode: EpisodeId,
    session: Session,
    messages: Vec<clawdesk_model::chat::Message>,
    tools: Vec<Value>,
    images: Vec<Arc<DynamicImage>>,
    started_at_ms: i64,
}

impl Recorder {
    async fn record(self, generated: &Generated, reply: &Reply) -> Result<StepId, ApiError> {
        let turn = PolicyTurn {
            messages: self.messages,
            images: Vec::new(),
            tools: self.tools,
            text: generated.text.clone(),
            tokens: generated.tokens.clone(),
            logprobs: generated.logprobs.clone(),
        };
        let served = ServedTurn {
            turn,
            images: self.images,
            action: json!({"content": reply.content, "tool_calls": reply.tool_calls}),
            version: generated.version,
            started_at_ms: self.started_at_ms,
        };
        let (store, episode, session) = (self.store, self.episode, self.session);
        tokio::task::spawn_blocking(move || session::record(&store, episode, &session, served))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

/// A finished generation with its split reply and, for a stored turn, its step.
struct Finished {
    generated: Generated,
    reply: Reply,
    step: Option<StepId>,
}

async fn answer(api: Api, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let config = &api.inner.config;
    let (mut request, permit) = take_request(&api, &headers, body).await?;
    let session = Session::of(&headers, &request)?;
    let (messages, sources) = convert::messages(&request, config)?;
    let (images, pixel_permits) = api.images(sources).await?;
    // Decoded once and shared by the generation and the turn to be stored.
    let images: Vec<Arc<DynamicImage>> = images.into_iter().map(Arc::new).collect();
    let sampling = convert::sampling(&request, config)?;
    let stop_text = stop_texts(&mut request)?;
    let tools = match request.tool_choice.as_ref().and_then(Value::as_str) {
        Some("none") => Vec::new(),
        _ => request.tools.clone(),
    };
    let recorder = match (&session, &api.inner.store) {
        (Some(session), Some(store)) => {
            let episode = {
                let (store, session) = (store.clone(), session.clone());
                let context = session::Context::of(&request);
                tokio::task::spawn_blocking(move || session::begin(&store, &session, &context))
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))??
            };
            (session.turn == TurnType::Main).then(|| Recorder {
                store: store.clone(),
                episode,
                session: session.clone(),
                messages: messages.clone(),
                tools: tools.clone(),
                images: images.clone(),
                started_at_ms: clawdesk_store::now_ms(),
            })
        }
        _ => None,
    };
    let (tokens_tx, tokens) = mpsc::unbounded_channel();
    let tools_offered = !tools.is_empty();
    let shape = Shape::of(config, &request);
    let done = generate(
        api.inner.policy.clone(),
        PolicyRequest {
            messages,
            tools,
            images,
            sampling,
            stop_text: stop_text.clone(),
            tokens: Some(tokens_tx),
        },
        (permit, pixel_permits),
        recorder,
        format!("call_{}", &shape.id[9..]),
    );
    if request.stream {
        let include_usage = request
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        let held = reply::held_patterns(&stop_text, tools_offered)
            .into_iter()
            .map(str::to_owned)
            .collect();
        return Ok(stream(api, shape, tokens, done, held, include_usage));
    }
    let finished = match tokio::time::timeout(config.request_timeout, done).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => return Err(ApiError::Internal("the generation task ended early".into())),
        // Dropping `tokens` on return halts the generation at its next token.
        Err(_) => return Err(ApiError::Timeout(config.request_timeout)),
    };
    drop(tokens);
    let mut response = axum::Json(shape.completion(&api, &finished)).into_response();
    if let Some(step) = finished.step
        && let Ok(value) = HeaderValue::from_str(&step.0.to_string())
    {
        response.headers_mut().insert("x-clawdesk-step", value);
    }
    Ok(response)
}

/// Reads and parses the request, with a place in the queue, and checks it names the model
/// served here. The body is read before a place is taken, under its own deadline, so slow
/// uploads cannot hold the queue against requests that are ready.
async fn take_request(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<(ChatRequest, OwnedSemaphorePermit), ApiError> {
    let config = &api.inner.config;
    let bytes = tokio::time::timeout(
        config.body_timeout,
        read_body(headers, body, config.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::Timeout(config.body_timeout))??;
    let permit = api
        .inner
        .queue
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy {
            waiting: config.queue,
        })?;
    let request: ChatRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the request body: {e}")))?;
    drop(bytes);
    if let Some(model) = request.model.as_deref()
        && model != config.model_name
        && api.lora().as_deref() != Some(model)
    {
        return Err(ApiError::NotFound(format!(
            "model `{model}` is not served here; this server serves `{}`",
            config.model_name
        )));
    }
    Ok((request, permit))
}

/// The request's stop strings: up to four, none empty (OpenAI's limit).
fn stop_texts(request: &mut ChatRequest) -> Result<Vec<String>, ApiError> {
    let stop_text = request
        .stop
        .take()
        .map(|s| s.into_vec())
        .unwrap_or_default();
    if stop_text.len() > 4 || stop_text.iter().any(String::is_empty) {
        return Err(ApiError::BadRequest(
            "stop takes up to 4 non-empty strings".into(),
        ));
    }
    Ok(stop_text)
}

/// Generates in a task of its own (so a client that leaves does not cancel the recording of a
/// finished turn), splits the reply into content and tool calls, and stores a main turn.
fn generate(
    policy: Policy,
    request: PolicyRequest,
    // The request's place in the queue and the pixel budget of its decoded images.
    held: (OwnedSemaphorePermit, Vec<OwnedSemaphorePermit>),
    recorder: Option<Recorder>,
    call_prefix: String,
) -> oneshot::Receiver<Result<Finished, ApiError>> {
    let (done_tx, done) = oneshot::channel();
    let tools_offered = !request.tools.is_empty();
    tokio::spawn(async move {
        // The queue place and the images' pixels are held until the generation and its record
        // are done.
        let _held = held;
        let result = async {
            let generated = policy.generate(request).await?;
            let reply = reply::split(&generated.text, tools_offered, &call_prefix);
            // A generation cut short because its client left is not a turn anyone saw.
            let step = match recorder {
                Some(recorder) if generated.finish != Finish::Halted => {
                    Some(recorder.record(&generated, &reply).await?)
                }
                _ => None,
            };
            Ok::<_, ApiError>(Finished {
                generated,
                reply,
                step,
            })
        }
        .await;
        let _ = done_tx.send(result);
    });
    done
}

/// The fields every response and chunk of one request share.
struct Shape {
    id: String,
    model: String,
    created: u64,
    logprobs: bool,
    top_logprobs: usize,
    as_ids: bool,
}

fn finish_reason(finished: &Finished) -> &'static str {
    if !finished.reply.tool_calls.is_empty() {
        return "tool_calls";
    }
    match finished.generated.finish {
        Finish::MaxTokens | Finish::ContextFull => "length",
        Finish::Stop(_) | Finish::Halted => "stop",
    }
}

impl Shape {
    /// A new completion's id and the response options the request chose.
    fn of(config: &ServerConfig, request: &ChatRequest) -> Self {
        Shape {
            id: format!("chatcmpl-{:016x}", rand::random::<u64>()),
            model: config.model_name.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            logprobs: request.logprobs,
            top_logprobs: request.top_logprobs.unwrap_or(0),
            as_ids: request.return_tokens_as_token_ids,
        }
    }

    fn usage(&self, g: &Generated) -> Value {
        json!({
            "prompt_tokens": g.prompt_tokens,
            "completion_tokens": g.tokens.len(),
            "total_tokens": g.prompt_tokens + g.tokens.len(),
        })
    }

    fn logprobs_json(&self, api: &Api, g: &Generated) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        reply::logprobs_json(
            &g.tokens,
            &g.logprobs,
            &g.top_logprobs,
            self.top_logprobs,
            &|id| api.token_text(id, self.as_ids),
        )
    }

    fn completion(&self, api: &Api, finished: &Finished) -> Value {
        let g = &finished.generated;
        let mut message = json!({"role": "assistant", "content": finished.reply.content});
        if !finished.reply.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(finished.reply.tool_calls.clone());
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": self.logprobs_json(api, g),
                "finish_reason": finish_reason(finished),
            }],
            "usage": self.usage(g),
            "clawdesk": {
                "adapter_version": g.version,
                "step": finished.step.map(|s| s.0),
            },
        })
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, logprobs: Value) -> Event {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        });
        Event::default().data(body.to_string())
    }
}

/// Streams the reply as it is generated. The events are made by a task of their own, so
/// that a client that goes away drops its receiver, which drops the token stream, which
/// halts the generation.
fn stream(
    api: Api,
    shape: Shape,
    mut tokens: mpsc::UnboundedReceiver<u32>,
    done: oneshot::Receiver<Result<Finished, ApiError>>,
    held: Vec<String>,
    include_usage: bool,
) -> Response {
    let (events, outgoing) = mpsc::channel::<Event>(32);
    let deadline = Instant::now() + api.inner.config.request_timeout;
    tokio::spawn(async move {
        let held: Vec<&str> = held.iter().map(String::as_str).collect();
        let first = shape.chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            Value::Null,
        );
        if events.send(first).await.is_err() {
            return;
        }
        let mut ids = Vec::new();
        let mut sent = 0usize;
        loop {
            match tokio::time::timeout_at(deadline.into(), tokens.recv()).await {
                Ok(Some(token)) => {
                    ids.push(token);
                    let text = api.decode(&ids);
                    let safe = reply::safe_prefix(&text, &held);
                    if safe > sent {
                        let delta = json!({"content": &text[sent..safe]});
                        sent = safe;
                        if events
                            .send(shape.chunk(delta, None, Value::Null))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let error = ApiError::Timeout(api.inner.config.request_timeout);
                    let _ = events
                        .send(Event::default().data(error.body().to_string()))
                        .await;
                    return;
                }
            }
        }
        let finished = match done.await {
            Ok(Ok(finished)) => finished,
            Ok(Err(e)) => {
                let _ = events
                    .send(Event::default().data(e.body().to_string()))
                    .await;
                return;
            }
            Err(_) => return,
        };
        let content = finished.reply.content.as_deref().unwrap_or_default();
        let mut delta = json!({});
        if content.len() > sent && content.is_char_boundary(sent) {
            delta["content"] = json!(&content[sent..]);
        }
        if !finished.reply.tool_calls.is_empty() {
            let calls: Vec<Value> = finished
                .reply
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    call["index"] = json!(i);
                    call
                })
                .collect();
            delta["tool_calls"] = Value::Array(calls);
        }
        let logprobs = shape.logprobs_json(&api, &finished.generated);
        let mut last = vec![shape.chunk(delta, Some(finish_reason(&finished)), logprobs)];
        if include_usage {
            let usage = json!({
                "id": shape.id, "object": "chat.completion.chunk", "created": shape.created,
                "model": shape.model, "choices": [], "usage": shape.usage(&finished.generated),
            });
            last.push(Event::default().data(usage.to_string()));
        }
        last.push(Event::default().data("[DONE]"));
        for event in last {
            if events.send(event).await.is_err() {
                return;
            }
        }
    });
    let body = futures::stream::unfold(outgoing, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(body).into_response()
}
