//! The judge loop over a real store and a loopback endpoint: restarts, duplicates, retries of
//! failed steps, and keeping the endpoint busy.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clawdesk_judge::stub::{Reply, StubEndpoint};
use clawdesk_judge::{JudgeEvent, JudgeLoop, LoopOptions};
use support::*;

const GOOD: &str = "\\boxed{1}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_batch_then_restarted_judges_every_step_exactly_once() {
    let stub = StubEndpoint::start(false, |_, _| {
        Reply::Answer(GOOD.into()).after(Duration::from_millis(150))
    })
    .await
    .unwrap();
    let judge = judge(config(&stub.base_url), 3).await;
    let (_dir, store, steps) = store_with_steps(12);

    let mut first = JudgeLoop::new(
        store.clone(),
        judge.clone(),
        LoopOptions {
            concurrency: 4,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let mut events = first.subscribe();
    let running = tokio::spawn(first.run(std::future::pending()));
    wait_for(&mut events, 5, |e| matches!(e, JudgeEvent::Judged { .. })).await;
    // Kill it while requests are out, so the batch in flight is abandoned mid-way.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stub.in_flight() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.abort();
    let _ = running.await;
    let judged_before: usize = steps.iter().map(|s| judge_verdicts(&store, *s).len()).sum();
    assert!(
        (5..12).contains(&judged_before),
        "{judged_before} judged before the kill"
    );

    let stats = run_until_idle(&store, judge, 4).await;
    // A verdict write already under way when the loop died may still land (a blocking write
    // cannot be cancelled): the restart then has that step less to do, never one more.
    assert!(
        (1..=12 - judged_before).contains(&(stats.judged as usize)),
        "{stats:?}"
    );
    for step in &steps {
        assert_eq!(judge_verdicts(&store, *step).len(), 1, "step {step:?}");
    }
    // Every step got its three votes; the abandoned ones were asked again, so usually more
    // than 12 × 3 requests were made. Not always: on a loaded machine the votes seen in
    // flight can all answer before the abort lands, and then nothing was abandoned.
    assert!(stub.requests() >= 36, "{} requests", stub.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loops_on_one_store_never_judge_a_step_twice() {
    let stub = StubEndpoint::start(false, |n, _| {
        Reply::Answer(GOOD.into()).after(Duration::from_millis(5 + (n % 7) as u64 * 10))
    })
    .await
    .unwrap();
    let judge = judge(config(&stub.base_url), 3).await;
    let (_dir, store, steps) = store_with_steps(10);
    let (a, b) = tokio::join!(
        run_until_idle(&store, judge.clone(), 3),
        run_until_idle(&store, judge.clone(), 3)
    );
    assert_eq!(a.judged + b.judged, 10);
    for step in &steps {
        assert_eq!(judge_verdicts(&store, *step).len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_retried_later_and_never_dropped() {
    // The endpoint is down for the first 9 requests (3 votes × 3 tries), then recovers.
    let down = Arc::new(AtomicUsize::new(9));
    let stub = StubEndpoint::start(false, {
        let down = down.clone();
        move |_, _| {
            if down.load(Ordering::SeqCst) > 0 {
                down.fetch_sub(1, Ordering::SeqCst);
                Reply::Http {
                    status: 502,
                    content_type: "text/html",
                    body: b"<html>bad gateway</html>".to_vec(),
                    retry_after: None,
                }
            } else {
                Reply::Answer(GOOD.into())
            }
        }
    })
    .await
    .unwrap();
    let judge = judge(config(&stub.base_url), 3).await;
    let name = clawdesk_judge::Judge::name(judge.as_ref()).to_owned();
    let (_dir, store, steps) = store_with_steps(1);
    let mut judge_loop = JudgeLoop::new(
        store.clone(),
        judge,
        LoopOptions {
            concurrency: 1,
            poll: Duration::from_millis(20),
            failure_backoff: Duration::from_millis(100),
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let mut events = judge_loop.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(judge_loop.run(async {
        let _ = stopped.await;
    }));
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        let done = matches!(event, JudgeEvent::Judged { .. });
        seen.push(event);
        if done {
            break;
        }
    }
    let _ = stop.send(());
    let stats = running.await.unwrap().unwrap();
    assert!(
        matches!(
            &seen[0],
            JudgeEvent::Failed { attempts: 1, error, .. } if error.contains("HTTP 502")
        ),
        "{seen:?}"
    );
    assert_eq!((stats.judged, stats.failures), (1, 1));
    assert_eq!(judge_verdicts(&store, steps[0]).len(), 1);
    // The failure mark went with the verdict.
    assert!(store.judge_failures(&name).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_keeps_that_many_steps_at_the_endpoint() {
    let stub = StubEndpoint::start(false, |_, _| {
        Reply::Answer(GOOD.into()).after(Duration::from_millis(100))
    })
    .await
    .unwrap();
    let judge = judge(config(&stub.base_url), 3).await;
    let (_dir, store, steps) = store_with_steps(12);
    run_until_idle(&store, judge, 4).await;
    // 4 steps × 3 parallel votes.
    assert_eq!(stub.max_in_flight(), 12);
    let judged: HashSet<_> = steps
        .iter()
        .filter(|s| judge_verdicts(&store, **s).len() == 1)
        .collect();
    assert_eq!(judged.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_step_wakes_the_loop() {
    let stub = StubEndpoint::start(false, |_, _| Reply::Answer(GOOD.into()))
        .await
        .unwrap();
    let judge = judge(config(&stub.base_url), 1).await;
    let (_dir, store, _) = store_with_steps(0);
    let mut judge_loop = JudgeLoop::new(
        store.clone(),
        judge,
        LoopOptions {
            poll: Duration::from_secs(3600),
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let mut events = judge_loop.subscribe();
    let wake = judge_loop.waker();
    let running = tokio::spawn(judge_loop.run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Record a step, as the agent would, and ring.
    let episode = store
        .begin_episode(&clawdesk_store::NewEpisode {
            task: "t".into(),
            app: None,
        })
        .unwrap();
    let png = store
        .put_blob(&png(8, 8, 1), clawdesk_store::BlobKind::Png)
        .unwrap();
    let step = store
        .insert_step(&clawdesk_store::NewStep {
            episode,
            index: 0,
            before_image: png.clone(),
            after_image: Some(png),
            before_tree: None,
            after_tree: None,
            surface: serde_json::json!({}),
            action: serde_json::json!({"kind": "wait", "ms": 10}),
            response: None,
            policy_version: None,
            outcome: clawdesk_store::StepOutcome::Executed,
            error: None,
            started_at_ms: 0,
            ended_at_ms: 0,
        })
        .unwrap();
    wake.notify_one();
    wait_for(
        &mut events,
        1,
        |e| matches!(e, JudgeEvent::Judged { step: s, .. } if *s == step),
    )
    .await;
    running.abort();
}

/// Issue 26: a step that can never be judged (its screenshot is damaged) is given up on at
/// once instead of being retried for ever; the other steps are judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_with_a_damaged_screenshot_is_given_up_on() {
    let stub = StubEndpoint::start(false, |_, _| Reply::Answer(GOOD.into()))
        .await
        .unwrap();
    let judge = judge(config(&stub.base_url), 1).await;
    let (_dir, store, steps) = store_with_steps(3);
    // The first step's before-screen is its own (each after-screen is the next step's before).
    let damaged = store
        .step(steps[0])
        .unwrap()
        .before_image
        .expect("a screen");
    std::fs::write(store.blob_path(&damaged), b"not the screenshot").unwrap();
    let mut judge_loop = JudgeLoop::new(
        store.clone(),
        judge,
        LoopOptions {
            concurrency: 1,
            until_idle: true,
            ..LoopOptions::default()
        },
    )
    .unwrap();
    let mut events = judge_loop.subscribe();
    let stats = tokio::time::timeout(
        Duration::from_secs(30),
        judge_loop.run(std::future::pending()),
    )
    .await
    .expect("the loop goes idle")
    .unwrap();
    assert_eq!(stats.judged, 2, "{stats:?}");
    let mut gave_up = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let JudgeEvent::GaveUp { step, error, .. } = event {
            assert!(error.contains("damaged"), "{error}");
            gave_up.push(step);
        }
    }
    assert_eq!(gave_up, [steps[0]]);
    assert!(store.unjudgeable(steps[0]).unwrap().is_some());
    assert!(store.unjudgeable(steps[1]).unwrap().is_none());
}
