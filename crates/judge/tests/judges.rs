//! The other judges behind the same trait: a task's rule, a person, and the local model.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clawdesk_judge::{
    Judge, JudgeLoop, JudgePrompts, LocalJudge, LoopOptions, PersonAnswer, PersonJudge, RuleJudge,
    RuleVerdict, StepCase, VoteSettings, person_verdict,
};
use clawdesk_store::VerdictSource;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_judges_from_the_recorded_action() {
    let (_dir, store, steps) = store_with_steps(2);
    let rule = |case: &StepCase| {
        if case.step_number == 1 {
            RuleVerdict {
                score: 1,
                hint: None,
                reason: "pressed the right key".into(),
            }
        } else {
            RuleVerdict {
                score: -1,
                hint: Some("Press + next.".into()),
                reason: format!("{} repeats the last key", case.action["combo"]),
            }
        }
    };
    let judge = Arc::new(RuleJudge::new("calc-v1", rule));
    run_until_idle(&store, judge, 2).await;
    let first = &judge_verdicts(&store, steps[0])[0];
    assert_eq!(
        (first.score, first.judge.as_deref()),
        (1, Some("rule calc-v1"))
    );
    let second = &judge_verdicts(&store, steps[1])[0];
    assert_eq!(second.score, -1);
    // A rule's hint counts even when short: it is exact.
    assert_eq!(second.hint.as_deref(), Some("Press + next."));
    assert!(
        second.votes.as_ref().unwrap()[0]["raw"]
            .as_str()
            .unwrap()
            .contains("repeats")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_answers_questions_and_wins_over_the_judge() {
    let (_dir, store, steps) = store_with_steps(3);
    // A model judge (a rule here) has already said +1 everywhere.
    let approve_all = |_: &StepCase| RuleVerdict {
        score: 1,
        hint: None,
        reason: "ok".into(),
    };
    run_until_idle(&store, Arc::new(RuleJudge::new("all", approve_all)), 3).await;

    let (person, mut questions) = PersonJudge::new(4);
    let mut judge_loop = JudgeLoop::new(
        store.clone(),
        Arc::new(person),
        LoopOptions {
            concurrency: 2,
            poll: Duration::from_millis(20),
            failure_backoff: Duration::from_secs(3600),
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let mut events = judge_loop.subscribe();
    let running = tokio::spawn(judge_loop.run(std::future::pending()));
    let mut asked = Vec::new();
    for _ in 0..3 {
        let question = tokio::time::timeout(Duration::from_secs(10), questions.recv())
            .await
            .unwrap()
            .unwrap();
        asked.push(question.case.step);
        match question.case.step_number {
            1 => question.answer(PersonAnswer {
                approve: true,
                correction: None,
                hint: None,
            }),
            2 => question.answer(PersonAnswer {
                approve: false,
                correction: Some(serde_json::json!({"kind": "key", "combo": "plus"})),
                hint: Some("  Press + before the 7.  ".into()),
            }),
            // Walked away: the step stays owed.
            _ => drop(question),
        }
    }
    wait_for(&mut events, 3, |_| true).await;
    running.abort();
    assert_eq!(asked.len(), 3);

    let v = store.effective_verdict(steps[0]).unwrap().unwrap();
    assert_eq!((v.source, v.score), (VerdictSource::Person, 1));
    let v = store.effective_verdict(steps[1]).unwrap().unwrap();
    assert_eq!((v.source, v.score), (VerdictSource::Person, -1));
    assert_eq!(v.hint.as_deref(), Some("Press + before the 7."));
    assert_eq!(v.correction.unwrap()["combo"], "plus");
    // The judge's verdict is kept beside the person's.
    assert_eq!(judge_verdicts(&store, steps[1]).len(), 1);
    let v = store.effective_verdict(steps[2]).unwrap().unwrap();
    assert_eq!(v.source, VerdictSource::Judge);
    assert_eq!(
        store.owed_count("person", VerdictSource::Person).unwrap(),
        1
    );
    assert!(
        store.judge_failures("person").unwrap()[0]
            .last_error
            .contains("dismissed")
    );

    // The timeline's click, without the loop; and agreement: 1 of 2 compared.
    store
        .add_verdict(&person_verdict(
            steps[2],
            &PersonAnswer {
                approve: true,
                correction: None,
                hint: None,
            },
        ))
        .unwrap();
    assert_eq!(
        store.owed_count("person", VerdictSource::Person).unwrap(),
        0
    );
    let agreement = store.agreement().unwrap();
    assert_eq!(agreement.len(), 1);
    assert_eq!((agreement[0].compared, agreement[0].agreed), (3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_votes_with_the_same_prompts() {
    let model_dir = tempfile::tempdir().unwrap();
    clawdesk_model::tiny::write_tiny_model(
        model_dir.path(),
        &clawdesk_model::tiny::default_config(),
        11,
    )
    .unwrap();
    let loaded = clawdesk_model::source::LoadedModel::load(
        model_dir.path().to_str().unwrap(),
        &candle_core::Device::Cpu,
        None,
        &mut |_| {},
    )
    .unwrap();
    let settings = VoteSettings {
        votes: 2,
        max_tokens: 12,
        pixel_budget: 64 * 64,
        ..VoteSettings::default()
    };
    let judge = Arc::new(
        LocalJudge::new(
            Arc::new(loaded),
            JudgePrompts::builtin().unwrap(),
            settings,
            "tiny",
        )
        .unwrap()
        .with_seed(5),
    );
    let (_dir, store, steps) = store_with_steps(1);
    let case = StepCase::load(&store, steps[0]).unwrap();
    let again = judge.judge(&case).await.unwrap();
    let stats = run_until_idle(&store, judge.clone(), 1).await;
    assert_eq!(stats.judged, 1);
    let v = &judge_verdicts(&store, steps[0])[0];
    assert_eq!(v.judge.as_deref(), Some("local tiny"));
    let votes: Vec<clawdesk_judge::Vote> =
        serde_json::from_value(v.votes.clone().unwrap()).unwrap();
    assert_eq!(votes.len(), 2);
    // A random tiny model writes no valid box: invalid votes, score 0, raw text kept.
    assert_eq!(v.score, 0);
    assert!(
        votes
            .iter()
            .all(|v| !v.raw.is_empty() && v.problem.is_some())
    );
    // Seeded: the same step gets the same answers.
    assert_eq!(again.votes, votes);
}
