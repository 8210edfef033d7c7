//! The one way the subcommands load a model: a folder or hub id (downloaded into the HF cache
//! with its progress shown), with a PEFT adapter on top when given; and which adapter a
//! policy that serves (`agent run`, `serve`) starts with.

use std::path::PathBuf;

use clawdesk_agent::Policy;
use clawdesk_model::source::LoadedModel;
use clawdesk_model::{DeviceChoice, Precision};
use clawdesk_store::Store;

/// Where a model runs and in what precision: the same two flags on every command that loads
/// one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Where the model runs: auto (a CUDA GPU when this build has CUDA and one answers, else
    /// the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Precision of the frozen weights: auto (bf16 on a GPU, f32 on the CPU), f32, bf16 or
    /// f16. LoRA weights and optimiser state stay f32.
    #[arg(long, default_value = "auto")]
    pub dtype: Precision,
    /// The revision of a hub model to load: a branch, a tag or a commit (the same as
    /// MODEL@REVISION; the hub's main branch when neither is given).
    #[arg(long)]
    pub revision: Option<String>,
}

impl DeviceArgs {
    /// The CPU in f32, for what the person did not choose a device for.
    pub const CPU: DeviceArgs = DeviceArgs {
        device: DeviceChoice::Cpu,
        dtype: Precision::Auto,
        revision: None,
    };

    /// The model as the loader takes it: `model@revision` when `--revision` is given. A
    /// revision given twice, or for a local folder, is an error rather than a silent choice.
    pub fn model_spec(&self, model: &str) -> anyhow::Result<String> {
        let Some(revision) = &self.revision else {
            return Ok(model.to_string());
        };
        if std::path::Path::new(model).exists() {
            anyhow::bail!("--revision {revision} is for a hub model; {model} is a local folder");
        }
        if model.contains('@') {
            anyhow::bail!("{model} already names a revision; give it once (--revision {revision})");
        }
        Ok(format!("{model}@{revision}"))
    }

    /// Opens the device named.
    pub fn open(&self) -> anyhow::Result<candle_core::Device> {
        Ok(self.device.open()?)
    }
}

/// Loads a model where `on` says, with a PEFT adapter when given, and says where it runs.
pub fn model(
    model: &str,
    adapter: Option<&PathBuf>,
    on: &DeviceArgs,
) -> anyhow::Result<LoadedModel> {
    let device = on.open()?;
    let spec = on.model_spec(model)?;
    let mut loaded = LoadedModel::load(
        &spec,
        &device,
        Some(on.dtype.dtype(&device)),
        &mut super::progress::model_load(),
    )?;
    if let Some(dir) = adapter {
        clawdesk_model::peft::import_adapter(&mut loaded.model, dir)?;
    }
    eprintln!(
        "{spec} runs on the {} in {}",
        clawdesk_model::device::describe(&device),
        loaded.model.dtype().as_str()
    );
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

/// A model family, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchArg {
    /// Qwen3-VL.
    #[value(name = "qwen3-vl")]
    Qwen3Vl,
    /// Qwen2.5-VL, the base of UI-TARS-1.5 and OpenCUA.
    #[value(name = "qwen2.5-vl")]
    Qwen25Vl,
}

impl From<ArchArg> for clawdesk_model::Family {
    fn from(arch: ArchArg) -> Self {
        match arch {
            ArchArg::Qwen3Vl => Self::Qwen3Vl,
            ArchArg::Qwen25Vl => Self::Qwen25Vl,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_revision_joins_a_hub_id_once() {
        let on = |revision: Option<&str>| DeviceArgs {
            revision: revision.map(str::to_string),
            ..DeviceArgs::CPU
        };
        assert_eq!(
            on(None).model_spec("Qwen/Qwen2.5-VL-3B-Instruct").unwrap(),
            "Qwen/Qwen2.5-VL-3B-Instruct"
        );
        assert_eq!(
            on(Some("v1.0"))
                .model_spec("ByteDance-Seed/UI-TARS-1.5-7B")
                .unwrap(),
            "ByteDance-Seed/UI-TARS-1.5-7B@v1.0"
        );
        let twice = on(Some("main")).model_spec("org/name@dev").unwrap_err();
        assert!(twice.to_string().contains("give it once"), "{twice}");
        let dir = tempfile::tempdir().unwrap();
        let local = on(Some("main"))
            .model_spec(dir.path().to_str().unwrap())
            .unwrap_err();
        assert!(local.to_string().contains("local folder"), "{local}");
    }
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        on: DeviceArgs,
    }

    #[test]
    fn auto_is_the_default_and_a_bad_name_is_refused_at_parse_time() {
        let p = Probe::try_parse_from(["x"]).unwrap();
        assert_eq!(p.on.device, DeviceChoice::Auto);
        assert_eq!(p.on.dtype, Precision::Auto);
        let p = Probe::try_parse_from(["x", "--device", "cuda:1", "--dtype", "bf16"]).unwrap();
        assert_eq!(p.on.device, DeviceChoice::Cuda(1));
        assert_eq!(p.on.dtype, Precision::Bf16);
        let e = Probe::try_parse_from(["x", "--device", "tpu"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("cuda:N"), "{e}");
    }
}
