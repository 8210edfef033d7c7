//! Many answers into one verdict: every vote kept with its raw text, the majority's sign as the
//! score, the mean beside it, and the longest hint.

use serde::{Deserialize, Serialize};

use crate::parse::{parse_vote, shorten};

/// How much of an answer is kept for the timeline; a runaway 10 MB answer keeps its start.
pub const MAX_RAW_CHARS: usize = 16 * 1024;

/// One judge answer as stored in the verdict's `votes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// +1 or -1; `None` when the answer did not hold exactly one valid box.
    pub score: Option<i8>,
    /// The hindsight hint, when the answer holds one that counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Why the vote did not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The answer as the judge wrote it (its start, when longer than [`MAX_RAW_CHARS`]).
    pub raw: String,
}

impl Vote {
    /// Parses an answer into a vote.
    pub fn from_answer(answer: &str) -> Self {
        let parsed = parse_vote(answer);
        Self {
            score: parsed.score,
            hint: parsed.hint,
            problem: parsed.problem,
            raw: shorten(answer, MAX_RAW_CHARS),
        }
    }
}

/// The votes counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The sign of the sum of valid votes: +1, -1, or 0 for a tie or no valid vote.
    pub score: i8,
    /// The mean of the valid votes; `None` when none counted.
    pub mean: Option<f64>,
    /// The longest valid hint among the votes.
    pub hint: Option<String>,
    /// How many votes counted (each held exactly one valid box).
    pub valid: usize,
}

/// Counts votes.
pub fn tally(votes: &[Vote]) -> Tally {
    let valid: Vec<i64> = votes
        .iter()
        .filter_map(|v| v.score.map(i64::from))
        .collect();
    let sum: i64 = valid.iter().sum();
    let hint = votes
        .iter()
        .filter_map(|v| v.hint.as_ref())
        .max_by_key(|h| h.chars().count())
        .cloned();
    Tally {
        score: sum.signum() as i8,
        mean: (!valid.is_empty()).then(|| sum as f64 / valid.len() as f64),
        hint,
        valid: valid.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(answers: &[&str]) -> Vec<Vote> {
        answers.iter().map(|a| Vote::from_answer(a)).collect()
    }

    #[test]
    fn the_majority_of_valid_votes_decides() {
        let t = tally(&votes(&["\\boxed{1}", "\\boxed{1}", "\\boxed{-1}"]));
        assert_eq!((t.score, t.valid), (1, 3));
        assert!((t.mean.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // Invalid votes are left out: one valid -1 against two garbled answers.
        let t = tally(&votes(&["\\boxed{+1}", "\\boxed{-1}", "yes"]));
        assert_eq!((t.score, t.mean, t.valid), (-1, Some(-1.0), 1));
    }

    #[test]
    fn ties_and_no_valid_votes_score_zero() {
        let t = tally(&votes(&["\\boxed{1}", "\\boxed{-1}", "\\boxed{2}"]));
        assert_eq!((t.score, t.mean), (0, Some(0.0)));
        let t = tally(&votes(&["", "\\boxed{1.0}", "\\boxed{1}\\boxed{1}"]));
        assert_eq!((t.score, t.mean, t.valid), (0, None, 0));
        assert_eq!(tally(&[]).score, 0);
    }

    #[test]
    fn the_longest_hint_wins_even_from_an_invalid_vote() {
        let t = tally(&votes(&[
            "\\boxed{-1}[HINT_START]Click Save.[HINT_END]",
            "oops [HINT_START]Open the File menu, then click Save.[HINT_END]",
            "\\boxed{-1}",
        ]));
        assert_eq!(
            t.hint.as_deref(),
            Some("Open the File menu, then click Save.")
        );
        assert_eq!(t.score, -1);
    }

    #[test]
    fn raw_text_is_kept_but_bounded() {
        let huge = "a".repeat(10 * 1024 * 1024) + "\\boxed{1}";
        let vote = Vote::from_answer(&huge);
        assert_eq!(vote.score, Some(1));
        assert!(vote.raw.chars().count() <= MAX_RAW_CHARS + 1);
        let json = serde_json::to_value(&vote).unwrap();
        assert_eq!(json["score"], 1);
        assert!(json.get("hint").is_none());
    }
}
