//! The warm start's curriculum on the prompt: which stage of the gym prompt the
//! demonstrations use, when a check moves it on, and when the base weights may learn.
//! `bench probe --prefix-grow` found the order that works: the lookup forms on short
//! sequences, then carries over as the context grows, and a learnable head joins last.

use serde::{Deserialize, Serialize};

use crate::gym::episode::PromptStage;

/// The greedy success, on fresh training tasks without a hint at the current prompt stage, at
/// which the curriculum moves on (the probe's prefix curriculum uses the same threshold).
pub const GROW_AT: f64 = 0.9;

/// Updates between the curriculum's checks (the probe's too).
pub const CHECK_EVERY: usize = 50;

/// Tasks in each curriculum check.
pub const CHECK_TASKS: usize = 50;

/// When the prompt curriculum moved on: what the practice base's report keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurriculumReport {
    /// Each stage trained on, with the update it started at and the check that ended it
    /// (none for the stage training ended in).
    pub stages: Vec<StageReport>,
    /// The update from which the norms and embeddings learned (none: not within the run).
    pub base_from: Option<usize>,
}

/// One stage of the prompt curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// The prompt stage trained on.
    pub stage: PromptStage,
    /// The first update trained at this stage (from 1).
    pub from_step: usize,
    /// The greedy success of the check that passed it.
    pub passed_at: Option<f64>,
}

/// The curriculum's state during a warm start.
#[derive(Debug, Clone, PartialEq)]
pub struct Curriculum {
    report: CurriculumReport,
}

impl Default for Curriculum {
    /// From the shortest prompt, with the base weights held still.
    fn default() -> Self {
        Self {
            report: CurriculumReport {
                stages: vec![StageReport {
                    stage: PromptStage::Lean,
                    from_step: 1,
                    passed_at: None,
                }],
                base_from: None,
            },
        }
    }
}

impl Curriculum {
    /// The prompt stage the next demonstrations use.
    pub fn stage(&self) -> PromptStage {
        self.report
            .stages
            .last()
            .map_or(PromptStage::Full, |s| s.stage)
    }

    /// Whether the base weights trained beside the adapter must stay still.
    pub fn holds_base(&self) -> bool {
        self.report.base_from.is_none()
    }

    /// Whether a check is due after update `step`: every [`CHECK_EVERY`] updates until the
    /// whole prompt has passed one.
    pub fn checks_after(&self, step: usize) -> bool {
        self.holds_base() && step.is_multiple_of(CHECK_EVERY)
    }

    /// Takes the check after update `step` (`right`: its greedy success) into account.
    pub fn record_check(&mut self, step: usize, right: f64) {
        if right < GROW_AT || !self.holds_base() {
            return;
        }
        let stage = self.stage();
        if let Some(current) = self.report.stages.last_mut() {
            current.passed_at = Some(right);
        }
        if stage == PromptStage::Full {
            self.report.base_from = Some(step + 1);
        } else {
            self.report.stages.push(StageReport {
                stage: stage.next(),
                from_step: step + 1,
                passed_at: None,
            });
        }
    }

    /// What the curriculum did, for the practice base's report.
    pub fn into_report(self) -> CurriculumReport {
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_passed_check_adds_a_stage_and_the_last_one_frees_the_base() {
        let mut c = Curriculum::default();
        assert_eq!(c.stage(), PromptStage::Lean);
        assert!(c.holds_base());
        assert!(!c.checks_after(CHECK_EVERY - 1));
        assert!(c.checks_after(CHECK_EVERY));
        // A check below the bar changes nothing.
        c.record_check(50, GROW_AT - 0.01);
        assert_eq!(c.stage(), PromptStage::Lean);
        c.record_check(100, 0.92);
        assert_eq!(c.stage(), PromptStage::Text);
        c.record_check(150, 0.5);
        c.record_check(200, 0.95);
        assert_eq!(c.stage(), PromptStage::Full);
        assert!(c.holds_base());
        c.record_check(250, 1.0);
        assert_eq!(c.stage(), PromptStage::Full);
        assert!(!c.holds_base());
        assert!(!c.checks_after(300), "no checks once the base learns");
        // Checks after that are ignored.
        c.record_check(300, 1.0);
        let report = c.into_report();
        assert_eq!(report.base_from, Some(251));
        let stages: Vec<(PromptStage, usize, Option<f64>)> = report
            .stages
            .iter()
            .map(|s| (s.stage, s.from_step, s.passed_at))
            .collect();
        assert_eq!(
            stages,
            vec![
                (PromptStage::Lean, 1, Some(0.92)),
                (PromptStage::Text, 101, Some(0.95)),
                (PromptStage::Full, 201, Some(1.0)),
            ]
        );
    }
}
