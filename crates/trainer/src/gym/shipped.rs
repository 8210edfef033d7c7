//! Practice bases shipped inside the binary: cache entries made once by their recipe
//! ([`WarmStartSettings::practice`]) on the project's machine and kept in
//! `crates/trainer/bases/<cache folder>/`, so a first practice session or `bench learn` does
//! not pay the recipe's half hour of CPU. A shipped base is unpacked into the cache only
//! when a recipe's cache key names its folder: a changed recipe or prompt template asks for
//! another key and is trained as before, never served a base made for something else.
//!
//! [`WarmStartSettings::practice`]: crate::gym::warm_start::WarmStartSettings::practice

use std::path::{Path, PathBuf};

use crate::error::{Result, TrainerError};

/// One file of a shipped base.
struct ShippedFile {
    name: &'static str,
    bytes: &'static [u8],
}

/// A base's folder, named as the cache names it, and its files.
struct ShippedBase {
    folder: &'static str,
    files: &'static [ShippedFile],
}

macro_rules! shipped_base {
    ($folder:literal: $($name:literal),+ $(,)?) => {
        ShippedBase {
            folder: $folder,
            files: &[$(ShippedFile {
                name: $name,
                bytes: include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"), "/bases/", $folder, "/", $name
                )),
            }),+],
        }
    };
}

/// Every shipped base. `the_shipped_bases_are_their_recipes_cache_entries` checks each
/// folder's name against its recipe's key.
static SHIPPED: &[ShippedBase] = &[
    // The practice recipe, seed 1.
    shipped_base!("practice-base-725afa9ece411b1c":
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "warm_start.json",
    ),
    // The practice recipe, seed 2.
    shipped_base!("practice-base-9690be9a59e75142":
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "warm_start.json",
    ),
    // The practice recipe, seed 3.
    shipped_base!("practice-base-87e485bc136425d3":
        "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
        "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "warm_start.json",
    ),
];

/// The folder names of the shipped bases.
pub fn folders() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|b| b.folder)
}

/// Unpacks the shipped base named `folder` into `cache` (through a temporary folder renamed
/// into place, so a half-written base is never found), or `None` when none is shipped under
/// that name.
pub(crate) fn unpack(cache: &Path, folder: &str) -> Result<Option<PathBuf>> {
    let Some(base) = SHIPPED.iter().find(|b| b.folder == folder) else {
        return Ok(None);
    };
    std::fs::create_dir_all(cache).map_err(TrainerError::io(cache))?;
    let work = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(cache)
        .map_err(TrainerError::io(cache))?;
    for file in base.files {
        let path = work.path().join(file.name);
        std::fs::write(&path, file.bytes).map_err(TrainerError::io(&path))?;
    }
    let dir = cache.join(folder);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(TrainerError::io(&dir))?;
    }
    let work = work.keep();
    std::fs::rename(&work, &dir).map_err(TrainerError::io(&dir))?;
    tracing::info!(dir = %dir.display(), "unpacked the shipped practice base");
    Ok(Some(dir))
}
