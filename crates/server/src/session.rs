//! Learning from use: a session's main turns are stored as steps, each given the session's
//! next user or tool message as its next state, from which the turn judge scores it later.
//! Side turns (a client's own summaries, titles, ...) are served but never stored.

use axum::http::HeaderMap;
use clawdesk_agent::turn::PolicyTurn;
use clawdesk_store::{BlobKind, EpisodeId, EpisodeStatus, NewTurn, StepId, Store};
use image::DynamicImage;

use crate::error::ApiError;
use crate::wire::ChatRequest;

/// Which of a session's turns a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnType {
    /// A turn of the agent's own work: stored as a step, to be judged and trained on.
    Main,
    /// A client's side request (a summary, a title): served, never stored.
    Side,
}

/// The session a request belongs to, as its client names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The client's session id (at most 256 bytes); the store keeps one episode per id.
    pub id: String,
    /// Which kind of turn the request is; main unless the client says side.
    pub turn: TurnType,
    /// The session ends with this request: its reply will have no next state.
    pub done: bool,
}

impl Session {
    /// The session a request belongs to (headers first, then body fields); `None` when it
    /// names none, and such a request is served without being stored.
    pub fn of(headers: &HeaderMap, request: &ChatRequest) -> Result<Option<Session>, ApiError> {
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map(|s| s.trim().to_owned()).map_err(|_| {
                        ApiError::BadRequest(format!("header {name} is not plain text"))
                    })
                })
                .transpose()
        };
        let id = header("x-session-id")?.or_else(|| request.session_id.clone());
        let Some(id) = id.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if id.len() > 256 {
            return Err(ApiError::BadRequest(
                "a session id is at most 256 bytes".into(),
            ));
        }
        let turn = match header("x-turn-type")?
            .or_else(|| request.turn_type.clone())
            .as_deref()
        {
            None | Some("main") => TurnType::Main,
            Some("side") => TurnType::Side,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "turn type must be `main` or `side`, not `{other}`"
                )));
            }
        };
        let done = match header("x-session-done")?.as_deref() {
            Some(v) => matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
            None => request.session_done.unwrap_or(false),
        };
        Ok(Some(Session { id, turn, done }))
    }
}

/// What a request says about its session: the task (its first user message) and the next
/// state of the previous main turn (its last message, when a user or a tool wrote it).
#[derive(Debug, Clone)]
pub struct Context {
    /// The first user message's text, cut to 200 characters.
    pub task: String,
    /// The last message as `{role, content, images}` when a user or a tool wrote it.
    pub next_state: Option<serde_json::Value>,
}

impl Context {
    /// Reads the task and the next state from a request's messages.
    pub fn of(request: &ChatRequest) -> Context {
        let task = request
            .messages
            .iter()
            .find(|m| m.role == "user")
            .map(|m| m.text())
            .unwrap_or_default();
        let next_state = request
            .messages
            .last()
            .filter(|last| matches!(last.role.as_str(), "user" | "tool"))
            .map(|last| {
                serde_json::json!({
                    "role": last.role,
                    "content": last.text(),
                    "images": last.image_count(),
                })
            });
        Context {
            task: task.chars().take(200).collect(),
            next_state,
        }
    }
}

/// Finds (or starts) the session's episode and, for a main turn, gives the previous main
/// turn its next state; a side turn that ends the session ends its episode.
pub fn begin(store: &Store, session: &Session, context: &Context) -> Result<EpisodeId, ApiError> {
    let episode = store
        .session_episode(&session.id, &context.task)
        .map_err(store_error)?;
    if session.turn == TurnType::Main
        && let Some(next) = &context.next_state
        && let Some(previous) = store.last_turn(episode.id).map_err(store_error)?
        && store
            .set_next_state(previous.id, next)
            .map_err(store_error)?
    {
        tracing::debug!(step = previous.id.0, session = %session.id, "turn has its next state");
    }
    // A session that ends on a side turn ends here: no main turn will be stored to end it.
    if session.turn == TurnType::Side && session.done {
        store
            .finish_episode(
                episode.id,
                EpisodeStatus::Done,
                Some("the client ended the session"),
            )
            .map_err(store_error)?;
    }
    Ok(episode.id)
}

/// What a served main turn leaves behind for the trainer.
pub struct ServedTurn {
    /// The prompt the policy saw and what it generated, tokens and log-probabilities included.
    pub turn: PolicyTurn,
    /// The request's decoded images, shared with the generation (not a copy).
    pub images: Vec<std::sync::Arc<DynamicImage>>,
    /// The reply as the client got it: `{content, tool_calls}`.
    pub action: serde_json::Value,
    /// The adapter version that generated the reply; `None` for the base model.
    pub version: Option<i64>,
    /// When generation was about to begin (its body read, its session known), in milliseconds
    /// since the Unix epoch.
    pub started_at_ms: i64,
}

/// Stores a main turn (its images as blobs first) and ends the session when asked.
pub fn record(
    store: &Store,
    episode: EpisodeId,
    session: &Session,
    served: ServedTurn,
) -> Result<StepId, ApiError> {
    let mut turn = served.turn;
    turn.images = served
        .images
        .iter()
        .map(|image| {
            // Stored as the agent's screenshots are (fast PNG, RGBA: the model composites any
            // transparency onto white either way, so it sees the same pixels again).
            let png = clawdesk_png::encode(&image.to_rgba8())
                .map_err(|e| ApiError::Internal(format!("encoding an image to store: {e}")))?;
            store.put_blob(&png, BlobKind::Png).map_err(store_error)
        })
        .collect::<Result<_, _>>()?;
    let step = store
        .insert_turn(&NewTurn {
            episode,
            response: turn.to_json(),
            action: served.action,
            policy_version: served.version,
            started_at_ms: served.started_at_ms,
            ended_at_ms: clawdesk_store::now_ms(),
        })
        .map_err(store_error)?;
    if session.done {
        store
            .finish_episode(
                episode,
                EpisodeStatus::Done,
                Some("the client ended the session"),
            )
            .map_err(store_error)?;
    }
    Ok(step)
}

fn store_error(e: clawdesk_store::StoreError) -> ApiError {
    ApiError::Internal(format!("the data store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_come_from_headers_or_the_body() {
        let request: ChatRequest = serde_json::from_value(serde_json::json!({
            "messages": [], "session_id": "body-id", "turn_type": "side"
        }))
        .expect("request");
        let from_body = Session::of(&HeaderMap::new(), &request)
            .expect("ok")
            .expect("some");
        assert_eq!(
            (from_body.id.as_str(), from_body.turn),
            ("body-id", TurnType::Side)
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-session-id", HeaderValue::from_static("h-1"));
        headers.insert("x-turn-type", HeaderValue::from_static("main"));
        headers.insert("x-session-done", HeaderValue::from_static("true"));
        let from_headers = Session::of(&headers, &request).expect("ok").expect("some");
        assert_eq!(from_headers.id, "h-1");
        assert_eq!(from_headers.turn, TurnType::Main);
        assert!(from_headers.done);
        headers.insert("x-turn-type", HeaderValue::from_static("other"));
        assert!(Session::of(&headers, &request).is_err());
        let none: ChatRequest =
            serde_json::from_value(serde_json::json!({"messages": []})).expect("request");
        assert_eq!(Session::of(&HeaderMap::new(), &none).expect("ok"), None);
    }
}
