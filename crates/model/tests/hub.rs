//! Resolving a hub repo id through the standard Hugging Face cache layout, and a clear error
//! when the model is neither cached nor downloadable. One test per process-wide environment.

use candle_core::Device;
use clawdesk_model::source::{LoadEvent, LoadedModel};
use clawdesk_model::{ModelError, tiny};

#[test]
fn repo_ids_resolve_through_the_hf_cache_and_missing_ones_are_named() {
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache.path().join("models--clawdesk--tiny-vl");
    let snapshot = repo.join("snapshots").join("0123456789abcdef");
    tiny::write_tiny_model(&snapshot, &tiny::default_config(), 4).expect("tiny");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").expect("ref");
    // SAFETY: this test binary holds this one test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("HF_HUB_CACHE", cache.path());
        // A closed local port: a download attempt fails at once instead of waiting on DNS.
        std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    }
    let mut events = Vec::new();
    let loaded = LoadedModel::load("clawdesk/tiny-vl", &Device::Cpu, None, &mut |e| {
        events.push(e)
    })
    .expect("load from cache");
    assert_eq!(loaded.dir, snapshot);
    assert!(matches!(events.last(), Some(LoadEvent::Loading { .. })));

    let err = LoadedModel::load("clawdesk/not-cached", &Device::Cpu, None, &mut |_| {})
        .err()
        .expect("not cached");
    assert!(matches!(err, ModelError::NotFound { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("clawdesk/not-cached") && text.contains(&cache.path().display().to_string()),
        "{text}"
    );

    let err = LoadedModel::load("/no/such/dir", &Device::Cpu, None, &mut |_| {})
        .err()
        .expect("no dir");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}
