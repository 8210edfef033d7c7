//! Fuzzing the parsers a judge's answer goes through: over a million generated inputs, no
//! panic, and every accepted score or hint is one the text really holds.
//!
//! `CLAWDESK_FUZZ_CASES` scales the run (default: 1,050,000 inputs over the three properties).

use clawdesk_judge::{
    MAX_HINT_CHARS, MAX_RAW_CHARS, MIN_HINT_CHARS, Vote, completion_text, parse_vote, tally,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn cases(share: u32) -> u32 {
    let total: u32 = std::env::var("CLAWDESK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_050_000);
    total / 21 * share
}

fn config(share: u32) -> Config {
    Config {
        cases: cases(share),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Pieces that the parser treats specially, and some that it must not.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\\boxed{".to_owned()),
        Just("}".to_owned()),
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("+1".to_owned()),
        Just("1.0".to_owned()),
        Just("\\boxed{1}".to_owned()),
        Just("\\boxed{-1}".to_owned()),
        Just("[HINT_START]".to_owned()),
        Just("[HINT_END]".to_owned()),
        Just("[HINT_".to_owned()),
        Just("<think>".to_owned()),
        Just("</think>".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("é🦀\u{0}".to_owned()),
        Just("Click the OK button.".to_owned()),
        "\\PC{0,12}",
    ]
}

/// What must hold for any answer.
fn check(text: &str) {
    let parsed = parse_vote(text);
    match parsed.score {
        Some(1) => assert!(text.contains("\\boxed{1}")),
        Some(-1) => assert!(text.contains("\\boxed{-1}")),
        Some(other) => panic!("score {other}"),
        None => assert!(parsed.problem.is_some()),
    }
    if let Some(hint) = &parsed.hint {
        let chars = hint.chars().count();
        assert!(chars > MIN_HINT_CHARS && chars <= MAX_HINT_CHARS);
        assert!(text.contains(hint.as_str()));
        assert_eq!(hint.trim(), hint);
    }
    let vote = Vote::from_answer(text);
    assert!(vote.raw.chars().count() <= MAX_RAW_CHARS + 1);
    let t = tally(std::slice::from_ref(&vote));
    assert_eq!(t.score, vote.score.unwrap_or(0));
}

proptest! {
    #![proptest_config(config(8))]
    #[test]
    fn any_text(text in "\\PC{0,200}") {
        check(&text);
    }
}

proptest! {
    #![proptest_config(config(8))]
    #[test]
    fn text_built_from_the_parser_s_own_tokens(parts in vec(fragment(), 0..24)) {
        check(&parts.concat());
    }
}

proptest! {
    #![proptest_config(config(5))]
    #[test]
    fn any_bytes_as_a_completion_body(body in vec(any::<u8>(), 0..200)) {
        if let Ok(text) = completion_text(&body) {
            check(&text);
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 2_000, failure_persistence: None, ..Config::default() })]
    #[test]
    fn completion_bodies_around_real_answers(content in vec(fragment(), 0..12), cut in 0usize..400) {
        let body = serde_json::json!({"choices": [{"message": {"content": content.concat()}}]})
            .to_string();
        let text = completion_text(body.as_bytes()).expect("a well-formed body");
        check(&text);
        // Truncated anywhere: an error, never a panic.
        let cut = cut.min(body.len());
        let _ = completion_text(&body.as_bytes()[..cut]);
    }
}
