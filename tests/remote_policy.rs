//! ClawDesk's own OpenAI-compatible server as the GUI agent's remote policy: the agent acts on
//! a real app through it, every step keeps the served token ids and log-probabilities (so a
//! remote policy's steps train here), and an adapter pushed with dynamic LoRA loading is
//! served, and recorded, from the next step on.

use std::net::SocketAddr;

use clawdesk_agent::turn::PolicyTurn;
use clawdesk_agent::{AgentPrompts, Policy, RemoteConfig};
use clawdesk_desktop::GuardConfig;
use clawdesk_model::{LoraConfig, tiny};
use clawdesk_runtime::episode::{AgentSettings, StopOnLoop, run_agent};
use clawdesk_server::{Api, ServerConfig};
use clawdesk_store::{EpisodeId, Store};
use clawdesk_tests::{load_model, start_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_as_the_remote_policy_drives_the_agent() {
    let t = start_app(
        &["zenity", "--entry", "--text=Remote agent here"],
        "zenity",
        GuardConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let model_dir = dir.path().join("tiny");
    tiny::write_tiny_model(&model_dir, &tiny::default_config(), 3).expect("tiny model");
    std::fs::create_dir_all(dir.path().join("adapters")).expect("adapters folder");
    let served = load_model(&model_dir);
    let tokenizer = served.processor.tokenizer().clone();
    let api = Api::new(
        Policy::spawn(served),
        tokenizer.clone(),
        None,
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            // The server loads adapters only from the folder it is given (issue 26).
            adapters_dir: Some(dir.path().join("adapters")),
            ..ServerConfig::default()
        },
    )
    .expect("api");
    let listener = api.bind().await.expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api.serve(listener, async {
        let _ = stopped.await;
    }));

    let policy = Policy::remote(RemoteConfig::new(base.clone(), "clawdesk")).expect("remote");
    let store = Store::open(dir.path().join("data")).expect("store");
    let prompts = AgentPrompts::built_in().expect("prompts");
    let mut settings = AgentSettings::new("Type hello into the entry.");
    settings.app = Some("zenity".into());
    settings.max_steps = 3;
    settings.sampling.temperature = 1.0;
    settings.sampling.max_tokens = 24;
    settings.sampling.seed = 9;
    settings.loop_repeats = 10;
    let first = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |_| {},
    )
    .await
    .expect("an episode through the remote policy");
    assert_eq!(first.steps, 3, "{first:?}");
    assert_eq!(first.versions, vec![None, None, None]);

    // An adapter pushed to the server (vLLM's /v1/load_lora_adapter) is asked for by name.
    let adapter = dir.path().join("adapters").join("adapter");
    let mut other = load_model(&model_dir);
    clawdesk_model::peft::write_random_adapter(
        &mut other.model,
        LoraConfig::new(4, 8.0),
        11,
        &adapter,
        "tiny",
    )
    .expect("adapter");
    policy.activate(7, adapter).await.expect("pushed");
    settings.max_steps = 2;
    let second = run_agent(
        &t.desktop,
        &store,
        &policy,
        &prompts,
        &settings,
        &StopOnLoop,
        |_| {},
    )
    .await
    .expect("an episode with the adapter");
    assert_eq!(second.versions, vec![Some(7), Some(7)]);
    let refused = policy.activate(8, dir.path().join("no-such-adapter")).await;
    assert!(
        refused.is_err(),
        "a folder the server cannot load is refused"
    );

    for summary in [&first, &second] {
        for step in store.steps(EpisodeId(summary.episode)).expect("steps") {
            assert!(step.before_image.is_some() && step.after_image.is_some());
            let turn = PolicyTurn::of_step(step.response.as_ref())
                .expect("well formed")
                .expect("the served turn, with token ids, is stored");
            assert_eq!(turn.tokens.len(), turn.logprobs.len());
            assert!(turn.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
            let decoded = tokenizer.decode(&turn.tokens, true).expect("decodes");
            assert_eq!(decoded, turn.text, "the ids are the reply's own tokens");
            assert_eq!(turn.images.last(), step.before_image.as_ref());
        }
    }
    let _ = stop.send(());
    server.await.expect("joined").expect("served");
}
