//! The one way the subcommands load a model: a folder or hub id (downloaded into the HF cache
//! with its progress shown), with a PEFT adapter on top when given; and which adapter a
//! policy that serves (`agent run`, `serve`) starts with.

use std::path::PathBuf;

use clawdesk_agent::Policy;
use clawdesk_model::source::LoadedModel;
use clawdesk_store::Store;

/// Loads a model on the CPU, with a PEFT adapter when given.
pub fn model(model: &str, adapter: Option<&PathBuf>) -> anyhow::Result<LoadedModel> {
    let mut loaded = LoadedModel::load(
        model,
        &candle_core::Device::Cpu,
        None,
        &mut super::progress::model_load(),
    )?;
    if let Some(dir) = adapter {
        clawdesk_model::peft::import_adapter(&mut loaded.model, dir)?;
    }
    Ok(loaded)
}

/// Serves `adapter` when one is named, else the version a person activated (`clawdesk
/// adapters activate`, rollbacks included), else the base model.
pub async fn activate_adapter(
    policy: &Policy,
    store: &Store,
    adapter: Option<&PathBuf>,
    version: i64,
) -> anyhow::Result<()> {
    if let Some(dir) = adapter {
        policy.activate(version, dir.clone()).await?;
    } else if let Some(active) = store.active_adapter()? {
        eprintln!("serving adapter v{} ({})", active.version, active.path);
        policy
            .activate(active.version, PathBuf::from(&active.path))
            .await?;
    }
    Ok(())
}

/// Where a model runs, as the person chooses it (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DeviceArg {
    /// The CPU.
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with the `cuda` feature).
    Cuda,
}

/// The candle device for `arg`, failing with what to do when there is no GPU.
pub fn device(arg: DeviceArg) -> anyhow::Result<candle_core::Device> {
    match arg {
        DeviceArg::Cpu => Ok(candle_core::Device::Cpu),
        DeviceArg::Cuda => candle_core::Device::new_cuda(0).map_err(|e| {
            anyhow::anyhow!(
                "no CUDA device ({e}); build with --features cuda on a machine with a GPU"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_the_default_and_a_missing_gpu_says_what_to_do() {
        assert!(device(DeviceArg::default()).expect("cpu").is_cpu());
        #[cfg(not(feature = "cuda"))]
        {
            let e = device(DeviceArg::Cuda).expect_err("a build without CUDA");
            assert!(e.to_string().contains("--features cuda"), "{e}");
        }
    }
}
