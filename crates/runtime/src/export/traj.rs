//! OSWorld's results tree, which its `show_result.py` and the tools built on it read:
//! `<out>/pyautogui/screenshot/<model>/<domain>/<example id>/` per episode, holding
//! `traj.jsonl` (a line per step: `step_num`, `action_timestamp`, `action` as the pyautogui
//! code OSWorld's `pyautogui` action space runs, `response`, `reward`, `done`, `info`,
//! `screenshot_file`), the screenshot after each step, and `result.txt` with the episode's
//! score. ClawDesk's own form of each step (the internal action, outcome, verdict, the
//! screenshot before) rides in `info`. Beside the results, `evaluation_examples/` lists the
//! episodes as OSWorld lists its tasks (`test_all.json`, `examples/<domain>/<id>.json`).
//!
//! ClawDesk has no evaluator that checks an arbitrary app's end state, so `result.txt` says
//! how the episode ended: 1 when the agent carried it to the end it declared, 0 when an action
//! failed or a person stopped it. An episode still running gets no `result.txt`, as OSWorld
//! leaves an unfinished example.

use std::io::Write as _;
use std::path::Path;

use clawdesk_agent::format::{ActionFormat, AgentAction, Frame, Reply};
use clawdesk_desktop::Action;
use clawdesk_store::{Episode, EpisodeStatus, Step, StepKind, Store};
use serde_json::json;

use super::{ExportSummary, copy_blob, empty_folder, episodes, io};
use crate::RuntimeError;

/// OSWorld's action space the trajectories are written in.
pub const ACTION_SPACE: &str = "pyautogui";
/// OSWorld's observation type of the episodes: the policy saw screenshots.
pub const OBSERVATION_TYPE: &str = "screenshot";

/// Writes the GUI episodes (all, or those in `only`) under `out` as OSWorld's results of a
/// model named `model`.
pub fn export_trajectories(
    store: &Store,
    only: &[i64],
    model: &str,
    out: &Path,
    progress: &mut dyn FnMut(&ExportSummary),
) -> Result<ExportSummary, RuntimeError> {
    empty_folder(out)?;
    let model = folder_name(model, "clawdesk");
    let results = out.join(ACTION_SPACE).join(OBSERVATION_TYPE).join(&model);
    let examples = out.join("evaluation_examples");
    let mut listed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut summary = ExportSummary::default();
    for episode in episodes(store, only)? {
        let steps: Vec<_> = store
            .steps(episode.id)?
            .into_iter()
            .filter(|s| s.kind == StepKind::Gui)
            .collect();
        if steps.is_empty() {
            continue;
        }
        let domain = folder_name(episode.app.as_deref().unwrap_or(""), "desktop");
        let id = format!("clawdesk-episode-{}", episode.id.0);
        let dir = results.join(&domain).join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        write_example(&examples, &domain, &id, &episode)?;
        listed.entry(domain).or_default().push(id);
        write_steps(store, &episode, &steps, &dir, &mut summary)?;
        let score = match episode.status {
            EpisodeStatus::Done => Some("1.0"),
            EpisodeStatus::Failed | EpisodeStatus::Stopped => Some("0.0"),
            EpisodeStatus::Running => None,
        };
        if let Some(score) = score {
            let path = dir.join("result.txt");
            std::fs::write(&path, format!("{score}\n")).map_err(|e| io(&path, e))?;
        }
        summary.episodes += 1;
        progress(&summary);
    }
    let path = examples.join("test_all.json");
    if !listed.is_empty() {
        std::fs::write(&path, json_bytes(&json!(listed))).map_err(|e| io(&path, e))?;
    }
    Ok(summary)
}

/// The episode as an OSWorld task file: its id, instruction and app.
fn write_example(
    examples: &Path,
    domain: &str,
    id: &str,
    episode: &Episode,
) -> Result<(), RuntimeError> {
    let dir = examples.join("examples").join(domain);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let example = json!({
        "id": id,
        "snapshot": domain,
        "instruction": episode.task,
        "source": "clawdesk",
        "related_apps": episode.app.iter().collect::<Vec<_>>(),
        "config": [],
        "evaluator": {"func": "clawdesk_episode_status"},
        "clawdesk": {
            "episode": episode.id.0,
            "status": episode.status,
            "started_at_ms": episode.started_at_ms,
            "ended_at_ms": episode.ended_at_ms,
            "session": episode.session,
        },
    });
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, json_bytes(&example)).map_err(|e| io(&path, e))
}

fn write_steps(
    store: &Store,
    episode: &Episode,
    steps: &[Step],
    dir: &Path,
    summary: &mut ExportSummary,
) -> Result<(), RuntimeError> {
    let traj_path = dir.join("traj.jsonl");
    let mut traj =
        std::io::BufWriter::new(std::fs::File::create(&traj_path).map_err(|e| io(&traj_path, e))?);
    let last = steps.len() - 1;
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let at = super::timestamp(step.started_at_ms);
        let mut info = json!({
            "clawdesk_action": step.action,
            "outcome": step.outcome,
            "error": step.error,
            "policy_version": step.policy_version,
        });
        let mut reward = 0;
        if let Some(v) = store.effective_verdict(step.id)? {
            reward = v.score;
            info["verdict"] =
                json!({"source": v.source, "score": v.score, "hint": v.hint, "judge": v.judge});
        }
        let mut screenshot = None;
        for (blob, name) in [
            (&step.after_image, format!("step_{n}_{at}.png")),
            (&step.before_image, format!("step_{n}_{at}_before.png")),
        ] {
            if let Some(blob) = blob {
                copy_blob(store, blob, dir, &name)?;
                summary.images += 1;
                if screenshot.is_none() && name.ends_with(&format!("{at}.png")) {
                    screenshot = Some(name);
                } else {
                    info["before_screenshot_file"] = json!(name);
                }
            }
        }
        // OSWorld's keys, in its order.
        let line = json!({
            "step_num": n,
            "action_timestamp": at,
            "action": pyautogui_code(step),
            "response": step.response.as_ref().and_then(|r| r.get("text").cloned()),
            "reward": reward,
            "done": i == last && episode.status != EpisodeStatus::Running,
            "info": info,
            "screenshot_file": screenshot,
        });
        writeln!(traj, "{line}").map_err(|e| io(&traj_path, e))?;
        summary.steps += 1;
    }
    traj.flush().map_err(|e| io(&traj_path, e))
}

/// The step's action as the pyautogui code OSWorld runs, in the pixels of the screen it was
/// taken on; a comment naming it where pyautogui has no words for it (or it cannot be read),
/// which runs as nothing rather than as a wrong action.
pub fn pyautogui_code(step: &Step) -> String {
    let action: Result<Action, _> = serde_json::from_value(step.action.clone());
    let emitted = match (action, screen_size(&step.surface)) {
        (Ok(action), Some(screen)) => {
            let frame = Frame {
                image: screen,
                screen,
                pointer: None,
            };
            let reply = Reply {
                thought: None,
                actions: vec![AgentAction::Desktop { action }],
            };
            ActionFormat::PyAutoGui
                .emit(&reply, &frame)
                .map(|reply| unfenced(&reply))
                .map_err(|e| e.to_string())
        }
        (Err(e), _) => Err(format!("not an action: {e}")),
        (_, None) => Err("no screen size recorded".into()),
    };
    emitted.unwrap_or_else(|why| {
        format!(
            "# ClawDesk action with no pyautogui form ({why}): {}",
            step.action
        )
    })
}

/// The code inside a model reply's Markdown fence: OSWorld records (and runs) the bare code.
fn unfenced(reply: &str) -> String {
    let mut lines = reply
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("```"));
    if lines.next().is_none() {
        return reply.trim().to_owned();
    }
    lines
        .take_while(|l| !l.trim_start().starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pixel size of the screen a step's surface records (a captured [`Surface`], or the
/// gym's bare `width` and `height`).
///
/// [`Surface`]: clawdesk_desktop::geometry::Surface
pub fn screen_size(surface: &serde_json::Value) -> Option<(u32, u32)> {
    let side = |key: &str| {
        surface[key]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
    };
    Some((side("width")?, side("height")?))
}

/// A name safe as one folder: the model or app's name with anything but letters, digits,
/// `.`, `-` and `_` turned into `_` (a hub id's `/` would otherwise nest folders and hide
/// the episodes from OSWorld's reader).
fn folder_name(name: &str, empty: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        empty.to_owned()
    } else {
        cleaned
    }
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_leaves_its_fence() {
        assert_eq!(
            unfenced("```python\npyautogui.click(1, 2)\n```"),
            "pyautogui.click(1, 2)"
        );
        assert_eq!(
            unfenced("```python\nimport time\ntime.sleep(0.5)\n```"),
            "import time\ntime.sleep(0.5)"
        );
        assert_eq!(unfenced("pyautogui.press('a')"), "pyautogui.press('a')");
    }

    #[test]
    fn names_become_one_folder() {
        assert_eq!(
            folder_name("Qwen/Qwen3-VL-2B-Instruct", "x"),
            "Qwen_Qwen3-VL-2B-Instruct"
        );
        assert_eq!(folder_name("", "desktop"), "desktop");
        assert_eq!(folder_name("..", "desktop"), "desktop");
        assert_eq!(folder_name("gnome-calculator", "x"), "gnome-calculator");
    }
}
