//! LoRA adapters as PEFT files: `adapter_config.json` plus `adapter_model.safetensors` with
//! PEFT's key names for Qwen3-VL and Qwen2.5-VL under transformers 5
//! (`base_model.model.model.language_model.layers.N.self_attn.q_proj.lora_A.weight`), which HF
//! PEFT and vLLM load as they are.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::config::Family;
use crate::error::{ModelError, Result};
use crate::lora::LoraConfig;
use crate::model::Qwen3Vl;
use crate::tiny::write_safetensors;

/// Name of PEFT's adapter config file in an adapter directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// Name of PEFT's adapter weights file in an adapter directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const KEY_PREFIX: &str = "base_model.model.";

/// Writes the model's adapters. `base_model` names the base for the config's
/// `base_model_name_or_path` (a hub id or a path).
pub fn export_adapter(model: &Qwen3Vl, dir: &Path, base_model: &str) -> Result<()> {
    let Some(config) = model.lora_config() else {
        return Err(ModelError::Adapter {
            path: dir.into(),
            reason: "the model has no LoRA adapter to export".into(),
        });
    };
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut tensors = Vec::new();
    for (path, lora) in model.lora_weights() {
        for (which, var) in [("lora_A", &lora.a), ("lora_B", &lora.b)] {
            let t = var
                .as_tensor()
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?;
            let shape = t.dims().to_vec();
            let data = t.flatten_all()?.to_vec1::<f32>()?;
            tensors.push((format!("{KEY_PREFIX}{path}.{which}.weight"), shape, data));
        }
    }
    let config_json = serde_json::json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": target_modules_json(model.config().family(), &config.target_modules),
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": config.use_rslora
    });
    // Write beside and rename, so a crash never leaves a half-written adapter behind.
    let tmp_weights = dir.join(format!("{WEIGHTS_FILE}.partial"));
    write_safetensors(&tmp_weights, &tensors)?;
    let weights = dir.join(WEIGHTS_FILE);
    std::fs::rename(&tmp_weights, &weights).map_err(|e| ModelError::io(&weights, e))?;
    let config_path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config_json).unwrap_or_default() + "\n";
    std::fs::write(&config_path, text).map_err(|e| ModelError::io(&config_path, e))?;
    Ok(())
}

/// PEFT matches a list of names against every module, and Qwen2.5-VL's vision blocks also
/// have `gate_proj`, `up_proj` and `down_proj`: PEFT would put adapters there that this file
/// does not hold. For that family the list becomes a regular expression over the language
/// model only, which PEFT matches with `re.fullmatch` and [`read_adapter_config`] reads back.
fn target_modules_json(family: Family, modules: &[String]) -> serde_json::Value {
    match family {
        Family::Qwen3Vl => serde_json::json!(modules),
        Family::Qwen25Vl => serde_json::Value::String(format!(
            "{TEXT_ONLY_HEAD}{}{TEXT_ONLY_TAIL}",
            modules.join("|")
        )),
    }
}

const TEXT_ONLY_HEAD: &str = r".*language_model.*\.(";
const TEXT_ONLY_TAIL: &str = ")";

/// The module names of a text-only pattern as [`target_modules_json`] writes it.
fn parse_text_only_pattern(pattern: &str) -> Option<Vec<String>> {
    let names = pattern
        .strip_prefix(TEXT_ONLY_HEAD)?
        .strip_suffix(TEXT_ONLY_TAIL)?;
    let names: Vec<String> = names.split('|').map(str::to_string).collect();
    names
        .iter()
        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(names)
}

/// Reads a PEFT adapter directory into the model (replacing any adapter it had).
pub fn import_adapter(model: &mut Qwen3Vl, dir: &Path) -> Result<()> {
    let config = read_adapter_config(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    let loaded = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
        ModelError::CorruptWeights {
            path: weights.clone(),
            reason: e.to_string(),
        }
    })?;
    let mut pairs: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    for (key, tensor) in loaded {
        let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
            return Err(adapter_err(dir, format!("unexpected tensor {key}")));
        };
        // PEFT saves without the adapter name; older files may carry `.default`.
        let rest = rest.replace(".lora_A.default.weight", ".lora_A.weight");
        let rest = rest.replace(".lora_B.default.weight", ".lora_B.weight");
        if let Some(path) = rest.strip_suffix(".lora_A.weight") {
            pairs.entry(path.to_string()).or_default().0 = Some(tensor);
        } else if let Some(path) = rest.strip_suffix(".lora_B.weight") {
            pairs.entry(path.to_string()).or_default().1 = Some(tensor);
        } else {
            return Err(adapter_err(dir, format!("unexpected tensor {key}")));
        }
    }
    let mut complete = BTreeMap::new();
    for (path, pair) in pairs {
        match pair {
            (Some(a), Some(b)) => {
                complete.insert(path, (a, b));
            }
            _ => {
                return Err(adapter_err(
                    dir,
                    format!("{path} has only one of lora_A and lora_B"),
                ));
            }
        }
    }
    if complete.is_empty() {
        return Err(adapter_err(dir, "no LoRA tensors".into()));
    }
    model.set_lora_weights(config, complete)
}

fn adapter_err(dir: &Path, reason: String) -> ModelError {
    ModelError::Adapter {
        path: dir.into(),
        reason,
    }
}

/// Reads and checks `adapter_config.json`: plain LoRA (optionally rsLoRA) with a module list.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.clone(),
        what: "a PEFT adapter config",
        source,
    })?;
    let field = |name: &str| v.get(name).cloned().unwrap_or(serde_json::Value::Null);
    if field("peft_type").as_str() != Some("LORA") {
        return Err(adapter_err(
            dir,
            format!("peft_type {} is not LORA", field("peft_type")),
        ));
    }
    if field("use_dora").as_bool() == Some(true) {
        return Err(adapter_err(dir, "DoRA adapters are not supported".into()));
    }
    for pattern in ["rank_pattern", "alpha_pattern"] {
        if field(pattern).as_object().is_some_and(|m| !m.is_empty()) {
            return Err(adapter_err(dir, format!("{pattern} is not supported")));
        }
    }
    if field("bias").as_str().is_some_and(|b| b != "none") {
        return Err(adapter_err(dir, "only bias \"none\" is supported".into()));
    }
    let rank = field("r")
        .as_u64()
        .filter(|&r| r > 0)
        .ok_or_else(|| adapter_err(dir, "r must be a positive integer".into()))?
        as usize;
    let alpha = field("lora_alpha")
        .as_f64()
        .ok_or_else(|| adapter_err(dir, "lora_alpha must be a number".into()))?;
    let target_modules = match field("target_modules") {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| adapter_err(dir, "target_modules must hold strings".into()))?,
        serde_json::Value::String(s) => parse_text_only_pattern(&s).ok_or_else(|| {
            adapter_err(
                dir,
                format!(
                    "target_modules as a regular expression ({s:?}) is not supported; list the \
                     modules, or use the form .*language_model.*\\.(q_proj|v_proj)"
                ),
            )
        })?,
        _ => return Err(adapter_err(dir, "target_modules is missing".into())),
    };
    Ok(LoraConfig {
        rank,
        alpha,
        target_modules,
        use_rslora: field("use_rslora").as_bool().unwrap_or(false),
    })
}

/// Attaches a fresh adapter, fills B with random values as well (a fresh PEFT adapter has B = 0
/// and would leave outputs unchanged, testing nothing) and exports it.
pub fn write_random_adapter(
    model: &mut Qwen3Vl,
    config: LoraConfig,
    seed: u64,
    out: &Path,
    base_model: &str,
) -> Result<()> {
    model.attach_lora(config, seed)?;
    let mut rng = crate::rng::SeededRng::new(seed ^ 0x5EED);
    for (_, lora) in model.lora_weights() {
        let b = lora.b.as_tensor();
        let shape = b.dims().to_vec();
        let n: usize = shape.iter().product();
        lora.b
            .set(&Tensor::from_vec(rng.normals(n, 0.1), shape, b.device())?)?;
    }
    export_adapter(model, out, base_model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen25_targets_only_the_language_model_and_reads_back() {
        let modules: Vec<String> = ["q_proj", "down_proj"].map(String::from).to_vec();
        let json = target_modules_json(Family::Qwen25Vl, &modules);
        let pattern = json.as_str().expect("a pattern");
        assert_eq!(pattern, r".*language_model.*\.(q_proj|down_proj)");
        assert_eq!(parse_text_only_pattern(pattern), Some(modules.clone()));
        assert_eq!(
            target_modules_json(Family::Qwen3Vl, &modules),
            serde_json::json!(modules)
        );
        assert_eq!(parse_text_only_pattern(r".*\.(q_proj)"), None);
        assert_eq!(
            parse_text_only_pattern(r".*language_model.*\.(q_proj|.*)"),
            None
        );
    }
}
