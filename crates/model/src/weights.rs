//! Reading a model's tensors from one or more safetensors files, checking every name and shape
//! against what the architecture asks for, and refusing leftovers: a checkpoint that does not
//! match the config fails at load, naming the tensor, rather than producing wrong outputs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// The name transformers 5 gives a tensor that older checkpoints (Qwen2.5-VL and the models
/// built on it: UI-TARS-1.5, OpenCUA, …) saved as `visual.*` and `model.*`, as HF's
/// checkpoint conversion mapping renames them on load. Names already in the new layout and
/// `lm_head.*` are kept.
pub fn canonical_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("visual.") {
        return format!("model.visual.{rest}");
    }
    if let Some(rest) = name.strip_prefix("model.")
        && !rest.starts_with("language_model.")
        && !rest.starts_with("visual.")
    {
        return format!("model.language_model.{rest}");
    }
    name.to_string()
}

/// The tensors of a model directory, with a record of which ones were taken.
pub struct WeightFiles {
    dir: PathBuf,
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// Canonical name → (file, name in that file).
    routing: BTreeMap<String, (usize, String)>,
    taken: RefCell<BTreeSet<String>>,
    device: Device,
    dtype: DType,
}

impl WeightFiles {
    /// Opens `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    pub fn open(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| ModelError::Json {
                    path: index.clone(),
                    what: "a safetensors index",
                    source,
                })?;
            let map = value
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::CorruptWeights {
                    path: index.clone(),
                    reason: "no weight_map object".into(),
                })?;
            let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            vec![dir.join("model.safetensors")]
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut routing = BTreeMap::new();
        for path in paths {
            if !path.exists() {
                return Err(ModelError::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
                ));
            }
            // SAFETY: the mapping is read-only; a model directory is not rewritten while a
            // model loads from it (the same contract as every mmap-based checkpoint loader).
            let st = unsafe { MmapedSafetensors::new(&path) }.map_err(|e| {
                ModelError::CorruptWeights {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            for (name, _) in st.tensors() {
                routing.insert(canonical_name(&name), (files.len(), name));
            }
            files.push((path, st));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            routing,
            taken: RefCell::new(BTreeSet::new()),
            device: device.clone(),
            dtype,
        })
    }

    /// Loads `name`, checking its shape, in the model's dtype on the model's device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_as(name, shape, self.dtype)
    }

    /// Loads `name` in a chosen dtype (norm weights and LoRA stay in f32 on GPU).
    pub fn get_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let Some((index, stored)) = self.routing.get(name) else {
            return Err(ModelError::MissingTensor {
                dir: self.dir.clone(),
                name: name.into(),
            });
        };
        let (path, st) = &self.files[*index];
        let view = st.get(stored).map_err(|e| ModelError::CorruptWeights {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if view.shape() != shape {
            return Err(ModelError::WrongShape {
                name: name.into(),
                found: view.shape().to_vec(),
                expected: shape.to_vec(),
            });
        }
        let tensor = st
            .load(stored, &self.device)
            .map_err(|e| ModelError::CorruptWeights {
                path: path.clone(),
                reason: format!("{name}: {e}"),
            })?;
        self.taken.borrow_mut().insert(name.to_string());
        Ok(tensor.to_dtype(dtype)?)
    }

    /// Fails when the files hold tensors that no part of the model took.
    pub fn finish(self) -> Result<()> {
        let taken = self.taken.into_inner();
        let extra: Vec<&String> = self
            .routing
            .keys()
            .filter(|name| !taken.contains(*name))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = extra.iter().take(8).map(|s| s.to_string()).collect();
        if extra.len() > 8 {
            names.push(format!("and {} more", extra.len() - 8));
        }
        Err(ModelError::UnexpectedTensors {
            dir: self.dir,
            names: names.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn old_qwen25_names_take_the_transformers_5_layout() {
        assert_eq!(
            canonical_name("visual.blocks.0.attn.qkv.weight"),
            "model.visual.blocks.0.attn.qkv.weight"
        );
        assert_eq!(
            canonical_name("model.layers.3.mlp.up_proj.weight"),
            "model.language_model.layers.3.mlp.up_proj.weight"
        );
        assert_eq!(
            canonical_name("model.embed_tokens.weight"),
            "model.language_model.embed_tokens.weight"
        );
        for kept in [
            "model.language_model.norm.weight",
            "model.visual.merger.ln_q.weight",
            "lm_head.weight",
        ] {
            assert_eq!(canonical_name(kept), kept);
        }
    }
}
