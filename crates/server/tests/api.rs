//! The API on loopback with a real tiny model and a real store: answers, limits, sessions
//! stored as turns with their next states, and a shutdown that loses no turn.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use candle_core::Device;
use clawdesk_agent::Policy;
use clawdesk_agent::turn::PolicyTurn;
use clawdesk_model::source::LoadedModel;
use clawdesk_model::tiny;
use clawdesk_server::{Api, ServerConfig};
use clawdesk_store::{EpisodeStatus, StepId, StepKind, Store};
use serde_json::{Value, json};
use tokio::sync::oneshot;

struct Running {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

async fn start(config: ServerConfig) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    tiny::write_tiny_model(&model, &tiny::default_config(), 5).expect("tiny model");
    let loaded = LoadedModel::load(
        model.to_str().expect("utf8"),
        &Device::Cpu,
        None,
        &mut |_| {},
    )
    .expect("load");
    let tokenizer = loaded.processor.tokenizer().clone();
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let config = ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config
    };
    let api = Api::new(
        Policy::spawn(loaded),
        tokenizer,
        Some(store.clone()),
        config,
    )
    .expect("api");
    let listener = api.bind().await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        api.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("serves");
    });
    Running {
        _dir: dir,
        url,
        store,
        stop: Some(stop),
        server,
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> (u16, Value, Option<i64>) {
        let mut request = self
            .http
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let step = response
            .headers()
            .get("x-clawdesk-step")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let bytes = response.bytes().await.expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, step)
    }
}

fn ask(text: &str) -> Value {
    json!({"model": "clawdesk", "messages": [{"role": "user", "content": text}],
           "max_tokens": 6, "temperature": 1.0, "top_p": 1.0, "seed": 7})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_usage_logprobs_and_stops() {
    let server = start(ServerConfig::default()).await;
    let models = server
        .http
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .expect("models")
        .bytes()
        .await
        .expect("body");
    let models: Value = serde_json::from_slice(&models).expect("json");
    assert_eq!(models["data"][0]["id"], "clawdesk");
    // Wrong routes and methods answer in OpenAI's error shape too.
    for (method, path, status) in [
        (reqwest::Method::GET, "/v1/chat/completions", 405),
        (reqwest::Method::POST, "/v1/completions", 404),
    ] {
        let response = server
            .http
            .request(method, format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    let mut body = ask("hello");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (status, answer, step) = server.post(&body, &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(step, None, "no session: served, not stored");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 6);
    let content = choice["logprobs"]["content"].as_array().expect("logprobs");
    assert_eq!(content.len(), 6);
    for token in content {
        let lp = token["logprob"].as_f64().expect("a number");
        assert!(lp <= 0.0);
        let top = token["top_logprobs"].as_array().expect("alternatives");
        assert!(!top.is_empty() && top.len() <= 3);
        // The chosen token is among the alternatives with the same log-probability.
        assert!(
            top.iter()
                .any(|t| t["token"] == token["token"] && (t["logprob"].as_f64() == Some(lp))),
            "{token}"
        );
    }
    // The same seed gives the same reply; a stop string cuts it where it first appears.
    let (_, again, _) = server.post(&ask("hello"), &[]).await;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .to_owned();
    assert_eq!(again["choices"][0]["message"]["content"], text.as_str());
    let stop: String = text.chars().skip(1).take(2).collect();
    if !stop.is_empty() {
        let mut body = ask("hello");
        body["stop"] = json!([stop.clone()]);
        let (_, cut, _) = server.post(&body, &[]).await;
        let cut_text = cut["choices"][0]["message"]["content"]
            .as_str()
            .expect("text");
        assert_eq!(cut_text, &text[..text.find(&stop).expect("present")]);
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    }
    let (status, err, _) = server
        .post(
            &json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "model_not_found");
    let (status, err, _) = server
        .post(&json!({"messages": [], "temperature": 0}), &[])
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_the_same_reply_in_pieces() {
    let server = start(ServerConfig::default()).await;
    let (_, whole, _) = server.post(&ask("stream me"), &[]).await;
    let mut body = ask("stream me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("a JSON chunk"))
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed,
        whole["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "length")
    );
    assert_eq!(
        chunks.last().expect("usage")["usage"]["completion_tokens"],
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stores_main_turns_with_their_next_state() {
    let server = start(ServerConfig::default()).await;
    let session = [("x-session-id", "chat-1")];
    let first = json!({"messages": [{"role": "user", "content": "name a colour"}],
                       "max_tokens": 4, "seed": 1});
    let (status, reply, step) = server.post(&first, &session).await;
    assert_eq!(status, 200, "{reply}");
    let first_step = StepId(step.expect("a stored turn"));
    let said = reply["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    // A side turn in between is served but not stored, and is not the next state.
    let side = json!({"messages": [{"role": "user", "content": "summarise"}], "max_tokens": 2});
    let (_, _, side_step) = server
        .post(
            &side,
            &[("x-session-id", "chat-1"), ("x-turn-type", "side")],
        )
        .await;
    assert_eq!(side_step, None);
    assert_eq!(
        server.store.step(first_step).expect("step").next_state,
        None
    );
    let second = json!({"messages": [
        {"role": "user", "content": "name a colour"},
        {"role": "assistant", "content": said},
        {"role": "user", "content": "No, a warm one."}],
        "max_tokens": 4, "seed": 2, "session_done": true});
    let (_, _, step) = server.post(&second, &session).await;
    let second_step = StepId(step.expect("stored"));

    let stored = server.store.step(first_step).expect("step");
    assert_eq!(stored.kind, StepKind::Turn);
    assert_eq!(
        stored.next_state,
        Some(json!({"role": "user", "content": "No, a warm one.", "images": 0}))
    );
    let turn = PolicyTurn::of_step(stored.response.as_ref())
        .expect("well formed")
        .expect("a policy turn");
    assert_eq!(turn.tokens.len(), turn.logprobs.len());
    assert_eq!(turn.text.trim_end(), said.trim_end());
    let episode = server.store.episode(stored.episode).expect("episode");
    assert_eq!(episode.session.as_deref(), Some("chat-1"));
    assert_eq!(episode.status, EpisodeStatus::Done, "session_done ended it");
    assert_eq!(episode.steps, 2);
    assert_eq!(server.store.step(second_step).expect("step").index, 1);

    // A session may end on a side turn: its episode ends all the same, unstored.
    let (_, _, main) = server.post(&first, &[("x-session-id", "chat-2")]).await;
    assert!(main.is_some());
    let (_, _, side) = server
        .post(
            &side,
            &[
                ("x-session-id", "chat-2"),
                ("x-turn-type", "side"),
                ("x-session-done", "1"),
            ],
        )
        .await;
    assert_eq!(side, None);
    let ended = server.store.session_episode("chat-2", "").expect("session");
    assert_eq!((ended.status, ended.steps), (EpisodeStatus::Done, 1));
}

fn with_image(png: &[u8]) -> Value {
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is on screen?"},
        {"type": "image_url", "image_url": {"url": url}}]}], "max_tokens": 3})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_413_401_and_429_and_the_server_stays_up() {
    let server = start(ServerConfig {
        max_body_bytes: 1 << 20,
        queue: 1,
        token: Some("secret-token".into()),
        ..ServerConfig::default()
    })
    .await;
    let auth = [("authorization", "Bearer secret-token")];
    let (status, err, _) = server.post(&ask("hi"), &[]).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["error"]["code"], "invalid_api_key");

    let huge = clawdesk_server::convert::png_declaring(30_000, 30_000);
    let (status, err, _) = server.post(&with_image(&huge), &auth).await;
    assert_eq!(status, 413, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("30000×30000")
    );

    let mut small = Vec::new();
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]))
        .write_to(&mut Cursor::new(&mut small), image::ImageFormat::Png)
        .expect("png");
    let (status, answer, _) = server.post(&with_image(&small), &auth).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["usage"]["prompt_tokens"].as_u64().expect("count") > 10);

    let big = json!({"messages": [{"role": "user", "content": "x".repeat(3 << 20)}]});
    let (status, err, _) = server.post(&big, &auth).await;
    assert_eq!(status, 413, "{err}");

    // One place in the queue: while a long answer holds it, the next request gets 429.
    let slow = {
        let mut body = ask("long");
        // The tiny model writes ~7,000 tokens/s here: 4,000 hold the queue for a while.
        body["max_tokens"] = json!(4000);
        let request = server
            .http
            .post(format!("{}/v1/chat/completions", server.url))
            .header("authorization", "Bearer secret-token")
            .header("content-type", "application/json")
            .body(body.to_string());
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, err, _) = server.post(&ask("me too"), &auth).await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert_eq!(slow.await.expect("joined").expect("answered"), 200);
    let (status, _, _) = server.post(&ask("after"), &auth).await;
    assert_eq!(status, 200, "the server is still up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_and_keeps_their_turns() {
    let mut server = start(ServerConfig::default()).await;
    let mut body = ask("a long answer");
    body["max_tokens"] = json!(4000);
    let request = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .header("x-session-id", "closing")
        .header("content-type", "application/json")
        .body(body.to_string());
    let in_flight = tokio::spawn(async move {
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        let step: Option<i64> = response
            .headers()
            .get("x-clawdesk-step")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        (status, step)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = server.stop.take().expect("once").send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !server.server.is_finished() && !in_flight.is_finished(),
        "the request was still in flight when shutdown began"
    );
    let (status, step) = in_flight.await.expect("joined");
    assert_eq!(status, 200);
    let step = server
        .store
        .step(StepId(step.expect("stored")))
        .expect("the turn is kept");
    assert_eq!(step.kind, StepKind::Turn);
    tokio::time::timeout(Duration::from_secs(10), &mut server.server)
        .await
        .expect("the server ends after its last request")
        .expect("cleanly");
    assert!(
        server
            .http
            .get(format!("{}/v1/models", server.url))
            .send()
            .await
            .is_err(),
        "no longer listening"
    );
}

/// Sends `body` until the one place in the queue is free (the previous generation finished).
async fn when_free(server: &Running, body: &Value) -> Value {
    for _ in 0..600 {
        let (status, answer, _) = server.post(body, &[]).await;
        if status != 429 {
            assert_eq!(status, 200, "{answer}");
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the queue never freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_deadline_a_request_gets_504_and_its_generation_stops() {
    let server = start(ServerConfig {
        request_timeout: Duration::from_millis(100),
        queue: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut long = ask("a long answer");
    long["max_tokens"] = json!(8000);
    let (status, err, step) = server.post(&long, &[("x-session-id", "late")]).await;
    assert_eq!(status, 504, "{err}");
    assert_eq!(err["error"]["type"], "timeout");
    assert_eq!(step, None);
    // Once the model is free again, the timed-out generation has ended without a turn: it
    // was halted, not run to its 8,000 tokens and stored.
    when_free(&server, &ask("next")).await;
    let episode = server.store.session_episode("late", "").expect("session");
    assert!(server.store.steps(episode.id).expect("steps").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_leaves_stops_generating() {
    let server = start(ServerConfig {
        queue: 1,
        ..ServerConfig::default()
    })
    .await;
    let mut long = ask("stream a long answer");
    long["max_tokens"] = json!(8000);
    long["stream"] = json!(true);
    let mut response = server
        .http
        .post(format!("{}/v1/chat/completions", server.url))
        .header("content-type", "application/json")
        .header("x-session-id", "gone")
        .body(long.to_string())
        .send()
        .await
        .expect("streaming");
    assert_eq!(response.status().as_u16(), 200);
    let first = response.chunk().await.expect("a chunk").expect("data");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(response);
    when_free(&server, &ask("next")).await;
    let episode = server.store.session_episode("gone", "").expect("session");
    assert!(
        server.store.steps(episode.id).expect("steps").is_empty(),
        "a reply nobody received is not a turn"
    );
}

/// Issue 26: a web page in the person's browser can send a `text/plain` POST to loopback with
/// no preflight, and a DNS-rebinding name makes it same-origin. Without a token both are
/// refused, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_web_page_could_send_are_refused_and_store_nothing() {
    let server = start(ServerConfig::default()).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let body = ask("from a page").to_string();
    let send = |content_type: &'static str, extra: Vec<(&'static str, String)>| {
        let mut request = server
            .http
            .post(&url)
            .header("content-type", content_type)
            .header("x-session-id", "page")
            .body(body.clone());
        for (k, v) in extra {
            request = request.header(k, v);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (status, text)
        }
    };
    // The simple request a form or fetch() with no-cors sends.
    let (status, text) = send(
        "text/plain",
        vec![("origin", "https://evil.example".into())],
    )
    .await;
    assert_eq!(status, 403, "{text}");
    // JSON, but from a foreign page.
    let (status, text) = send(
        "application/json",
        vec![("origin", "https://evil.example".into())],
    )
    .await;
    assert_eq!(status, 403, "{text}");
    // A rebinding name that resolves to 127.0.0.1 keeps its own Host header.
    let (status, text) = send(
        "application/json",
        vec![("host", "rebind.evil.example:8000".into())],
    )
    .await;
    assert_eq!(status, 403, "{text}");
    // A loopback Origin (a local tool's own page) and no Origin at all are served.
    let port = server.url.rsplit(':').next().expect("port").to_owned();
    let (status, text) = send(
        "application/json",
        vec![("origin", format!("http://localhost:{port}"))],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        server.store.session_episode("page", "").is_ok(),
        "the allowed request is stored"
    );
    let steps = server
        .store
        .steps(
            server
                .store
                .session_episode("page", "")
                .expect("session")
                .id,
        )
        .expect("steps");
    assert_eq!(steps.len(), 1, "only the allowed request left a turn");
}

/// Issue 26: `/v1/load_lora_adapter` reads only adapters under the data directory's adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_lora_adapter_refuses_paths_outside_the_adapters_folder() {
    let server = start(ServerConfig::default()).await;
    let load = |path: String| {
        let request = server
            .http
            .post(format!("{}/v1/load_lora_adapter", server.url))
            .header("content-type", "application/json")
            .body(json!({"lora_name": "x-v1", "lora_path": path}).to_string());
        async move {
            let response = request.send().await.expect("sent");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }
    };
    let (status, text) = load("/etc".into()).await;
    assert_eq!(status, 403, "{text}");
    // A link inside the adapters folder that points out of it is refused too.
    let adapters = server.store.root().join("adapters");
    std::fs::create_dir_all(&adapters).expect("adapters folder");
    std::os::unix::fs::symlink("/etc", adapters.join("sneaky-v2")).expect("symlink");
    let (status, text) = load(adapters.join("sneaky-v2").display().to_string()).await;
    assert_eq!(status, 403, "{text}");
    let (status, text) = load(adapters.join("..").join("..").display().to_string()).await;
    assert_eq!(status, 403, "{text}");
}

/// A raw POST whose headers declare `length` bytes of JSON body, of which only `sent` goes.
async fn start_upload(addr: &str, length: usize, sent: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\n\
                 content-type: application/json\r\ncontent-length: {length}\r\n\r\n{sent}"
            )
            .as_bytes(),
        )
        .await
        .expect("the headers go");
    socket
}

/// Issue 26: bodies are read before a place in the queue is taken, so clients that send
/// slowly (or never finish) cannot starve one that is ready; a declared length over the limit
/// is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_do_not_starve_a_ready_request() {
    use tokio::io::AsyncReadExt;
    let server = start(ServerConfig {
        queue: 2,
        max_body_bytes: 1 << 20,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..32 {
        slow.push(start_upload(&addr, 5000, "{\"mess").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answered = tokio::time::timeout(Duration::from_secs(60), server.post(&ask("ready"), &[]))
        .await
        .expect("answered within its deadline");
    assert_eq!(answered.0, 200, "{}", answered.1);

    // A declared length over the limit: 413 before the body is sent.
    let mut socket = start_upload(&addr, 999_999_999, "").await;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut head))
        .await
        .expect("answered without the body")
        .expect("read");
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(slow);
}

/// Issue 26: one budget bounds the pixels of decoded images held across all requests in
/// flight: a request that would go over it waits its turn (429), one that alone is over it is
/// refused (413), and the budget comes back when a request ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_images_share_one_pixel_budget() {
    let server = start(ServerConfig {
        max_image_pixels: 1500,
        max_pixels_in_flight: 1500,
        ..ServerConfig::default()
    })
    .await;
    let mut small = Vec::new();
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]))
        .write_to(&mut Cursor::new(&mut small), image::ImageFormat::Png)
        .expect("png");
    // Two 1,200-pixel images in one request are over the budget on their own.
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&small)
    );
    let two = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "two"},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": {"url": url}}]}], "max_tokens": 3});
    let (status, err, _) = server.post(&two, &[]).await;
    assert_eq!(status, 413, "{err}");
    // While a long answer holds its image, the next image waits its turn.
    let slow = {
        let mut body = with_image(&small);
        body["max_tokens"] = json!(4000);
        let request = server
            .http
            .post(format!("{}/v1/chat/completions", server.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, err, _) = server.post(&with_image(&small), &[]).await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    // Text alone needs no pixels.
    let (status, _, _) = server.post(&ask("no image"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(slow.await.expect("joined").expect("answered"), 200);
    let (status, err, _) = server.post(&with_image(&small), &[]).await;
    assert_eq!(status, 200, "the budget came back: {err}");
}
