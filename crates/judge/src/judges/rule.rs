//! A judge that a task supplies: a rule that checks the step against the task's known answer
//! (the gym's verifiers), exact and free.

use futures::future::BoxFuture;

use crate::case::StepCase;
use crate::error::Result;
use crate::judge::{Judge, Judgement};
use crate::votes::Vote;

/// What a rule says of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVerdict {
    /// +1, -1, or 0 when the rule cannot tell.
    pub score: i8,
    /// A hindsight hint; kept even when short, since a rule's hint is exact.
    pub hint: Option<String>,
    /// Why, in words, for the timeline.
    pub reason: String,
}

/// A task's check of one step.
pub trait StepRule: Send + Sync {
    /// Scores one step.
    fn check(&self, case: &StepCase) -> RuleVerdict;
}

impl<F> StepRule for F
where
    F: Fn(&StepCase) -> RuleVerdict + Send + Sync,
{
    fn check(&self, case: &StepCase) -> RuleVerdict {
        self(case)
    }
}

/// A rule as a judge.
pub struct RuleJudge<R> {
    rule: R,
    name: String,
}

impl<R: StepRule> RuleJudge<R> {
    /// `name` identifies the rule (and its version) in stored verdicts.
    pub fn new(name: impl Into<String>, rule: R) -> Self {
        Self {
            rule,
            name: format!("rule {}", name.into()),
        }
    }
}

impl<R: StepRule> Judge for RuleJudge<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn judge<'a>(&'a self, case: &'a StepCase) -> BoxFuture<'a, Result<Judgement>> {
        Box::pin(async move {
            let verdict = self.rule.check(case);
            let score = verdict.score.signum();
            let vote = Vote {
                score: (score != 0).then_some(score),
                hint: verdict.hint.clone(),
                problem: (score == 0).then(|| "the rule could not tell".to_owned()),
                raw: verdict.reason,
            };
            let mut judgement = Judgement::from_votes(vec![vote]);
            // A rule's hint is exact: keep it even when short.
            judgement.hint = verdict.hint;
            Ok(judgement)
        })
    }
}
