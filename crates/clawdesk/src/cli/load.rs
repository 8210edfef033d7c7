//! The one way the subcommands load a model: a folder or hub id (downloaded into the HF cache
//! with its progress logged), with a PEFT adapter on top when given.

use std::path::PathBuf;

use clawdesk_model::source::LoadedModel;

/// Loads a model on the CPU, with a PEFT adapter when given.
pub fn model(model: &str, adapter: Option<&PathBuf>) -> anyhow::Result<LoadedModel> {
    let mut loaded = LoadedModel::load(model, &candle_core::Device::Cpu, None, &mut |event| {
        tracing::info!(?event, "loading the model");
    })?;
    if let Some(dir) = adapter {
        clawdesk_model::peft::import_adapter(&mut loaded.model, dir)?;
    }
    Ok(loaded)
}
