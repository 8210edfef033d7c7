//! ClawDesk's policy behind an OpenAI-compatible API, so that any agent a person already
//! uses (a terminal agent, a chat client, a coding tool) trains the policy by being used:
//! each main turn of a session is stored with its tokens and log-probabilities, and the
//! session's next message becomes its next state, which the turn judge scores.
//!
//! Loopback by default; any other address needs a bearer token. Bodies, images and the
//! queue are bounded (413 and 429 in OpenAI's error shape), every request has a deadline,
//! and shutdown finishes the requests in flight, storing their turns first.

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod convert;
pub mod error;
pub mod fetch;
pub mod reply;
pub mod session;
pub mod wire;

pub use api::Api;
pub use config::ServerConfig;
pub use error::{ApiError, ServerError};
