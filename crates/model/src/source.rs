//! Where a model comes from: a local HF-format directory, or a hub repo id resolved through the
//! standard Hugging Face cache (downloading what is missing when the network allows).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::Qwen3VlConfig;
use crate::error::{ModelError, Result};
use crate::model::Qwen3Vl;
use crate::processor::Processor;

/// Files a model directory must have besides its weights.
const REQUIRED: [&str; 3] = ["config.json", "tokenizer.json", "preprocessor_config.json"];
/// Files used when present.
const OPTIONAL: [&str; 4] = [
    "generation_config.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// What a load is doing, for progress bars and status lines: a file downloading, then loading.
#[derive(Debug, Clone)]
pub enum LoadEvent {
    /// Bytes of a file are arriving from the hub.
    Downloading {
        /// The file's name in the repository.
        file: String,
        /// Bytes received so far.
        done: usize,
        /// The file's size in bytes, as the hub reports it.
        total: usize,
    },
    /// A file has been downloaded completely.
    Downloaded {
        /// The file's name in the repository.
        file: String,
    },
    /// Every file is at hand; the model is being loaded from the directory.
    Loading {
        /// The model directory (a local one, or a snapshot in the Hugging Face cache).
        dir: PathBuf,
    },
}

/// A loaded model with the processor of its directory.
pub struct LoadedModel {
    /// The model, weights on the requested device.
    pub model: Qwen3Vl,
    /// The tokenizer, chat template and image preprocessor of the same directory.
    pub processor: Processor,
    /// The directory the model was loaded from.
    pub dir: PathBuf,
}

impl LoadedModel {
    /// Loads from a directory or hub id. CPU runs f32; CUDA runs bf16 unless told otherwise.
    pub fn load(
        spec: &str,
        device: &Device,
        dtype: Option<DType>,
        progress: &mut dyn FnMut(LoadEvent),
    ) -> Result<Self> {
        let dir = resolve(spec, progress)?;
        progress(LoadEvent::Loading { dir: dir.clone() });
        let config = Qwen3VlConfig::from_file(&dir.join("config.json"))?;
        let processor = Processor::load(&dir, &config)?;
        let dtype = dtype.unwrap_or(crate::device::Precision::Auto.dtype(device));
        let model = Qwen3Vl::load(&dir, config, device, dtype)?;
        Ok(Self {
            model,
            processor,
            dir,
        })
    }
}

impl LoadedModel {
    /// Another handle on the same loaded base (see [`Qwen3Vl::share_base`]) with its own
    /// processor and no adapter: the live loop's trainer beside its policy.
    pub fn share_base(&self) -> Result<Self> {
        Ok(Self {
            model: self.model.share_base(),
            processor: Processor::load(&self.dir, self.model.config())?,
            dir: self.dir.clone(),
        })
    }
}

/// The standard hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn hub_cache() -> hf_hub::Cache {
    match std::env::var_os("HF_HUB_CACHE") {
        Some(path) => hf_hub::Cache::new(path.into()),
        None => hf_hub::Cache::from_env(),
    }
}

/// Turns `spec` into a directory holding every file the model needs: a model folder, or a hub
/// id (`owner/name`, at a revision with `owner/name@revision`: a branch, a tag or a commit)
/// found in the HF cache or downloaded into it. `HF_TOKEN` (else the cache's token file)
/// authorises the download; with `HF_HUB_OFFLINE` set nothing is downloaded.
pub fn resolve(spec: &str, progress: &mut dyn FnMut(LoadEvent)) -> Result<PathBuf> {
    let local = Path::new(spec);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let Some(hub_repo) = hub_repo(spec) else {
        return Err(ModelError::io(
            local,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such model directory"),
        ));
    };
    let cache = hub_cache();
    let repo = cache.repo(hub_repo.clone());
    let mut missing: Vec<String> = Vec::new();
    let mut dir = None;
    for file in REQUIRED {
        match repo.get(file) {
            Some(path) => dir = path.parent().map(Path::to_path_buf),
            None => missing.push(file.to_string()),
        }
    }
    if let Some(dir) = &dir {
        for shard in weight_files(dir) {
            if !dir.join(&shard).exists() {
                missing.push(shard);
            }
        }
        if missing.is_empty() {
            return Ok(dir.clone());
        }
    }
    if offline() {
        return Err(ModelError::NotFound {
            repo: spec.into(),
            cache: cache.path().clone(),
            reason: format!(
                "HF_HUB_OFFLINE is set, so nothing is downloaded, and the cache lacks {}",
                if dir.is_none() {
                    "the model".to_owned()
                } else {
                    missing.join(", ")
                }
            ),
        });
    }
    download(&hub_repo, &cache, progress).map_err(|reason| ModelError::NotFound {
        repo: spec.into(),
        cache: cache.path().clone(),
        reason,
    })
}

/// A download error in words a person can act on.
fn explain(endpoint: &str, file: &str, error: &hf_hub::api::sync::ApiError) -> String {
    let text = error.to_string();
    let unreachable = [
        "Connection refused",
        "dns",
        "resolve",
        "timed out",
        "Network",
    ]
    .iter()
    .any(|w| text.contains(w));
    let refused = ["401", "403"].iter().any(|code| text.contains(code));
    if refused {
        format!(
            "{file}: the hub refused it ({text}); a gated or private model needs a token in \
             HF_TOKEN (or `huggingface-cli login`) with access to it"
        )
    } else if unreachable {
        format!(
            "{file}: cannot reach {endpoint} ({text}); check the network connection, or use a \
             model folder on this computer or practice mode, which need no network"
        )
    } else {
        format!("{file}: {text}")
    }
}

/// Checks a downloaded file against its content hash. The hub names a large (LFS) file's blob
/// by the SHA-256 of its bytes; a file whose bytes do not hash to its name was corrupted on
/// the way, and is removed so that the next load downloads it again.
fn verify(pointer: &Path) -> std::result::Result<(), String> {
    use sha2::Digest;
    let blob = std::fs::canonicalize(pointer).map_err(|e| e.to_string())?;
    let Some(expected) = blob
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
    else {
        // A small file stored in git: named by its git object id, not a content SHA-256.
        return Ok(());
    };
    let mut file = std::fs::File::open(&blob).map_err(|e| e.to_string())?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| e.to_string())?;
    let actual = format!("{:x}", hasher.finalize());
    if actual == expected {
        return Ok(());
    }
    let _ = std::fs::remove_file(pointer);
    let _ = std::fs::remove_file(&blob);
    Err(format!(
        "the download is corrupted: its SHA-256 is {actual}, the hub says {expected}; it was \
         removed and will be downloaded again next time"
    ))
}

/// The hub repository a spec names (`owner/name`, optionally `@revision`), at `main` when no
/// revision is given as the hub's own tools do; `None` when it names none.
fn hub_repo(spec: &str) -> Option<hf_hub::Repo> {
    let (id, revision) = match spec.rsplit_once('@') {
        Some((id, revision)) => (id, Some(revision)),
        None => (spec, None),
    };
    let revision_ok = revision.is_none_or(|r| {
        !r.is_empty()
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    });
    (looks_like_repo_id(id) && revision_ok).then(|| {
        hf_hub::Repo::with_revision(
            id.to_owned(),
            hf_hub::RepoType::Model,
            revision.unwrap_or("main").to_owned(),
        )
    })
}

/// `HF_HUB_OFFLINE`, as the hub's own tools read it: set to 1 (or true, yes, on).
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The token that authorises downloads: `HF_TOKEN`, else the cache's token file (what
/// `huggingface-cli login` writes).
fn token(cache: &hf_hub::Cache) -> Option<String> {
    std::env::var("HF_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| cache.token())
}

fn looks_like_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The safetensors files a directory's index names, or the single file.
fn weight_files(dir: &Path) -> Vec<String> {
    let index = dir.join("model.safetensors.index.json");
    let Ok(text) = std::fs::read_to_string(&index) else {
        return vec!["model.safetensors".into()];
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return vec!["model.safetensors".into()];
    };
    let mut files: Vec<String> = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.dedup();
    files
}

struct Reporter<'a> {
    file: String,
    done: usize,
    total: usize,
    sink: &'a mut dyn FnMut(LoadEvent),
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        // A retried download starts again here and reports the bytes it resumes from.
        self.file = filename.to_string();
        self.total = size;
        self.done = 0;
        (self.sink)(LoadEvent::Downloading {
            file: self.file.clone(),
            done: 0,
            total: size,
        });
    }
    fn update(&mut self, size: usize) {
        self.done += size;
        (self.sink)(LoadEvent::Downloading {
            file: self.file.clone(),
            done: self.done,
            total: self.total,
        });
    }
    fn finish(&mut self) {
        (self.sink)(LoadEvent::Downloaded {
            file: self.file.clone(),
        });
    }
}

/// Retries of one file after a dropped connection; each resumes where the last one stopped
/// (a partial download is kept as `blobs/<etag>.part`, and a later load resumes it too).
const DOWNLOAD_RETRIES: usize = 4;

/// The hub's address: `$HF_ENDPOINT` (a mirror, a test server), else huggingface.co.
fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| "https://huggingface.co".to_owned())
}

fn download(
    hub_repo: &hf_hub::Repo,
    cache: &hf_hub::Cache,
    progress: &mut dyn FnMut(LoadEvent),
) -> std::result::Result<PathBuf, String> {
    let endpoint = endpoint();
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_token(token(cache))
        .with_endpoint(endpoint.clone())
        .with_retries(DOWNLOAD_RETRIES)
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.repo(hub_repo.clone());
    let cached = cache.repo(hub_repo.clone());
    let fetch =
        |file: &str, progress: &mut dyn FnMut(LoadEvent)| -> std::result::Result<PathBuf, String> {
            // What an earlier, interrupted load already fetched is not fetched again.
            if let Some(path) = cached.get(file) {
                return Ok(path);
            }
            let reporter = Reporter {
                file: file.to_string(),
                done: 0,
                total: 0,
                sink: progress,
            };
            let path = repo
                .download_with_progress(file, reporter)
                .map_err(|e| explain(&endpoint, file, &e))?;
            verify(&path).map_err(|e| format!("{file}: {e}"))?;
            Ok(path)
        };
    let config = fetch("config.json", progress)?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "download landed outside a snapshot".to_string())?;
    for file in REQUIRED.iter().skip(1) {
        fetch(file, progress)?;
    }
    for file in OPTIONAL {
        // Optional files may be absent from the repo; a failure there is not an error.
        let _ = fetch(file, progress);
    }
    if fetch("model.safetensors.index.json", progress).is_err() {
        fetch("model.safetensors", progress)?;
    } else {
        for shard in weight_files(&dir) {
            fetch(&shard, progress)?;
        }
    }
    Ok(dir)
}
