//! Errors as OpenAI's clients expect them: a status and `{"error": {message, type, param,
//! code}}`, so SDKs raise their usual exception types (rate limit, bad request, ...).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for what this server does not do (400).
    #[error("{0}")]
    BadRequest(String),
    /// The prompt does not fit the model's context (400, `context_length_exceeded`).
    #[error("the prompt is {tokens} tokens; this model takes at most {limit}")]
    ContextLength {
        /// The prompt's length in tokens.
        tokens: usize,
        /// The most tokens the model takes.
        limit: usize,
    },
    /// No bearer token, or the wrong one (401).
    #[error("a missing or wrong API key: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// Refused whoever asks: a request a web page could have sent, or a path outside what
    /// this server may read.
    #[error("{0}")]
    Forbidden(String),
    /// What the request names is not here: a route, a model or an adapter (404).
    #[error("{0}")]
    NotFound(String),
    /// The body, an image or the number of images is over the server's limits (413).
    #[error("{0}")]
    TooLarge(String),
    /// The queue is full (429).
    #[error("{waiting} requests are already waiting for the model; try again shortly")]
    Busy {
        /// The queue's length, the requests already waiting for or using the model.
        waiting: usize,
    },
    /// The images of the requests in flight already hold the server's pixel budget.
    #[error(
        "the images of the requests in flight already hold this server's budget of {budget} pixels; try again shortly"
    )]
    PixelsBusy {
        /// The server's `max_pixels_in_flight`.
        budget: u64,
    },
    /// The reply did not finish within the request's deadline (504).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The model is not serving: its policy has stopped (503).
    #[error("the model is not serving: {0}")]
    Unavailable(String),
    /// Something on the server's side failed: the store, a task, the generation (500).
    #[error("{0}")]
    Internal(String),
}

/// Startup errors of the server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The settings are refused, or a part of the server could not be set up.
    #[error("{0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The server failed after it started listening.
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::ContextLength { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Busy { .. } | ApiError::PixelsBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", None),
            ApiError::ContextLength { .. } => {
                ("invalid_request_error", Some("context_length_exceeded"))
            }
            ApiError::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
            ApiError::Forbidden(_) => ("invalid_request_error", Some("forbidden")),
            ApiError::NotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ApiError::TooLarge(_) => ("invalid_request_error", Some("request_too_large")),
            ApiError::Busy { .. } | ApiError::PixelsBusy { .. } => {
                ("requests", Some("rate_limit_exceeded"))
            }
            ApiError::Timeout(_) => ("timeout", None),
            ApiError::Unavailable(_) | ApiError::Internal(_) => ("server_error", None),
        }
    }

    /// The body of an error, also sent as the last event of a stream that fails midway.
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind_and_code();
        serde_json::json!({
            "error": {"message": self.to_string(), "type": kind, "param": null, "code": code}
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        let mut response = (status, Json(self.body())).into_response();
        if matches!(self, ApiError::Busy { .. } | ApiError::PixelsBusy { .. }) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<clawdesk_agent::AgentError> for ApiError {
    fn from(e: clawdesk_agent::AgentError) -> Self {
        use clawdesk_agent::AgentError;
        use clawdesk_model::ModelError;
        match e {
            AgentError::Model(ModelError::ContextOverflow { tokens, limit }) => {
                ApiError::ContextLength { tokens, limit }
            }
            AgentError::Model(ModelError::Input(m)) => ApiError::BadRequest(m),
            AgentError::PolicyGone => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
