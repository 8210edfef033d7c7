//! Scripted episodes: a task and a list of actions, where a point may be given as an element
//! of the accessibility tree (`"element": {"role": "button", "name": "Yes"}`) and is resolved
//! against the observation taken just before the step.

use std::path::Path;

use clawdesk_desktop::observe::tree::role_name;
use clawdesk_desktop::{Action, Observation};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// A script file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Script {
    /// The instruction the episode carries out.
    pub task: String,
    /// Read this app's tree (and record it as the episode's app); the focused app if absent.
    #[serde(default)]
    pub app: Option<String>,
    /// The actions in order, as JSON; a point may be given as an element (see [`resolve_step`]).
    pub steps: Vec<serde_json::Value>,
}

/// Which element a step aims at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ElementQuery {
    /// accesskit role in snake case: `button`, `text_input`, `password_input`, `slider`.
    #[serde(default)]
    pub role: Option<String>,
    /// The accessible name, compared ignoring case.
    #[serde(default)]
    pub name: Option<String>,
    /// Which of several matches, in tree order.
    #[serde(default)]
    pub nth: usize,
}

impl Script {
    /// Reads and parses the script at `path`, refusing one with no steps.
    pub fn load(path: &Path) -> Result<Script, RuntimeError> {
        let err = |detail: String| RuntimeError::Script {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let script: Script = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if script.steps.is_empty() {
            return Err(err("it has no steps".into()));
        }
        Ok(script)
    }
}

/// Turns one scripted step into an action on `observation`, resolving `element` keys
/// (`element` for `at`, `from_element`/`to_element` for a drag's ends) to points.
pub fn resolve_step(
    index: usize,
    step: &serde_json::Value,
    observation: &Observation,
) -> Result<Action, RuntimeError> {
    let mut step = step.clone();
    if let Some(obj) = step.as_object_mut() {
        for (key, point_key) in [
            ("element", "at"),
            ("from_element", "from"),
            ("to_element", "to"),
        ] {
            let Some(query) = obj.remove(key) else {
                continue;
            };
            let query: ElementQuery =
                serde_json::from_value(query).map_err(|e| RuntimeError::Script {
                    path: format!("step {index}"),
                    detail: format!("{key}: {e}"),
                })?;
            let point = find_point(index, &query, observation)?;
            obj.insert(
                point_key.to_owned(),
                serde_json::json!({"x": point.x, "y": point.y}),
            );
        }
    }
    let action: Action = serde_json::from_value(step).map_err(|e| RuntimeError::Script {
        path: format!("step {index}"),
        detail: e.to_string(),
    })?;
    action.validate()?;
    Ok(action)
}

fn find_point(
    index: usize,
    query: &ElementQuery,
    observation: &Observation,
) -> Result<clawdesk_desktop::NormPoint, RuntimeError> {
    let describe = || serde_json::to_string(query).unwrap_or_default();
    let Some(tree) = observation.tree.as_ref() else {
        return Err(RuntimeError::NoSuchElement {
            step: index,
            query: describe(),
            available: "(no accessibility tree was read)".into(),
        });
    };
    let matches: Vec<_> = tree
        .elements()
        .into_iter()
        .filter(|e| e.bounds.is_some())
        .filter(|e| query.role.as_deref().is_none_or(|r| role_name(e.role) == r))
        .filter(|e| {
            query
                .name
                .as_deref()
                .is_none_or(|n| e.name.eq_ignore_ascii_case(n))
        })
        .collect();
    matches
        .get(query.nth)
        .and_then(|e| observation.point_of(e))
        .ok_or_else(|| RuntimeError::NoSuchElement {
            step: index,
            query: describe(),
            available: tree.linearise(),
        })
}
