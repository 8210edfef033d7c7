//! Step rules for tasks whose outcome the accessibility tree shows, for the rule judge in
//! tests, benchmarks and practice runs on real apps.

use clawdesk_desktop::AccessTree;
use clawdesk_judge::{RuleVerdict, StepCase};

/// +1 once `text` appears in the tree after the step, else −1 with `hint`.
pub fn text_appears(
    text: impl Into<String>,
    hint: impl Into<String>,
) -> impl Fn(&StepCase) -> RuleVerdict + Send + Sync {
    let (text, hint) = (text.into(), hint.into());
    move |case: &StepCase| {
        let done = case
            .after_tree
            .as_ref()
            .is_some_and(|t| t.to_string().contains(&text));
        let shows = if done { "shows" } else { "does not show" };
        let reason = format!("the screen {shows} {text:?} after the step");
        verdict(done, &hint, reason)
    }
}

/// +1 once an element after the step is named or holds exactly `text` (a calculator's result,
/// a field's content), else −1 with `hint`. Unlike [`text_appears`] it reads elements, so a
/// number never matches inside a coordinate or an id.
pub fn element_shows(
    text: impl Into<String>,
    hint: impl Into<String>,
) -> impl Fn(&StepCase) -> RuleVerdict + Send + Sync {
    let (text, hint) = (text.into(), hint.into());
    move |case: &StepCase| {
        let tree = case
            .after_tree
            .clone()
            .and_then(|v| serde_json::from_value::<AccessTree>(v).ok())
            .map(|mut t| {
                t.reindex();
                t
            });
        let done = tree.is_some_and(|t| {
            t.elements().iter().any(|e| {
                e.name.trim() == text || e.value.as_deref().map(str::trim) == Some(text.as_str())
            })
        });
        let which = if done { "an" } else { "no" };
        let reason = format!("{which} element shows {text:?} after the step");
        verdict(done, &hint, reason)
    }
}

/// +1, or −1 with the hint.
fn verdict(done: bool, hint: &str, reason: String) -> RuleVerdict {
    RuleVerdict {
        score: if done { 1 } else { -1 },
        hint: (!done).then(|| hint.to_owned()),
        reason,
    }
}
