//! Issue 26: kill -9 in the middle of publishing adapters and saving checkpoints, then start
//! again: every adapter folder a row names holds the weights it was published with, the
//! newest checkpoint loads, the database is whole, and publishing goes on with new versions.
//!
//! The worker is this test binary run again (`crash_worker`, ignored in normal runs), so the
//! kill lands in real file-system work, not in a simulation of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{Device, Var};
use clawdesk_runtime::RuntimeError;
use clawdesk_runtime::live::publish_new_version;
use clawdesk_store::Store;
use clawdesk_trainer::checkpoint::{load_latest, save};
use clawdesk_trainer::optim::{AdamW, AdamWConfig};

const DIR_VAR: &str = "CLAWDESK_CRASH_DIR";
const FILE_BYTES: usize = 512 << 10;

/// The bytes adapter number `i` is published with: every file differs from every other.
fn weights(i: u64) -> Vec<u8> {
    clawdesk_tests::noise(i, FILE_BYTES)
}

/// Publishes adapters and saves checkpoints until killed.
#[test]
#[ignore = "run by a_kill_during_publishing_loses_nothing_published"]
fn crash_worker() {
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let store = Store::open(dir.join("data")).expect("store");
    let adapters = dir.join("adapters");
    let params = vec![(
        "layers.0.q_proj.lora_A".to_owned(),
        Var::from_slice(&vec![0.5f32; 65_536], (256, 256), &Device::Cpu).expect("a parameter"),
    )];
    let optimizer =
        AdamW::new(vec![params[0].1.clone()], AdamWConfig::default()).expect("optimiser");
    let mut i = store.next_adapter_version().expect("versions") as u64 * 1000;
    loop {
        i += 1;
        publish_new_version(
            &store,
            &adapters,
            "base",
            0,
            Some(serde_json::json!({ "i": i })),
            |dir| {
                std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Io(e.to_string()))?;
                std::fs::write(dir.join("adapter_model.safetensors"), weights(i))
                    .map_err(|e| RuntimeError::Io(e.to_string()))
            },
        )
        .expect("published");
        save(
            &dir.join("checkpoints"),
            &params,
            &optimizer,
            i as i64,
            "base",
            1,
            2,
        )
        .expect("checkpoint");
    }
}

fn start_worker(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "crash_worker",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(DIR_VAR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// Every published row's folder holds exactly what it was published with.
fn check(dir: &Path) -> usize {
    let store = Store::open(dir.join("data")).expect("the store opens after the kill");
    store.integrity_check().expect("the database is whole");
    let rows = store.adapters().expect("adapters");
    for row in &rows {
        let i = row
            .metrics
            .as_ref()
            .and_then(|m| m["i"].as_u64())
            .expect("its number");
        let bytes = std::fs::read(Path::new(&row.path).join("adapter_model.safetensors"))
            .unwrap_or_else(|e| panic!("v{} names {}: {e}", row.version, row.path));
        assert!(bytes == weights(i), "v{}'s weights changed", row.version);
    }
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let mut sorted = versions.clone();
    sorted.dedup();
    assert_eq!(versions, sorted, "no version twice");
    if let Some(ckpt) = load_latest(&dir.join("checkpoints"), "base", 1, &Device::Cpu)
        .expect("the newest whole checkpoint loads")
    {
        assert!(ckpt.meta.cursor > 0);
    }
    rows.len()
}

#[test]
fn a_kill_during_publishing_loses_nothing_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut published = 0;
    for round in 0..4u64 {
        let mut worker = start_worker(dir.path());
        // Let it publish a few, then kill it at a moment that varies from round to round.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The worker may be creating or writing the database: busy is "not yet".
            let seen = Store::open(dir.path().join("data"))
                .and_then(|store| store.adapters())
                .map_or(0, |rows| rows.len());
            if seen >= published + 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the worker published nothing");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(3 + 7 * round));
        worker.kill().expect("SIGKILL");
        worker.wait().expect("reaped");
        let now = check(dir.path());
        assert!(
            now >= published + 2,
            "round {round}: {now} after {published}"
        );
        published = now;
    }
}
