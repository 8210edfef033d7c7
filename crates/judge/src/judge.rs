//! The one interface every judge answers through.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use clawdesk_store::{NewVerdict, StepId, VerdictSource};

use crate::case::StepCase;
use crate::error::Result;
use crate::votes::{Vote, tally};

/// A judge's answer on one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Whose verdict it is: a model judge's (a rule's included) or a person's.
    pub source: VerdictSource,
    /// +1 (the step helped), -1 (it did not), 0 (undecided).
    pub score: i8,
    /// The mean of the valid votes (a person's own score); `None` when no vote counted.
    pub mean: Option<f64>,
    /// The hindsight hint, when one was given.
    pub hint: Option<String>,
    /// Every vote with its raw text (empty for a person or a rule).
    pub votes: Vec<Vote>,
    /// A person's corrected action.
    pub correction: Option<serde_json::Value>,
}

impl Judgement {
    /// The verdict of a set of model votes.
    pub fn from_votes(votes: Vec<Vote>) -> Self {
        let t = tally(&votes);
        Self {
            source: VerdictSource::Judge,
            score: t.score,
            mean: t.mean,
            hint: t.hint,
            votes,
            correction: None,
        }
    }

    /// The row to store for `step`, from the judge called `judge`.
    pub fn verdict(&self, step: StepId, judge: &str) -> NewVerdict {
        NewVerdict {
            step,
            source: self.source,
            score: self.score,
            votes: (!self.votes.is_empty())
                .then(|| serde_json::to_value(&self.votes).unwrap_or_default()),
            hint: self.hint.clone(),
            judge: Some(judge.to_owned()),
            mean: self.mean,
            correction: self.correction.clone(),
        }
    }
}

/// Something that scores steps.
pub trait Judge: Send + Sync {
    /// A stable name stored with each verdict, saying which endpoint and model judged (never a
    /// key); the store owes each name one verdict per step.
    fn name(&self) -> &str;

    /// Whose verdicts these are: a person's override a judge's.
    fn source(&self) -> VerdictSource {
        VerdictSource::Judge
    }

    /// Judges one step. An `Err` means the step could not be judged now (endpoint down, a
    /// person away) and will be tried again; what the judge *said*, however odd, is an `Ok` with
    /// invalid votes.
    fn judge<'a>(&'a self, case: &'a StepCase) -> BoxFuture<'a, Result<Judgement>>;
}

/// How a model judge samples its votes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VoteSettings {
    /// Votes per step (the paper: 3 for GUI steps).
    pub votes: usize,
    /// The sampling temperature of each vote, 0 to 2.
    pub temperature: f64,
    /// The most tokens one answer may take.
    pub max_tokens: u32,
    /// Ask for a hindsight hint in the same answer.
    pub hints: bool,
    /// Screenshots are scaled down to at most this many pixels.
    pub pixel_budget: u64,
    /// How screenshots are encoded for an endpoint judge (the local judge is given pixels).
    pub encoding: crate::image::ImageEncoding,
}

impl Default for VoteSettings {
    fn default() -> Self {
        Self {
            votes: 3,
            temperature: 0.6,
            max_tokens: 1024,
            hints: true,
            pixel_budget: 1280 * 800,
            encoding: crate::image::ImageEncoding::Png,
        }
    }
}

impl VoteSettings {
    /// Refuses settings that cannot work: 0 or over 64 votes, a temperature outside [0, 2], no
    /// tokens, or a pixel budget under 28×28.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(crate::JudgeError::Config(m));
        if !(1..=64).contains(&self.votes) {
            return bad(format!("votes must be 1 to 64, not {}", self.votes));
        }
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return bad(format!(
                "temperature must be in [0, 2], not {}",
                self.temperature
            ));
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if self.pixel_budget < 28 * 28 {
            return bad(format!(
                "pixel budget {} is too small to see anything",
                self.pixel_budget
            ));
        }
        Ok(())
    }
}
