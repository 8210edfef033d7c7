//! Step rules for tasks whose outcome the accessibility tree shows, for the rule judge in
//! tests, benchmarks and practice runs on real apps.

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
        RuleVerdict {
            score: if done { 1 } else { -1 },
            hint: (!done).then(|| hint.clone()),
            reason: format!(
                "the screen {} {text:?} after the step",
                if done { "shows" } else { "does not show" }
            ),
        }
    }
}
