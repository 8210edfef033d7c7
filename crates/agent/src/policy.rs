//! The policy: the one model in memory, on its own thread, serving generations in order. A
//! new adapter version is a job in the same queue, so it takes effect between two generations
//! and never in the middle of one; every generation says which version produced it, which the
//! step records so the trainer's ratio uses the right log-probabilities.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clawdesk_model::generate::{Finish, generate_until};
use clawdesk_model::peft::import_adapter;
use clawdesk_model::preprocess;
use clawdesk_model::source::LoadedModel;
use tokio::sync::{mpsc, oneshot};

use crate::error::AgentError;
use crate::generation::{Generated, PolicyRequest};

enum Job {
    Generate(
        Box<PolicyRequest>,
        oneshot::Sender<Result<Generated, AgentError>>,
    ),
    Activate {
        adapter: Option<(i64, PathBuf)>,
        done: oneshot::Sender<Result<(), AgentError>>,
    },
}

/// A handle to the policy: the local model's thread, or a remote endpoint. Clones share it.
#[derive(Debug, Clone)]
pub struct Policy {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(mpsc::Sender<Job>),
    Remote(Arc<crate::remote::RemotePolicy>),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Generate(..) => f.write_str("Generate"),
            Job::Activate { adapter, .. } => write!(f, "Activate({adapter:?})"),
        }
    }
}

/// Requests that may wait for the policy before a caller is made to wait to send more.
const QUEUE: usize = 64;

impl Policy {
    /// Starts the policy thread with `loaded` (the base model, no adapter active).
    pub fn spawn(loaded: LoadedModel) -> Policy {
        Self::spawn_with_threads(loaded, None)
    }

    /// As [`Self::spawn`], with the model's CPU work on its own pool of `threads` threads
    /// (so that a trainer on the same machine cannot take its cores); `None` shares the
    /// global pool.
    pub fn spawn_with_threads(loaded: LoadedModel, threads: Option<usize>) -> Policy {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("clawdesk-policy".into())
            .spawn(move || {
                in_pool(threads, "policy", move || {
                    let mut loaded = loaded;
                    let mut version: Option<i64> = None;
                    while let Some(job) = queue.blocking_recv() {
                        match job {
                            Job::Generate(request, reply) => {
                                let result = serve(&loaded, &request, version);
                                // The asker may have gone (a stopped episode); nothing to do then.
                                let _ = reply.send(result);
                            }
                            Job::Activate { adapter, done } => {
                                let result = match &adapter {
                                    Some((v, dir)) => import_adapter(&mut loaded.model, dir)
                                        .map(|()| version = Some(*v))
                                        .map_err(AgentError::from),
                                    None => {
                                        version = None;
                                        Ok(())
                                    }
                                };
                                match &result {
                                    Ok(()) => tracing::info!(?version, "policy adapter active"),
                                    Err(e) => tracing::warn!(error = %e, "adapter not activated"),
                                }
                                let _ = done.send(result);
                            }
                        }
                    }
                    tracing::debug!("policy thread ends: every handle was dropped");
                })
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "the policy thread did not start"));
        Policy {
            backend: Backend::Local(jobs),
        }
    }

    /// A policy served by an OpenAI-compatible endpoint.
    pub fn remote(config: crate::remote::RemoteConfig) -> Result<Policy, AgentError> {
        Ok(Policy {
            backend: Backend::Remote(std::sync::Arc::new(crate::remote::RemotePolicy::new(
                config,
            )?)),
        })
    }

    /// Generates a reply; waits its turn behind earlier requests.
    pub async fn generate(&self, request: PolicyRequest) -> Result<Generated, AgentError> {
        match &self.backend {
            Backend::Local(jobs) => {
                let (reply, answer) = oneshot::channel();
                jobs.send(Job::Generate(Box::new(request), reply))
                    .await
                    .map_err(|_| AgentError::PolicyGone)?;
                answer.await.map_err(|_| AgentError::PolicyGone)?
            }
            Backend::Remote(remote) => remote.generate(&request).await,
        }
    }

    /// Makes adapter `version` (a PEFT folder) the active one from the next generation on.
    /// A folder that does not load leaves the previous adapter active. A remote policy's
    /// server loads it by path (vLLM's dynamic LoRA loading).
    pub async fn activate(&self, version: i64, dir: PathBuf) -> Result<(), AgentError> {
        match &self.backend {
            Backend::Local(jobs) => send_activate(jobs, Some((version, dir))).await,
            Backend::Remote(remote) => remote.activate(version, &dir).await,
        }
    }

    /// Serves the base model alone from the next generation on.
    pub async fn deactivate(&self) -> Result<(), AgentError> {
        match &self.backend {
            Backend::Local(jobs) => send_activate(jobs, None).await,
            Backend::Remote(remote) => {
                remote.deactivate();
                Ok(())
            }
        }
    }
}

async fn send_activate(
    jobs: &mpsc::Sender<Job>,
    adapter: Option<(i64, PathBuf)>,
) -> Result<(), AgentError> {
    let (done, finished) = oneshot::channel();
    jobs.send(Job::Activate { adapter, done })
        .await
        .map_err(|_| AgentError::PolicyGone)?;
    finished.await.map_err(|_| AgentError::PolicyGone)?
}

/// Runs `work` inside a rayon pool of `threads` threads (candle's CPU kernels run on the
/// current pool), or directly when `None` or the pool cannot be built.
pub fn in_pool<T>(threads: Option<usize>, name: &str, work: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    let Some(n) = threads else {
        return work();
    };
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .thread_name({
            let name = name.to_owned();
            move |i| format!("clawdesk-{name}-{i}")
        })
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(e) => {
            tracing::warn!(error = %e, name, "no thread pool of its own; sharing the global one");
            work()
        }
    }
}

fn serve(
    loaded: &LoadedModel,
    request: &PolicyRequest,
    version: Option<i64>,
) -> Result<Generated, AgentError> {
    let start = Instant::now();
    let processor = &loaded.processor;
    let text = processor.render(&request.messages, &request.tools, true)?;
    let prepared = request
        .images
        .iter()
        .map(|im| preprocess::prepare(im.as_ref(), processor.preprocessor()))
        .collect::<Result<Vec<_>, _>>()?;
    let image_size = prepared.last().map(|p| p.frame.resized).unwrap_or((0, 0));
    let input = processor.encode_prepared(&text, prepared)?;
    let prompt_tokens = input.ids.len();
    let mut sampling = request.sampling.clone();
    if sampling.stop.is_empty() {
        sampling.stop = processor.stop_ids().to_vec();
    }
    let model = &loaded.model;
    let mut generated = Vec::new();
    let mut cut = None;
    let generation = generate_until(
        model,
        &mut model.new_cache(),
        &input,
        &sampling,
        version.is_some(),
        &mut |token| {
            generated.push(token);
            let listening = match &request.tokens {
                Some(tx) => tx.send(token).is_ok(),
                None => true,
            };
            if !request.stop_text.is_empty() {
                cut = stop_text_at(processor, &generated, &request.stop_text);
            }
            listening && cut.is_none()
        },
    )?;
    let mut text = processor.decode(&generation.tokens, true)?;
    let mut finish = generation.finish;
    if let Some(at) = cut {
        text.truncate(at);
        finish = Finish::Stop(generation.tokens.last().copied().unwrap_or_default());
    }
    Ok(Generated {
        text,
        tokens: generation.tokens,
        logprobs: generation.logprobs,
        top_logprobs: generation.top_logprobs,
        finish,
        version,
        image_size,
        prompt_tokens,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Where the first of `stops` begins in the text of `tokens`, if one has appeared.
fn stop_text_at(
    processor: &clawdesk_model::processor::Processor,
    tokens: &[u32],
    stops: &[String],
) -> Option<usize> {
    let text = processor.decode(tokens, true).ok()?;
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}
