//! Exporting an adapter version as a PEFT folder, with the lines that load it elsewhere.

use std::path::Path;

use clawdesk_store::{Adapter, Store};
use serde::Serialize;

use crate::RuntimeError;

/// What an export wrote, and how to load it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedAdapter {
    /// The adapter version that was exported.
    pub version: i64,
    /// The folder the adapter was copied into.
    pub folder: String,
    /// Names of the files copied, in name order.
    pub files: Vec<String>,
    /// Bytes copied in all.
    pub bytes: u64,
    /// Python lines that load it with HF PEFT.
    pub peft_command: String,
    /// A shell line that serves it with vLLM.
    pub vllm_command: String,
}

/// The stored adapter `version`.
pub fn find_adapter(store: &Store, version: i64) -> Result<Adapter, RuntimeError> {
    store
        .adapters()?
        .into_iter()
        .find(|a| a.version == version)
        .ok_or(RuntimeError::Store(clawdesk_store::StoreError::NotFound {
            what: "adapter version",
            id: version,
        }))
}

/// Copies version `version`'s PEFT folder into `to` (new or empty), calling `progress` with
/// (bytes copied, bytes in all) after each file. Refuses a source that is not a readable PEFT
/// adapter before copying anything.
pub fn export_adapter(
    store: &Store,
    version: i64,
    to: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportedAdapter, RuntimeError> {
    let adapter = find_adapter(store, version)?;
    let from = Path::new(&adapter.path);
    let io = |what: &str, path: &Path, e: std::io::Error| RuntimeError::External {
        program: "adapter export".into(),
        detail: format!("{what} {}: {e}", path.display()),
    };
    let config = clawdesk_model::peft::read_adapter_config(from)?;
    if to.exists()
        && to
            .read_dir()
            .map_err(|e| io("reading", to, e))?
            .next()
            .is_some()
    {
        return Err(RuntimeError::External {
            program: "adapter export".into(),
            detail: format!(
                "{} is not empty; choose an empty or new folder",
                to.display()
            ),
        });
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(from).map_err(|e| io("reading", from, e))? {
        let entry = entry.map_err(|e| io("reading", from, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| io("reading", &entry.path(), e))?;
        if meta.is_file() {
            files.push((entry.file_name(), meta.len()));
        }
    }
    files.sort();
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    std::fs::create_dir_all(to).map_err(|e| io("creating", to, e))?;
    let mut copied = 0;
    progress(0, total);
    for (name, _) in &files {
        let source = from.join(name);
        copied += std::fs::copy(&source, to.join(name)).map_err(|e| io("copying", &source, e))?;
        progress(copied, total);
    }
    // A version a person exported is theirs to keep: pruning never removes it.
    store.mark_adapter_exported(version)?;
    let folder = to.display().to_string();
    let base = &adapter.base_model;
    Ok(ExportedAdapter {
        version,
        files: files
            .iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect(),
        bytes: copied,
        peft_command: format!(
            "from transformers import Qwen3VLForConditionalGeneration\n\
             from peft import PeftModel\n\
             model = PeftModel.from_pretrained(\
             Qwen3VLForConditionalGeneration.from_pretrained(\"{base}\"), \"{folder}\")"
        ),
        vllm_command: format!(
            "vllm serve {base} --enable-lora --max-lora-rank {rank} \
             --lora-modules clawdesk-v{version}={folder}",
            rank = vllm_max_rank(config.rank)
        ),
        folder,
    })
}

/// vLLM accepts only some values for `--max-lora-rank`; the smallest that holds `rank`.
fn vllm_max_rank(rank: usize) -> usize {
    [8, 16, 32, 64, 128, 256, 320, 512]
        .into_iter()
        .find(|&r| r >= rank)
        .unwrap_or(512)
}
