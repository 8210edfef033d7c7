//! The app's settings: one JSON file in the XDG config directory (`~/.config/clawdesk`), every
//! field with a default, checked as a whole before it is saved so the window can name each bad
//! field; and the data folder they choose.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use clawdesk_desktop::StopKeyName;
use clawdesk_model::{DeviceChoice, LoraConfig};
use clawdesk_trainer::LearningChoices;
use serde::{Deserialize, Serialize};

use crate::DeskError;

/// Which judge scores the agent's steps besides the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeKind {
    /// Only the person's approve/reject clicks.
    Person,
    /// The local model votes as judge.
    Local,
    /// An OpenAI-compatible endpoint (vLLM, OpenAI).
    Endpoint,
}

/// Everything a person can set in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeskSettings {
    /// A local model folder or a hub id.
    pub base_model: String,
    /// Where the model runs: auto (a GPU when this build has CUDA and one answers), cpu,
    /// cuda:N.
    pub device: DeviceChoice,
    /// Which judge scores steps alongside the person.
    pub judge: JudgeKind,
    /// The endpoint judge's API root, e.g. `http://127.0.0.1:8000/v1`.
    pub judge_endpoint: String,
    /// The model the endpoint judge asks for.
    pub judge_model: String,
    /// The environment variable holding the endpoint's API key (empty: none).
    pub judge_api_key_env: String,
    /// Judge votes per step, 1 to 15.
    pub votes: usize,
    /// The adapter's LoRA rank, 1 to 512.
    pub lora_rank: usize,
    /// The LoRA alpha; the adapter's output is scaled by alpha / rank.
    pub lora_alpha: f64,
    /// Layers that carry the adapter, as PEFT names them (`q_proj`, `down_proj`, ...).
    pub lora_targets: Vec<String>,
    /// Weight of the Binary RL advantage in the combined method, 0 to 10.
    pub w_rl: f64,
    /// Weight of the OPD (hint) advantage in the combined method, 0 to 10.
    pub w_opd: f64,
    /// The trainer's constant learning rate, in (0, 0.1].
    pub learning_rate: f64,
    /// Judged steps per update.
    pub batch: usize,
    /// Apps the agent may act in (empty: in a sandbox, any app but the guard's deny-list; on
    /// this desktop, a session is refused).
    pub allowed_apps: Vec<String>,
    /// Apps the agent may type into although which of their elements has focus cannot be
    /// read (no accessibility tree); the person's explicit opt-in.
    pub allow_unknown_focus: Vec<String>,
    /// pause, scroll_lock or f12.
    pub stop_key: String,
    /// Where the store lives (empty: the XDG data directory); a change takes effect at the
    /// next start, which opens the store in that folder (a new one if it holds none).
    pub data_dir: String,
    /// Steps the agent may take in one episode, 1 to 1000.
    pub max_steps: usize,
    /// Published adapter versions whose folders are kept (0: all); exported and activated
    /// versions are always kept.
    pub keep_adapters: usize,
    /// Run the agent in a display of its own (Xvfb) rather than on this desktop.
    pub sandbox: bool,
    /// The program opened in the sandbox before the agent starts (empty: none).
    pub launch: String,
}

impl Default for DeskSettings {
    fn default() -> Self {
        DeskSettings {
            base_model: "Qwen/Qwen3-VL-2B-Instruct".into(),
            device: DeviceChoice::Auto,
            // The person's clicks always count and override; the local model scores the rest.
            judge: JudgeKind::Local,
            judge_endpoint: String::new(),
            judge_model: String::new(),
            judge_api_key_env: String::new(),
            votes: 3,
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_targets: LoraConfig::DEFAULT_TARGETS
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
            w_rl: 1.0,
            w_opd: 1.0,
            learning_rate: 1e-5,
            batch: 16,
            allowed_apps: Vec::new(),
            allow_unknown_focus: Vec::new(),
            stop_key: "pause".into(),
            data_dir: String::new(),
            max_steps: 30,
            keep_adapters: 50,
            sandbox: true,
            launch: String::new(),
        }
    }
}

/// One field the window should mark, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The setting's name as the window spells it (`baseModel`, `loraRank`).
    pub field: &'static str,
    /// What is wrong with it, written for the person.
    pub message: String,
}

impl DeskSettings {
    /// Every problem at once, so the person can mend them in one go.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad =
            |field: &'static str, message: String| errors.push(FieldError { field, message });
        if self.base_model.trim().is_empty() {
            bad(
                "baseModel",
                "name a model folder, a hub id such as Qwen/Qwen3-VL-2B-Instruct, or practice \
                 (the tiny practice base)"
                    .into(),
            );
        } else if looks_like_path(&self.base_model) && !Path::new(&self.base_model).is_dir() {
            bad(
                "baseModel",
                format!("the folder {} does not exist", self.base_model),
            );
        }
        if self.judge == JudgeKind::Endpoint {
            if !(self.judge_endpoint.starts_with("http://")
                || self.judge_endpoint.starts_with("https://"))
            {
                bad(
                    "judgeEndpoint",
                    "an endpoint judge needs an http(s) API root, e.g. http://127.0.0.1:8000/v1"
                        .into(),
                );
            }
            if self.judge_model.trim().is_empty() {
                bad("judgeModel", "name the endpoint's model".into());
            }
        }
        if !(1..=15).contains(&self.votes) {
            bad(
                "votes",
                format!("votes per step run from 1 to 15, not {}", self.votes),
            );
        }
        if !(1..=512).contains(&self.lora_rank) {
            bad(
                "loraRank",
                format!("the LoRA rank runs from 1 to 512, not {}", self.lora_rank),
            );
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            bad("loraAlpha", "LoRA alpha must be a positive number".into());
        }
        let known = LoraConfig::DEFAULT_TARGETS;
        if self.lora_targets.is_empty() {
            bad("loraTargets", "choose at least one layer to adapt".into());
        } else if let Some(t) = self
            .lora_targets
            .iter()
            .find(|t| !known.contains(&t.as_str()))
        {
            bad(
                "loraTargets",
                format!("{t:?} is not one of {}", known.join(", ")),
            );
        }
        for (field, w) in [("wRl", self.w_rl), ("wOpd", self.w_opd)] {
            if !(w.is_finite() && (0.0..=10.0).contains(&w)) {
                bad(field, format!("a weight runs from 0 to 10, not {w}"));
            }
        }
        if self.w_rl == 0.0 && self.w_opd == 0.0 {
            bad(
                "wRl",
                "w_rl and w_opd cannot both be 0: nothing would be learned".into(),
            );
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 0.1)
        {
            bad(
                "learningRate",
                format!(
                    "the learning rate lies in (0, 0.1], not {}",
                    self.learning_rate
                ),
            );
        }
        if !(1..=1024).contains(&self.batch) {
            bad(
                "batch",
                format!("a batch holds 1 to 1024 steps, not {}", self.batch),
            );
        }
        if let Err(e) = StopKeyName::from_str(&self.stop_key) {
            bad("stopKey", e.to_string());
        }
        if !self.data_dir.trim().is_empty() && !Path::new(&self.data_dir).is_absolute() {
            bad("dataDir", "the data folder must be an absolute path".into());
        }
        if !(1..=1000).contains(&self.max_steps) {
            bad(
                "maxSteps",
                format!("an episode takes 1 to 1000 steps, not {}", self.max_steps),
            );
        }
        if self.allowed_apps.iter().any(|a| a.trim().is_empty()) {
            bad(
                "allowedApps",
                "an allowed app's name cannot be blank".into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The trainer's choices: the settings' rate, batch and weights over the shared defaults
    /// (the combined method; a weight of 0 leaves one signal out).
    pub fn learning(&self) -> LearningChoices {
        LearningChoices {
            w_rl: self.w_rl as f32,
            w_opd: self.w_opd as f32,
            lr: self.learning_rate,
            batch: self.batch,
            ..LearningChoices::default()
        }
    }

    /// The LoRA the trainer attaches.
    pub fn lora(&self) -> LoraConfig {
        let mut lora = LoraConfig::new(self.lora_rank, self.lora_alpha);
        lora.target_modules = self.lora_targets.clone();
        lora
    }

    /// Where the settings in the config folder `config` live.
    pub fn path_in(config: &Path) -> PathBuf {
        config.join("settings.json")
    }

    /// The saved settings, or the defaults when none were saved; a file that cannot be read
    /// is an error (never silently replaced by defaults).
    pub fn load(config: &Path) -> Result<DeskSettings, DeskError> {
        let path = Self::path_in(config);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeskError::Settings {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeskSettings::default()),
            Err(e) => Err(DeskError::Settings {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// [`load`](Self::load), adopting the settings an earlier version kept in the data folder
    /// `legacy` when the config folder has none: they are copied to the config folder (the
    /// old file stays where it was), so nothing the person set is lost by the move.
    pub fn load_or_adopt(config: &Path, legacy: &Path) -> Result<DeskSettings, DeskError> {
        let old = Self::path_in(legacy);
        if Self::path_in(config).exists() || !old.is_file() {
            return Self::load(config);
        }
        let mut adopted = Self::load(legacy)?;
        // Older versions showed a data folder setting but never used it: the store they wrote
        // is in the default folder, so honouring the old value now would hide it.
        adopted.data_dir = String::new();
        adopted.save(config)?;
        tracing::info!(
            from = %old.display(),
            to = %Self::path_in(config).display(),
            "settings moved to the config folder"
        );
        Ok(adopted)
    }

    /// The data folder the window opens: `$CLAWDESK_DATA_DIR` when set (it outranks the file,
    /// as for every command), else [`chosen_data_folder`](Self::chosen_data_folder).
    pub fn data_folder(&self) -> Result<PathBuf, DeskError> {
        match std::env::var_os("CLAWDESK_DATA_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => Ok(PathBuf::from(dir)),
            None => self.chosen_data_folder(),
        }
    }

    /// The data folder these settings choose, the environment aside: the one set here, else
    /// the XDG data directory (`~/.local/share/clawdesk`).
    pub fn chosen_data_folder(&self) -> Result<PathBuf, DeskError> {
        if !self.data_dir.trim().is_empty() {
            return Ok(PathBuf::from(self.data_dir.trim()));
        }
        directories::ProjectDirs::from("", "", "clawdesk")
            .map(|d| d.data_dir().to_path_buf())
            .ok_or_else(|| DeskError::Settings {
                path: "dataDir".into(),
                detail: "no home directory for the data; choose a data folder".into(),
            })
    }

    /// Writes the settings atomically (a new file renamed over the old), after checking them.
    pub fn save(&self, data: &Path) -> Result<(), DeskError> {
        let path = Self::path_in(data);
        let fail = |e: std::io::Error| DeskError::Settings {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        if let Err(errors) = self.validate() {
            return Err(DeskError::Settings {
                path: path.display().to_string(),
                detail: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        let json = serde_json::to_vec_pretty(self).map_err(|e| DeskError::Settings {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        std::fs::create_dir_all(data).map_err(fail)?;
        let mut file = tempfile::NamedTempFile::new_in(data).map_err(fail)?;
        std::io::Write::write_all(&mut file, &json).map_err(fail)?;
        file.as_file().sync_all().map_err(fail)?;
        file.persist(&path).map_err(|e| fail(e.error))?;
        Ok(())
    }
}

/// Where the app's settings live: `$CLAWDESK_CONFIG_DIR` when set, else the XDG config
/// directory (`$XDG_CONFIG_HOME/clawdesk`, `~/.config/clawdesk`).
pub fn config_dir() -> Result<PathBuf, DeskError> {
    if let Some(dir) = std::env::var_os("CLAWDESK_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "clawdesk")
        .map(|d| d.config_dir().to_path_buf())
        .ok_or_else(|| DeskError::Settings {
            path: "~/.config/clawdesk".into(),
            detail: "no home directory to keep the settings in; set CLAWDESK_CONFIG_DIR".into(),
        })
}

/// What the person is told when a saved data folder differs from the one in use: which store
/// the next start opens there, and where the current one stays; `overridden` when
/// `$CLAWDESK_DATA_DIR` outranks the setting in this environment.
pub fn data_folder_notice(in_use: &Path, chosen: &Path, overridden: bool) -> Option<String> {
    if in_use == chosen {
        return None;
    }
    if overridden {
        return Some(format!(
            "CLAWDESK_DATA_DIR is set to {} where ClawDesk runs, and it outranks this setting: \
             unset it for the next start to use {}.",
            in_use.display(),
            chosen.display()
        ));
    }
    Some(if clawdesk_store::Store::exists_in(chosen) {
        format!(
            "At the next start ClawDesk opens the store already in {}. The one in {} stays \
             there, untouched.",
            chosen.display(),
            in_use.display()
        )
    } else {
        format!(
            "At the next start ClawDesk makes a new, empty store in {}. Your episodes and \
             adapters stay in {}; set the folder back to use them again.",
            chosen.display(),
            in_use.display()
        )
    })
}

/// A model name with a slash may be a hub id (`Qwen/Qwen3-VL-2B-Instruct`); one starting with
/// `/`, `.` or `~` is a folder.
fn looks_like_path(model: &str) -> bool {
    model.starts_with('/') || model.starts_with('.') || model.starts_with('~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_an_older_version_kept_in_the_data_folder_are_adopted_not_lost() {
        let (config, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old = DeskSettings {
            votes: 7,
            data_dir: "/old/never/used".into(),
            ..DeskSettings::default()
        };
        old.save(data.path()).unwrap();
        // Copied, but for the data folder older versions never read (their store is where
        // the default points).
        let adopted = DeskSettings {
            data_dir: String::new(),
            ..old.clone()
        };
        assert_eq!(
            DeskSettings::load_or_adopt(config.path(), data.path()).unwrap(),
            adopted
        );
        assert_eq!(
            DeskSettings::load(config.path()).unwrap(),
            adopted,
            "copied"
        );
        assert!(
            DeskSettings::path_in(data.path()).exists(),
            "the old file stays"
        );
        // Once the config folder has settings, they win over the old file.
        let newer = DeskSettings {
            votes: 9,
            ..DeskSettings::default()
        };
        newer.save(config.path()).unwrap();
        assert_eq!(
            DeskSettings::load_or_adopt(config.path(), data.path()).unwrap(),
            newer
        );
    }

    #[test]
    fn a_new_data_folder_is_announced_as_an_empty_or_existing_store() {
        let root = tempfile::tempdir().unwrap();
        let (in_use, chosen) = (root.path().join("a"), root.path().join("b"));
        assert_eq!(data_folder_notice(&in_use, &in_use, false), None);
        let fresh = data_folder_notice(&in_use, &chosen, false).unwrap();
        assert!(
            fresh.contains("new, empty store") && fresh.contains("stay in"),
            "{fresh}"
        );
        clawdesk_store::Store::open(&chosen).unwrap();
        let existing = data_folder_notice(&in_use, &chosen, false).unwrap();
        assert!(
            existing.contains("opens the store already in"),
            "{existing}"
        );
        let env = data_folder_notice(&in_use, &chosen, true).unwrap();
        assert!(env.contains("CLAWDESK_DATA_DIR"), "{env}");
        let chosen_here = DeskSettings {
            data_dir: chosen.display().to_string(),
            ..DeskSettings::default()
        };
        assert_eq!(chosen_here.chosen_data_folder().unwrap(), chosen);
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            DeskSettings::load(dir.path()).unwrap(),
            DeskSettings::default()
        );
        DeskSettings::default().validate().unwrap();
        let s = DeskSettings {
            votes: 5,
            allowed_apps: vec!["mousepad".into()],
            ..DeskSettings::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(DeskSettings::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn every_bad_field_is_named_and_nothing_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let s = DeskSettings {
            base_model: "/no/such/model".into(),
            judge: JudgeKind::Endpoint,
            judge_endpoint: "localhost:8000".into(),
            votes: 0,
            lora_rank: 0,
            lora_targets: vec!["q_proj".into(), "lm_head".into()],
            w_rl: 0.0,
            w_opd: 0.0,
            learning_rate: f64::NAN,
            stop_key: "escape".into(),
            data_dir: "relative/dir".into(),
            ..DeskSettings::default()
        };
        let errors = s.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        for field in [
            "baseModel",
            "judgeEndpoint",
            "judgeModel",
            "votes",
            "loraRank",
            "loraTargets",
            "wRl",
            "learningRate",
            "stopKey",
            "dataDir",
        ] {
            assert!(fields.contains(&field), "{field} in {errors:?}");
        }
        assert!(s.save(dir.path()).is_err());
        assert!(!DeskSettings::path_in(dir.path()).exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(DeskSettings::path_in(dir.path()), b"{ not json").unwrap();
        let err = DeskSettings::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("settings.json"), "{err}");
    }
}
