//! A practice session end to end, without the window: the practice base acts in the real
//! practice window (`clawdesk-practice`) in a sandbox display, in the practice format, and the
//! window's own verifier — read through AT-SPI by the practice judge — scores its steps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawdesk_desk::session::{DeskEvent, LiveSession, Mode, SessionPlaces, StartRequest};
use clawdesk_desk::settings::{DeskSettings, JudgeKind};
use clawdesk_gym::{Cell, GymAction, TaskKind};
use clawdesk_runtime::practice_window::PracticeTask;
use clawdesk_store::{StepOutcome, Store};

/// `clawdesk-practice`, built beside this test's binary by the workspace build.
fn window_program() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("clawdesk-practice"))
        .expect("target folder");
    assert!(
        program.is_file(),
        "{} is built with the workspace (cargo build -p clawdesk-practice)",
        program.display()
    );
    program
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_practice_base_acts_in_the_window_and_the_window_judges_it() {
    let base = clawdesk_tests::practice_base();
    // SAFETY: set before any session starts; this test binary holds this one test.
    unsafe { std::env::set_var("CLAWDESK_PRACTICE", window_program()) };
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(data.path()).unwrap());
    let settings = DeskSettings {
        base_model: base.display().to_string(),
        judge: JudgeKind::Person,
        sandbox: true,
        max_steps: 4,
        batch: 2,
        ..DeskSettings::default()
    };
    let events: Arc<Mutex<Vec<DeskEvent>>> = Arc::default();
    let sink = {
        let events = events.clone();
        Arc::new(move |e: DeskEvent| {
            eprintln!("event: {}", serde_json::to_string(&e).unwrap_or_default());
            if let Ok(mut all) = events.lock() {
                all.push(e);
            }
        })
    };
    let practice = PracticeTask {
        kind: TaskKind::Click,
        seed: 11,
    };
    let session = LiveSession::start(
        store.clone(),
        SessionPlaces {
            data: data.path().to_path_buf(),
            gym_tasks: 0,
        },
        settings,
        StartRequest {
            instruction: String::new(),
            mode: Mode::Autonomous,
            episodes: 1,
            practice: Some(practice),
        },
        sink,
    )
    .expect("the session starts");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !session.is_finished() {
        assert!(Instant::now() < deadline, "the session did not end");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = events.lock().unwrap().clone();
    let ended = events
        .iter()
        .find_map(|e| match e {
            DeskEvent::Ended { report, error } => Some((report.clone(), error.clone())),
            _ => None,
        })
        .expect("an end");
    assert_eq!(ended.1, None, "the session ended without an error");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DeskEvent::State { message, .. }
            if message.contains(&practice.instruction()))),
        "the task's own instruction ran"
    );

    let episode = store.episodes(1).unwrap().remove(0);
    assert_eq!(episode.task, practice.instruction());
    let steps = store.steps(episode.id).unwrap();
    assert_eq!(steps.len(), 4, "{steps:?}");
    // The practice base writes the practice format: its actions ran in the window.
    let executed: Vec<_> = steps
        .iter()
        .filter(|s| s.outcome == StepOutcome::Executed)
        .collect();
    assert!(!executed.is_empty(), "no step ran: {steps:?}");
    // Each action was drawn on the live view before it ran.
    assert!(events.iter().any(|e| matches!(
        e,
        DeskEvent::Frame {
            action: Some(_),
            ..
        }
    )));
    // The window's verifier judged every executed step, through the practice judge, as the
    // gym would: +1 for a click on the named button, else −1 with the hint that names it.
    let task = practice.task();
    let Some(GymAction::Click { x, y }) = task.expert() else {
        panic!("a click task's right action is a click")
    };
    let right = Cell::at_grid(x, y);
    for step in &executed {
        let verdict = store
            .verdicts(step.id)
            .unwrap()
            .into_iter()
            .find(|v| v.judge.as_deref() == Some("rule practice"))
            .unwrap_or_else(|| panic!("step {:?} was not judged", step.id));
        let at = &step.action["at"];
        let cell = Cell::at_grid(
            (at["x"].as_f64().unwrap() * 1000.0) as u32,
            (at["y"].as_f64().unwrap() * 1000.0) as u32,
        );
        if cell == right {
            assert_eq!((verdict.score, verdict.hint), (1, None));
        } else {
            assert_eq!(verdict.score, -1, "{verdict:?}");
            assert_eq!(verdict.hint, task.hint(), "the hint names the right button");
        }
    }
}
