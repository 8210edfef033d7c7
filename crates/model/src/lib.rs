//! Qwen3-VL and Qwen2.5-VL in candle, owned end to end so that they can be trained: one model
//! definition with a Fast mode (fused kernels, KV cache) for generation and a Train mode
//! (differentiable ops) for log-probabilities under gradient; LoRA in PEFT's layout; HF-exact
//! image preprocessing and chat templates; PEFT adapter files; and a generator of tiny random
//! models of either family in HF's format. The family ([`Family`]) is read from the config and
//! decides the few layers that differ; everything above this crate takes either.

#![warn(missing_docs)]

// Linked only for its `x86-v4` feature, which gives candle's CPU matrix products gemm's
// AVX-512 kernels (chosen at run time); see the manifest.
use gemm_f32 as _;

mod attend;
pub mod chat;
pub mod config;
pub mod device;
pub mod error;
pub mod frozen;
pub mod fused;
pub mod generate;
mod head;
pub mod lora;
pub mod model;
pub mod ops;
pub mod peft;
pub mod preprocess;
pub mod processor;
mod product;
/// The seeded generator every seeded piece shares; its own crate so the gym needs no candle.
pub use clawdesk_rng as rng;
pub mod rope;
pub mod source;
pub mod text;
pub mod tiny;
pub mod tower;
pub mod vision;
pub mod weights;
mod whole;
pub mod windowed;

pub use config::{Family, PreprocessorConfig, Qwen3VlConfig};
pub use device::{DeviceChoice, Precision};
pub use error::{ModelError, Result};
pub use lora::LoraConfig;
pub use model::{
    KvCache, LM_HEAD, Logits, ModelInput, Qwen3Vl, ScoreItem, Scored, ScoredTopK, top_k_indices,
};
pub use ops::{Mode, Pass};
pub use preprocess::{ImageFrame, PreparedImage};
