//! Checkpoints: the LoRA weights, the optimiser's moments, the update count and the data cursor,
//! written so that a crash or a full disk at any moment leaves the previous checkpoint valid.
//!
//! Layout under the checkpoint folder: `step-000042/` with `state.safetensors` (tensors named
//! `param.<name>`, `m.<name>`, `v.<name>`) and `meta.json`; and `LATEST`, a one-line file naming
//! the newest complete one. A checkpoint is written as `step-000042.tmp/`, synced, renamed into
//! place, and only then does `LATEST` move (itself by write-and-rename). A checkpoint of the
//! same step that already exists is moved aside (`step-000042.old/`) before the new one takes
//! its name, and removed only after `LATEST` names the new one. Loading falls back to the
//! newest complete checkpoint when the one `LATEST` names is missing or damaged.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};
use crate::optim::AdamW;

/// What a checkpoint says about itself, checked before anything is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// The format, for readers of the future.
    pub format: u32,
    /// Updates taken.
    pub step: u64,
    /// Where the trainer was in its data (e.g. the last step id it consumed).
    pub cursor: i64,
    /// Which base model the adapter belongs to (its hub id or folder, plus a digest of its config).
    pub base_model: String,
    /// The LoRA rank the adapter was trained at.
    pub rank: usize,
    /// The parameter names, in the optimiser's order.
    pub params: Vec<String>,
}

const FORMAT: u32 = 1;
const LATEST: &str = "LATEST";

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    /// What the checkpoint says about itself.
    pub meta: CheckpointMeta,
    /// The adapter's weights, in the order of `meta.params`.
    pub params: Vec<Tensor>,
    /// AdamW's first and second moments per parameter, in the same order.
    pub moments: Vec<(Tensor, Tensor)>,
}

fn io(path: &Path, e: std::io::Error) -> TrainerError {
    TrainerError::Checkpoint(format!("{}: {e}", path.display()))
}

/// Writes a checkpoint of `params` (named, in the optimiser's order) and `optimizer` under
/// `dir`, then points `LATEST` at it; keeps the newest `keep` checkpoints. Returns its folder.
pub fn save(
    dir: &Path,
    params: &[(String, Var)],
    optimizer: &AdamW,
    cursor: i64,
    base_model: &str,
    rank: usize,
    keep: usize,
) -> Result<PathBuf> {
    let moments = optimizer.moments();
    if moments.len() != params.len() {
        return Err(TrainerError::Input(format!(
            "{} parameters for an optimiser of {}",
            params.len(),
            moments.len()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let step = optimizer.steps();
    let name = format!("step-{step:06}");
    let tmp = dir.join(format!("{name}.tmp"));
    let done = dir.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
    let written = (|| -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for ((name, var), (m, v)) in params.iter().zip(moments) {
            tensors.insert(format!("param.{name}"), var.as_tensor().clone());
            tensors.insert(format!("m.{name}"), m);
            tensors.insert(format!("v.{name}"), v);
        }
        let state = tmp.join("state.safetensors");
        candle_core::safetensors::save(&tensors, &state)
            .map_err(|e| TrainerError::Checkpoint(format!("{}: {e}", state.display())))?;
        sync(&state)?;
        let meta = CheckpointMeta {
            format: FORMAT,
            step,
            cursor,
            base_model: base_model.to_owned(),
            rank,
            params: params.iter().map(|(n, _)| n.clone()).collect(),
        };
        write_synced(
            &tmp.join("meta.json"),
            &serde_json::to_vec_pretty(&meta)
                .map_err(|e| TrainerError::Checkpoint(e.to_string()))?,
        )?;
        // The same step saved again (a trainer resumed and saved before its next update):
        // the old folder is kept until LATEST names the new one, so no crash leaves LATEST
        // pointing at nothing.
        // Something other than a folder in the way is not ours to move: the rename fails.
        let aside = dir.join(format!("{name}.old"));
        if done.is_dir() {
            if aside.exists() {
                std::fs::remove_dir_all(&aside).map_err(|e| io(&aside, e))?;
            }
            std::fs::rename(&done, &aside).map_err(|e| io(&aside, e))?;
        }
        std::fs::rename(&tmp, &done).map_err(|e| io(&done, e))?;
        sync_dir(dir)?;
        // The pointer moves last: until here, LATEST names the previous complete checkpoint.
        let pointer = dir.join(format!("{LATEST}.tmp"));
        write_synced(&pointer, format!("{name}\n").as_bytes())?;
        std::fs::rename(&pointer, dir.join(LATEST)).map_err(|e| io(dir, e))?;
        sync_dir(dir)
    })();
    if let Err(e) = written {
        // Leave nothing half-written behind; the previous checkpoint is untouched.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let aside = dir.join(format!("{name}.old"));
    if aside.exists() {
        let _ = std::fs::remove_dir_all(&aside);
    }
    prune(dir, keep.max(1), &name);
    Ok(done)
}

/// Reads the newest complete checkpoint under `dir`; `Ok(None)` when there is none. Refuses one
/// made for another base model or rank.
///
/// The one `LATEST` names is tried first; when it is missing or cannot be read (a crash, a
/// damaged disk), the other checkpoints are tried newest first, so training resumes from
/// what survived rather than stopping for good.
pub fn load_latest(
    dir: &Path,
    base_model: &str,
    rank: usize,
    device: &Device,
) -> Result<Option<Checkpoint>> {
    let pointer = dir.join(LATEST);
    let named = match std::fs::read_to_string(&pointer) {
        Ok(name) => Some(name.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&pointer, e)),
    };
    let mut candidates: Vec<String> = named.iter().cloned().collect();
    let mut others: Vec<(u64, String)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let digits = name.strip_prefix("step-")?;
                let digits = digits.strip_suffix(".old").unwrap_or(digits);
                let step = digits.parse::<u64>().ok()?;
                Some((step, name))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir, e)),
    };
    // Newest first; a complete folder before the copy moved aside for the same step.
    others.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.len().cmp(&b.1.len())));
    candidates.extend(
        others
            .into_iter()
            .map(|(_, name)| name)
            .filter(|n| Some(n) != named.as_ref()),
    );
    let mut first_error = None;
    for name in candidates {
        match load_folder(&dir.join(&name), base_model, rank, device) {
            Ok(checkpoint) => {
                if let Some(e) = first_error {
                    tracing::warn!(error = %e, fallback = %name, "the newest checkpoint could not be read; resuming from an older one");
                }
                return Ok(Some(checkpoint));
            }
            // Another base or rank is a choice to correct, not damage to pass over.
            Err(Unusable::Mismatch(e)) => return Err(e),
            Err(Unusable::Unreadable(e)) => {
                tracing::warn!(checkpoint = %name, error = %e, "checkpoint unreadable");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// Why one checkpoint folder cannot be resumed from.
enum Unusable {
    /// It belongs to another base model or rank.
    Mismatch(TrainerError),
    /// It is missing, torn or damaged.
    Unreadable(TrainerError),
}

impl From<TrainerError> for Unusable {
    fn from(e: TrainerError) -> Self {
        Unusable::Unreadable(e)
    }
}

/// Reads one checkpoint folder.
fn load_folder(
    folder: &Path,
    base_model: &str,
    rank: usize,
    device: &Device,
) -> std::result::Result<Checkpoint, Unusable> {
    let meta_path = folder.join("meta.json");
    let meta: CheckpointMeta =
        serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| io(&meta_path, e))?)
            .map_err(|e| TrainerError::Checkpoint(format!("{}: {e}", meta_path.display())))?;
    if meta.format != FORMAT {
        return Err(Unusable::Mismatch(TrainerError::Checkpoint(format!(
            "{} has format {}, this build reads {FORMAT}",
            folder.display(),
            meta.format
        ))));
    }
    if meta.base_model != base_model || meta.rank != rank {
        return Err(Unusable::Mismatch(TrainerError::Checkpoint(format!(
            "{} was trained on {} at rank {}, not {base_model} at rank {rank}; choose another \
             checkpoint folder or the matching base model",
            folder.display(),
            meta.base_model,
            meta.rank
        ))));
    }
    let state = folder.join("state.safetensors");
    let mut tensors = candle_core::safetensors::load(&state, device)
        .map_err(|e| TrainerError::Checkpoint(format!("{}: {e}", state.display())))?;
    let mut take = |key: String| {
        tensors
            .remove(&key)
            .ok_or_else(|| TrainerError::Checkpoint(format!("{} lacks {key}", state.display())))
    };
    let mut params = Vec::with_capacity(meta.params.len());
    let mut moments = Vec::with_capacity(meta.params.len());
    for name in &meta.params {
        params.push(take(format!("param.{name}"))?);
        moments.push((take(format!("m.{name}"))?, take(format!("v.{name}"))?));
    }
    Ok(Checkpoint {
        meta,
        params,
        moments,
    })
}

impl Checkpoint {
    /// Puts the checkpoint's weights into `params` and its state into `optimizer`; checks names
    /// and shapes first, so a mismatch changes nothing.
    pub fn restore(self, params: &[(String, Var)], optimizer: &mut AdamW) -> Result<()> {
        let names: Vec<&String> = params.iter().map(|(n, _)| n).collect();
        if names.iter().copied().ne(self.meta.params.iter()) {
            return Err(TrainerError::Checkpoint(
                "the checkpoint's parameters are not this adapter's (other targets or layers)"
                    .into(),
            ));
        }
        for ((name, var), t) in params.iter().zip(&self.params) {
            if var.dims() != t.dims() {
                return Err(TrainerError::Checkpoint(format!(
                    "{name}: checkpoint shape {:?}, adapter {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        optimizer.restore(self.meta.step, self.moments)?;
        for ((_, var), t) in params.iter().zip(self.params) {
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

fn sync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes the renames durable; a folder cannot be opened for syncing on every platform.
    #[cfg(unix)]
    sync(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes all but the newest `keep` complete checkpoints and any stale `.tmp` folders.
fn prune(dir: &Path, keep: usize, newest: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut complete: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") && (name.ends_with(".tmp") || name.ends_with(".old")) {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with("step-") {
            complete.push(name);
        }
    }
    complete.sort();
    let excess = complete.len().saturating_sub(keep);
    for name in complete.into_iter().take(excess) {
        if name != newest {
            let _ = std::fs::remove_dir_all(dir.join(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::optim::AdamWConfig;

    fn params() -> Vec<(String, Var)> {
        let d = Device::Cpu;
        vec![
            (
                "layers.0.q_proj.lora_A".into(),
                Var::from_slice(&[0.1f32, 0.2, 0.3, 0.4], (2, 2), &d).unwrap(),
            ),
            (
                "layers.0.q_proj.lora_B".into(),
                Var::from_slice(&[0.0f32, 0.5], (2, 1), &d).unwrap(),
            ),
        ]
    }

    fn grads(p: &[(String, Var)]) -> Vec<Tensor> {
        p.iter()
            .map(|(_, v)| (v.as_tensor() * 0.5).unwrap())
            .collect()
    }

    fn values(p: &[(String, Var)]) -> Vec<Vec<f32>> {
        p.iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    fn optimizer(p: &[(String, Var)]) -> AdamW {
        AdamW::new(
            p.iter().map(|(_, v)| v.clone()).collect(),
            AdamWConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn resume_takes_the_same_next_update() {
        let dir = tempfile::tempdir().unwrap();
        // Uninterrupted: three updates.
        let p = params();
        let mut opt = optimizer(&p);
        for _ in 0..3 {
            opt.step(&grads(&p), 0.1).unwrap();
            if opt.steps() == 2 {
                save(dir.path(), &p, &opt, 17, "tiny@abc", 1, 2).unwrap();
            }
        }
        let uninterrupted = values(&p);

        // Resumed from the checkpoint after two, in fresh parameters and optimiser.
        let q = params();
        let mut opt = optimizer(&q);
        let ckpt = load_latest(dir.path(), "tiny@abc", 1, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!((ckpt.meta.step, ckpt.meta.cursor), (2, 17));
        ckpt.restore(&q, &mut opt).unwrap();
        opt.step(&grads(&q), 0.1).unwrap();
        assert_eq!(values(&q), uninterrupted);
        assert_eq!(opt.steps(), 3);
    }

    #[test]
    fn another_base_or_rank_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let opt = optimizer(&p);
        save(dir.path(), &p, &opt, 0, "tiny@abc", 1, 2).unwrap();
        for (base, rank) in [("other@def", 1), ("tiny@abc", 8)] {
            let err = load_latest(dir.path(), base, rank, &Device::Cpu).unwrap_err();
            assert!(
                err.to_string()
                    .contains("was trained on tiny@abc at rank 1"),
                "{err}"
            );
        }
        assert!(
            load_latest(&dir.path().join("none"), "x", 1, &Device::Cpu)
                .unwrap()
                .is_none()
        );
        // Other parameter names or shapes: refused, and nothing changes.
        let ckpt = load_latest(dir.path(), "tiny@abc", 1, &Device::Cpu)
            .unwrap()
            .unwrap();
        let other = vec![p[1].clone(), p[0].clone()];
        let mut opt2 = optimizer(&other);
        let before = values(&other);
        assert!(ckpt.restore(&other, &mut opt2).is_err());
        assert_eq!(values(&other), before);
    }

    #[test]
    fn a_failed_write_leaves_the_previous_checkpoint_valid() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let mut opt = optimizer(&p);
        opt.step(&grads(&p), 0.1).unwrap();
        save(dir.path(), &p, &opt, 5, "tiny@abc", 1, 3).unwrap();
        let saved = values(&p);
        opt.step(&grads(&p), 0.1).unwrap();
        // The next checkpoint's target cannot be created (a file stands where its folder goes),
        // as when the disk fills mid-write: an error, and LATEST still names the first.
        std::fs::write(dir.path().join("step-000002"), b"in the way").unwrap();
        let err = save(dir.path(), &p, &opt, 9, "tiny@abc", 1, 3).unwrap_err();
        assert!(matches!(err, TrainerError::Checkpoint(_)), "{err}");
        let ckpt = load_latest(dir.path(), "tiny@abc", 1, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!((ckpt.meta.step, ckpt.meta.cursor), (1, 5));
        let restored: Vec<Vec<f32>> = ckpt
            .params
            .iter()
            .map(|t| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert_eq!(restored, saved);
        assert!(!dir.path().join("step-000002.tmp").exists());
    }

    /// Issue 26: a crash can leave LATEST naming a folder that is gone or damaged; loading
    /// resumes from the newest checkpoint that is whole instead of failing for good.
    #[test]
    fn loading_falls_back_to_the_newest_whole_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let mut opt = optimizer(&p);
        opt.step(&grads(&p), 0.1).unwrap();
        save(dir.path(), &p, &opt, 5, "tiny@abc", 1, 3).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        save(dir.path(), &p, &opt, 6, "tiny@abc", 1, 3).unwrap();
        opt.step(&grads(&p), 0.1).unwrap();
        save(dir.path(), &p, &opt, 7, "tiny@abc", 1, 3).unwrap();
        let load = || load_latest(dir.path(), "tiny@abc", 1, &Device::Cpu);
        // The newest is damaged: step 2 is read.
        std::fs::write(dir.path().join("step-000003/state.safetensors"), b"torn").unwrap();
        assert_eq!(load().unwrap().unwrap().meta.step, 2);
        // The one LATEST names is gone: still step 2.
        std::fs::remove_dir_all(dir.path().join("step-000003")).unwrap();
        assert_eq!(load().unwrap().unwrap().meta.cursor, 6);
        // A crash between moving a same-step checkpoint aside and renaming the new one in.
        std::fs::rename(
            dir.path().join("step-000002"),
            dir.path().join("step-000002.old"),
        )
        .unwrap();
        assert_eq!(load().unwrap().unwrap().meta.step, 2);
        // Another base model is still refused, not passed over.
        let err = load_latest(dir.path(), "other", 1, &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("other"), "{err}");
    }

    /// Saving the step LATEST already names (a trainer resumed and saved before its next
    /// update) replaces it without a moment where LATEST names nothing.
    #[test]
    fn saving_the_same_step_again_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let mut opt = optimizer(&p);
        opt.step(&grads(&p), 0.1).unwrap();
        save(dir.path(), &p, &opt, 5, "b", 1, 3).unwrap();
        save(dir.path(), &p, &opt, 8, "b", 1, 3).unwrap();
        let ckpt = load_latest(dir.path(), "b", 1, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!((ckpt.meta.step, ckpt.meta.cursor), (1, 8));
        assert!(!dir.path().join("step-000001.old").exists());
    }

    #[test]
    fn only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = params();
        let mut opt = optimizer(&p);
        std::fs::create_dir_all(dir.path().join("step-000009.tmp")).unwrap();
        for _ in 0..4 {
            opt.step(&grads(&p), 0.1).unwrap();
            save(dir.path(), &p, &opt, 0, "b", 1, 2).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["LATEST", "step-000003", "step-000004"]);
        let m = load_latest(dir.path(), "b", 1, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(m.moments[0].0.dtype(), DType::F32);
    }
}
