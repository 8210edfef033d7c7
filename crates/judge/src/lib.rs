//! The step judge: turns a step's before and after screens into a ±1 score and a hindsight
//! hint, the two learning signals of OpenClaw-RL.
//!
//! Every judge (an OpenAI-compatible vision endpoint, the local model, a task's rule, a person)
//! sits behind [`Judge`]. A judge answers with votes; [`tally`] turns them into the majority's
//! score, their mean and the longest hint, keeping every vote's raw text. [`JudgeLoop`] works
//! through the steps the store says a judge still owes, so a restart picks up where the last
//! run stopped and no step is judged twice or dropped.

#![warn(missing_docs)]

mod case;
mod error;
mod image;
mod judge;
mod judges;
mod millis;
mod parse;
mod prompt;
mod run;
mod secret;
#[cfg(feature = "stub")]
pub mod stub;
mod votes;

pub use case::StepCase;
pub use error::{JudgeError, Result};
pub use image::{EncodedImage, ImageEncoding, encode_for_endpoint, fit};
pub use judge::{Judge, Judgement, VoteSettings};
pub use judges::endpoint::{EndpointConfig, EndpointJudge, RetryPolicy, completion_text};
pub use judges::local::LocalJudge;
pub use judges::person::{PersonAnswer, PersonJudge, PersonQuestion, person_verdict};
pub use judges::rule::{RuleJudge, RuleVerdict, StepRule};
pub use parse::{HINT_END, HINT_START, MAX_HINT_CHARS, MIN_HINT_CHARS, ParsedVote, parse_vote};
pub use prompt::{AFTER_MARKER, BEFORE_MARKER, JudgePrompts, PromptPart, Screen};
pub use run::{JudgeEvent, JudgeLoop, LoopOptions, LoopStats};
pub use secret::{ApiKey, Secret};
pub use votes::{MAX_RAW_CHARS, Tally, Vote, tally};
