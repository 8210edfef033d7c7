//! An OpenAI-compatible chat endpoint on loopback that answers as a script says: slow, rate
//! limited, broken, or right. It stands in for the external judge service (vLLM, OpenAI) in the
//! tests of every fault the endpoint judge must survive, and in `clawdesk bench judge`, which
//! needs an endpoint with a known latency. It never runs in the app.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// What the endpoint does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A well-formed chat completion whose message content is this text.
    Answer(String),
    /// Any status, content type and bytes.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The `Content-Type` header.
        content_type: &'static str,
        /// The body's bytes, as sent.
        body: Vec<u8>,
        /// A `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// The reply after a wait.
    Delay(Duration, Box<Reply>),
    /// Headers, then the connection breaks mid-body.
    Reset,
}

impl Reply {
    /// A chat completion with the given JSON as the whole body.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Http {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            retry_after: None,
        }
    }

    /// This reply, sent after `wait`.
    pub fn after(self, wait: Duration) -> Reply {
        Reply::Delay(wait, Box::new(self))
    }
}

/// Decides the reply to request number `n` (from 0) with body `request`.
pub type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    record: bool,
    received: Mutex<Vec<(Option<String>, Value)>>,
}

/// A running stub endpoint; stops when dropped.
pub struct StubEndpoint {
    /// The API root to configure a judge with (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl StubEndpoint {
    /// Starts on a free loopback port. With `record`, keeps every request's body and
    /// `Authorization` header for the test to inspect.
    pub async fn start(
        record: bool,
        script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            script: Box::new(script),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            record,
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(answer))
            .layer(DefaultBodyLimit::max(256 << 20))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "stub endpoint stopped");
            }
        });
        Ok(Self {
            base_url: format!("http://{addr}/v1"),
            shared,
            stop: Some(stop),
        })
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request's `Authorization` header and JSON body (when started with `record`).
    pub fn received(&self) -> Vec<(Option<String>, Value)> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for StubEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let _guard = InFlight::enter(&shared);
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return respond(Reply::json(
            400,
            json!({"error": {"message": "invalid JSON"}}),
        ));
    };
    if shared.record {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut received) = shared.received.lock() {
            received.push((auth, request.clone()));
        }
    }
    let mut reply = (shared.script)(n, &request);
    while let Reply::Delay(wait, next) = reply {
        tokio::time::sleep(wait).await;
        reply = *next;
    }
    respond(reply)
}

fn respond(reply: Reply) -> Response {
    let build = |status: u16, content_type: &str, body: Body, retry_after: Option<u64>| {
        let mut response = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CONTENT_TYPE, content_type);
        if let Some(secs) = retry_after {
            response = response.header(header::RETRY_AFTER, secs.to_string());
        }
        response.body(body).unwrap_or_default()
    };
    match reply {
        Reply::Answer(text) => {
            let body = json!({
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "model": "stub",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"
                }]
            });
            build(200, "application/json", Body::from(body.to_string()), None)
        }
        Reply::Http {
            status,
            content_type,
            body,
            retry_after,
        } => build(status, content_type, Body::from(body), retry_after),
        Reply::Reset => {
            let chunks = futures::stream::iter([
                Ok(Bytes::from_static(b"{\"choices\": [")),
                Err(std::io::Error::other("connection dropped by the stub")),
            ]);
            build(200, "application/json", Body::from_stream(chunks), None)
        }
        // Unwrapped by the caller.
        Reply::Delay(_, next) => respond(*next),
    }
}
