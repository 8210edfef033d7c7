//! The endpoint judge against a real HTTP server on loopback playing an OpenAI-compatible
//! endpoint, for every fault the issue names: never a crash, never a lost step, never a
//! guessed score.

mod support;

use std::time::Duration;

use clawdesk_judge::stub::{Reply, StubEndpoint};
use clawdesk_judge::{ApiKey, Vote};
use serde_json::json;
use support::*;

const GOOD: &str = "The 7 appeared in the display. \\boxed{1}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_hint_and_request_shape() {
    let stub = StubEndpoint::start(true, |n, _| {
        Reply::Answer(match n % 3 {
            0 => "\\boxed{1}\n[HINT_START]Press + before typing the 7.[HINT_END]".into(),
            1 => "\\boxed{1}".into(),
            _ => "Nothing changed. \\boxed{-1}".into(),
        })
    })
    .await
    .unwrap();
    let var = "CLAWDESK_TEST_ENDPOINT_KEY";
    // SAFETY: only this test reads or writes this variable.
    unsafe { std::env::set_var(var, "sk-stub-secret") };
    let mut config = config(&stub.base_url);
    config.api_key = ApiKey::Env { var: var.into() };
    let judge = judge(config, 3).await;
    let (_dir, store, steps) = store_with_steps(1);
    let stats = run_until_idle(&store, judge, 2).await;
    assert_eq!(stats.judged, 1);

    let verdicts = judge_verdicts(&store, steps[0]);
    assert_eq!(verdicts.len(), 1);
    let v = &verdicts[0];
    assert_eq!(v.score, 1);
    assert!((v.mean.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(v.hint.as_deref(), Some("Press + before typing the 7."));
    let votes: Vec<Vote> = serde_json::from_value(v.votes.clone().unwrap()).unwrap();
    assert_eq!(votes.len(), 3);
    assert!(votes.iter().any(|v| v.raw.contains("Nothing changed")));
    // The stored judge name says which model and endpoint, and never carries the key.
    let name = v.judge.clone().unwrap();
    assert!(
        name.starts_with("judge-model @ http://127.0.0.1:"),
        "{name}"
    );
    let row = serde_json::to_string(&v).unwrap();
    assert!(!row.contains("sk-stub-secret"));

    let received = stub.received();
    assert_eq!(received.len(), 3);
    for (auth, body) in &received {
        assert_eq!(auth.as_deref(), Some("Bearer sk-stub-secret"));
        assert_eq!(body["model"], "judge-model");
        assert_eq!(body["temperature"], 0.6);
        let content = body["messages"][0]["content"].as_array().unwrap();
        let images: Vec<&str> = content
            .iter()
            .filter_map(|p| p["image_url"]["url"].as_str())
            .collect();
        assert_eq!(images.len(), 2);
        assert!(
            images
                .iter()
                .all(|u| u.starts_with("data:image/png;base64,"))
        );
        let text: String = content.iter().filter_map(|p| p["text"].as_str()).collect();
        assert!(text.contains("compute 12+7"));
        assert!(text.contains("Action: press 7 (step 0)"));
        assert!(text.contains("[HINT_START]"));
    }
}

/// What a fault must leave behind.
enum Expect {
    /// A verdict with this score and this many valid votes.
    Verdict { score: i8, valid: usize },
    /// No verdict; the step is marked failed with an error containing this, and stays owed.
    Failed(&'static str),
}

async fn check(
    name: &str,
    script: impl Fn(usize) -> Reply + Send + Sync + 'static,
    expect: Expect,
) {
    let stub = StubEndpoint::start(false, move |n, _| script(n))
        .await
        .unwrap();
    check_at(name, &stub.base_url, expect).await;
}

async fn check_at(name: &str, base_url: &str, expect: Expect) {
    let judge = judge(config(base_url), 3).await;
    let judge_name = clawdesk_judge::Judge::name(judge.as_ref()).to_owned();
    let (_dir, store, steps) = store_with_steps(1);
    run_until_idle(&store, judge, 1).await;
    let verdicts = judge_verdicts(&store, steps[0]);
    match expect {
        Expect::Verdict { score, valid } => {
            assert_eq!(verdicts.len(), 1, "{name}: one verdict");
            assert_eq!(verdicts[0].score, score, "{name}: score");
            let votes: Vec<Vote> =
                serde_json::from_value(verdicts[0].votes.clone().unwrap()).unwrap();
            assert_eq!(votes.len(), 3, "{name}: every vote stored");
            assert_eq!(
                votes.iter().filter(|v| v.score.is_some()).count(),
                valid,
                "{name}: valid votes"
            );
            if valid == 0 {
                assert_eq!(
                    verdicts[0].mean, None,
                    "{name}: no mean without a valid vote"
                );
                assert!(
                    votes.iter().all(|v| v.problem.is_some()),
                    "{name}: problems named"
                );
            }
        }
        Expect::Failed(says) => {
            assert!(verdicts.is_empty(), "{name}: no verdict, got {verdicts:?}");
            let failures = store.judge_failures(&judge_name).unwrap();
            assert_eq!(failures.len(), 1, "{name}: marked");
            assert!(
                failures[0].last_error.contains(says),
                "{name}: {:?} lacks {says:?}",
                failures[0].last_error
            );
            assert_eq!(
                store
                    .owed_count(&judge_name, clawdesk_store::VerdictSource::Judge)
                    .unwrap(),
                1,
                "{name}: still owed"
            );
        }
    }
}

fn http(status: u16, content_type: &'static str, body: &[u8]) -> Reply {
    Reply::Http {
        status,
        content_type,
        body: body.to_vec(),
        retry_after: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    check_at(
        "down",
        &format!("http://127.0.0.1:{port}/v1"),
        Expect::Failed("cannot reach"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_too_slow() {
    check(
        "slow",
        |_| Reply::Answer(GOOD.into()).after(Duration::from_secs(3)),
        Expect::Failed("did not answer within"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_within_the_timeout_counts() {
    check(
        "slowish",
        |_| Reply::Answer(GOOD.into()).after(Duration::from_millis(200)),
        Expect::Verdict { score: 1, valid: 3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_then_served() {
    // Every vote's first try is refused with 429 and Retry-After: 0; the retry succeeds.
    check(
        "429 then ok",
        |n| {
            if n < 3 {
                Reply::Http {
                    status: 429,
                    content_type: "application/json",
                    body: br#"{"error":{"message":"slow down"}}"#.to_vec(),
                    retry_after: Some(0),
                }
            } else {
                Reply::Answer(GOOD.into())
            }
        },
        Expect::Verdict { score: 1, valid: 3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_throughout() {
    check(
        "429",
        |_| http(429, "application/json", br#"{"error":{"message":"quota"}}"#),
        Expect::Failed("HTTP 429"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors() {
    check(
        "503",
        |_| http(503, "text/plain", b"overloaded"),
        Expect::Failed("HTTP 503"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_not_retried() {
    let stub = StubEndpoint::start(false, |_, _| {
        http(
            401,
            "application/json",
            br#"{"error":{"message":"bad key"}}"#,
        )
    })
    .await
    .unwrap();
    check_at("401", &stub.base_url, Expect::Failed("HTTP 401")).await;
    // At most one try per vote (the first refusal may cancel the votes not yet sent); with
    // retries there would be up to 3 per vote.
    assert!(
        (1..=3).contains(&stub.requests()),
        "{} requests",
        stub.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_instead_of_json() {
    check(
        "html",
        |_| {
            http(
                200,
                "text/html",
                b"<html><body>502 Bad Gateway</body></html>",
            )
        },
        Expect::Failed("not JSON"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_choices() {
    check(
        "empty choices",
        |_| Reply::json(200, json!({"object": "chat.completion", "choices": []})),
        Expect::Failed("no choices"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json() {
    check(
        "invalid json",
        |_| {
            http(
                200,
                "application/json",
                br#"{"choices": [{"message": {"content": "\boxed{1}"#,
            )
        },
        Expect::Failed("not JSON"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_body() {
    check(
        "non-utf8",
        |_| {
            http(
                200,
                "application/json",
                b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\\boxed{1}\"}}]}",
            )
        },
        Expect::Failed("not JSON"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_answer_then_served() {
    check(
        "reset then ok",
        |n| {
            if n % 2 == 0 {
                Reply::Reset
            } else {
                Reply::Answer(GOOD.into())
            }
        },
        Expect::Verdict { score: 1, valid: 3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_of_text_is_an_invalid_vote() {
    check(
        "10 MB",
        |_| Reply::Answer("judging... ".repeat(1 << 20)),
        Expect::Verdict { score: 0, valid: 0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_boxes_are_invalid_votes() {
    for (name, answer) in [
        ("+1", "\\boxed{+1}"),
        ("1.0", "\\boxed{1.0}"),
        ("two boxes", "\\boxed{1} no wait \\boxed{-1}"),
        ("no box", "It worked."),
        ("empty", ""),
    ] {
        check(
            name,
            move |_| Reply::Answer(answer.into()),
            Expect::Verdict { score: 0, valid: 0 },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_vote_among_good_ones_is_left_out() {
    check(
        "mixed",
        |n| {
            Reply::Answer(
                if n == 0 {
                    "\\boxed{1.0}"
                } else {
                    "\\boxed{-1}"
                }
                .into(),
            )
        },
        Expect::Verdict {
            score: -1,
            valid: 2,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tie_scores_zero_but_keeps_the_mean() {
    let stub = StubEndpoint::start(false, |n, _| {
        Reply::Answer(
            if n % 2 == 0 {
                "\\boxed{1}"
            } else {
                "\\boxed{-1}"
            }
            .into(),
        )
    })
    .await
    .unwrap();
    let judge = judge(config(&stub.base_url), 2).await;
    let (_dir, store, steps) = store_with_steps(1);
    run_until_idle(&store, judge, 1).await;
    let v = &judge_verdicts(&store, steps[0])[0];
    assert_eq!((v.score, v.mean), (0, Some(0.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_cannot_work_are_refused_up_front() {
    let settings = clawdesk_judge::VoteSettings {
        votes: 0,
        ..Default::default()
    };
    let prompts = clawdesk_judge::JudgePrompts::builtin().unwrap();
    let err = clawdesk_judge::EndpointJudge::new(config("http://x/v1"), settings, prompts.clone())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("votes"), "{err}");
    let err = clawdesk_judge::EndpointJudge::new(config("not a url"), Default::default(), prompts)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not a URL"), "{err}");
}
