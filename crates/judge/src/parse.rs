//! Reading one judge answer: the single boxed score and the hindsight hint.
//!
//! Strict by design (a vote counts only as exactly one `\boxed{1}` or `\boxed{-1}`), linear in
//! the answer's length, and total: any text, however large or strange, yields a parsed vote and
//! never a panic (fuzzed in `tests/parse_fuzz.rs`).

/// Where the hint starts and ends in the judge's answer.
pub const HINT_START: &str = "[HINT_START]";
/// Where the hint ends: the closing tag after [`HINT_START`].
pub const HINT_END: &str = "[HINT_END]";
/// A hint must be longer than this (in characters) to count; shorter ones are "none", "n/a"...
pub const MIN_HINT_CHARS: usize = 10;
/// A hint is 1-3 sentences; anything longer than this is not a hint but a runaway answer.
pub const MAX_HINT_CHARS: usize = 1000;

const BOX: &str = "\\boxed{";
const THINK_START: &str = "<think>";
const THINK_END: &str = "</think>";

/// What one answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedVote {
    /// +1 or -1 when the answer holds exactly one valid box; `None` otherwise.
    pub score: Option<i8>,
    /// The hint, when the answer holds one that counts.
    pub hint: Option<String>,
    /// Why the score did not count, for the timeline.
    pub problem: Option<String>,
}

/// Parses one answer.
pub fn parse_vote(answer: &str) -> ParsedVote {
    // Reasoning models think aloud first and may try boxes there; only the answer after the
    // thinking counts. A think block that never closes means the answer never came.
    let answer = match answer.rfind(THINK_END) {
        Some(end) => &answer[end + THINK_END.len()..],
        None if answer.contains(THINK_START) => {
            return ParsedVote {
                score: None,
                hint: None,
                problem: Some("the answer stops inside <think>".into()),
            };
        }
        None => answer,
    };
    let (outside, hints) = split_hints(answer);
    let hint = hints
        .into_iter()
        .filter_map(valid_hint)
        .max_by_key(|h| h.chars().count());
    let (score, problem) = match boxed_score(&outside) {
        Ok(score) => (Some(score), None),
        Err(problem) => (None, Some(problem)),
    };
    ParsedVote {
        score,
        hint,
        problem,
    }
}

/// Splits the answer into the text outside hint blocks and the hint blocks' contents. An
/// unterminated block hides the rest of the answer from scoring (it is the hint's, not ours).
fn split_hints(answer: &str) -> (String, Vec<&str>) {
    let mut outside = String::with_capacity(answer.len().min(1 << 16));
    let mut hints = Vec::new();
    let mut rest = answer;
    while let Some(start) = rest.find(HINT_START) {
        outside.push_str(&rest[..start]);
        let after = &rest[start + HINT_START.len()..];
        match after.find(HINT_END) {
            Some(end) => {
                hints.push(&after[..end]);
                // A break where the block was, so the text around it cannot join into a box
                // that the answer never wrote (`\\boxed{` + hint + `1}`).
                outside.push('\n');
                rest = &after[end + HINT_END.len()..];
            }
            None => {
                rest = "";
                break;
            }
        }
    }
    outside.push_str(rest);
    (outside, hints)
}

fn valid_hint(text: &str) -> Option<String> {
    let text = text.trim();
    let chars = text.chars().count();
    (chars > MIN_HINT_CHARS && chars <= MAX_HINT_CHARS).then(|| text.to_owned())
}

/// The score of exactly one box holding exactly `1` or `-1`.
fn boxed_score(text: &str) -> Result<i8, String> {
    // The first box's content; `None` inside when it never closes.
    let mut found: Option<Option<&str>> = None;
    let mut count = 0usize;
    let mut rest = text;
    while let Some(at) = rest.find(BOX) {
        let inside = &rest[at + BOX.len()..];
        let (content, next) = match inside.find('}') {
            Some(close) => (Some(&inside[..close]), &inside[close + 1..]),
            None => (None, ""),
        };
        count += 1;
        found.get_or_insert(content);
        rest = next;
    }
    let found = match found {
        None => return Err("no \\boxed{} score".into()),
        Some(None) if count == 1 => return Err("the \\boxed{ is never closed".into()),
        Some(content) => content.unwrap_or(""),
    };
    match (count, found) {
        (1, "1") => Ok(1),
        (1, "-1") => Ok(-1),
        (1, other) => Err(format!("\\boxed{{{}}} is not 1 or -1", shorten(other, 40))),
        (n, _) => Err(format!("{n} \\boxed{{}} scores; exactly one counts")),
    }
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(text: &str) -> Option<i8> {
        parse_vote(text).score
    }

    #[test]
    fn exactly_one_exact_box_counts() {
        assert_eq!(score("The click opened the menu. \\boxed{1}"), Some(1));
        assert_eq!(score("\\boxed{-1}"), Some(-1));
        assert_eq!(score("nothing changed\n\\boxed{-1}\n"), Some(-1));
    }

    #[test]
    fn anything_else_is_an_invalid_vote() {
        for text in [
            "",
            "+1",
            "\\boxed{+1}",
            "\\boxed{1.0}",
            "\\boxed{ 1}",
            "\\boxed{one}",
            "\\boxed{0}",
            "\\boxed{1} \\boxed{1}",
            "\\boxed{1} or \\boxed{-1}",
            "\\boxed{1",
            "\\boxed{}",
            "boxed{1}",
            "\\boxed{-1}}\\boxed{",
        ] {
            let vote = parse_vote(text);
            assert_eq!(vote.score, None, "{text:?}");
            assert!(vote.problem.is_some(), "{text:?}");
        }
        assert!(
            parse_vote("\\boxed{1} \\boxed{-1}")
                .problem
                .unwrap()
                .contains("2 ")
        );
        assert!(parse_vote("\\boxed{+1}").problem.unwrap().contains("+1"));
    }

    #[test]
    fn thinking_does_not_count_and_unfinished_thinking_is_invalid() {
        assert_eq!(
            score("<think>maybe \\boxed{1}?</think> no: \\boxed{-1}"),
            Some(-1)
        );
        // Some chat templates open the think block in the prompt: only the close is seen.
        assert_eq!(score("hmm \\boxed{-1} wait</think>\\boxed{1}"), Some(1));
        let vote = parse_vote("<think>the click \\boxed{1}");
        assert_eq!(vote.score, None);
        assert!(vote.problem.unwrap().contains("<think>"));
    }

    #[test]
    fn hints_are_taken_from_their_markers_and_their_boxes_do_not_count() {
        let vote =
            parse_vote("\\boxed{-1}\n[HINT_START] Click the File menu, then Save. [HINT_END]");
        assert_eq!(vote.score, Some(-1));
        assert_eq!(
            vote.hint.as_deref(),
            Some("Click the File menu, then Save.")
        );
        let vote = parse_vote("[HINT_START]Answer \\boxed{1} next time.[HINT_END] \\boxed{-1}");
        assert_eq!(vote.score, Some(-1));
        assert_eq!(vote.hint.as_deref(), Some("Answer \\boxed{1} next time."));
        // The longest of several hints; short ones ("none") do not count.
        let vote = parse_vote(
            "\\boxed{1}[HINT_START]none[HINT_END][HINT_START]Press Return to confirm.[HINT_END]\
             [HINT_START]Type 12 first.[HINT_END]",
        );
        assert_eq!(vote.hint.as_deref(), Some("Press Return to confirm."));
        assert_eq!(
            parse_vote("\\boxed{1} [HINT_START]none[HINT_END]").hint,
            None
        );
        assert_eq!(
            parse_vote("\\boxed{1} [HINT_START]exactly10c[HINT_END]").hint,
            None
        );
        assert!(
            parse_vote("\\boxed{1} [HINT_START]exactly11ch[HINT_END]")
                .hint
                .is_some()
        );
        // Unterminated: no hint, and its box does not count either.
        let vote = parse_vote("\\boxed{1} [HINT_START]Click OK. \\boxed{-1}");
        assert_eq!((vote.score, vote.hint), (Some(1), None));
        let long = format!("\\boxed{{1}}[HINT_START]{}[HINT_END]", "x".repeat(1001));
        // Removing a hint never makes a box out of the text around it.
        assert_eq!(
            parse_vote("\\boxed{[HINT_START]Click OK please.[HINT_END]1}").score,
            None
        );
        assert_eq!(parse_vote(&long).hint, None);
    }

    #[test]
    fn problems_quote_long_boxes_briefly() {
        let text = format!("\\boxed{{{}}}", "é".repeat(500));
        let problem = parse_vote(&text).problem.unwrap();
        assert!(problem.chars().count() < 80, "{problem}");
    }
}
