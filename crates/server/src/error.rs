//! Errors as OpenAI's clients expect them: a status and `{"error": {message, type, param,
//! code}}`, so SDKs raise their usual exception types (rate limit, bad request, ...).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the prompt is {tokens} tokens; this model takes at most {limit}")]
    ContextLength { tokens: usize, limit: usize },
    #[error("a missing or wrong API key: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// Refused whoever asks: a request a web page could have sent, or a path outside what
    /// this server may read.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{waiting} requests are already waiting for the model; try again shortly")]
    Busy { waiting: usize },
    /// The images of the requests in flight already hold the server's pixel budget.
    #[error(
        "the images of the requests in flight already hold this server's budget of {budget} pixels; try again shortly"
    )]
    PixelsBusy { budget: u64 },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the model is not serving: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Startup errors of the server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
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
