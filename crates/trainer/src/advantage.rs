//! Which samples train, and on what: the sample rules of the combined method and the per-token
//! advantages of Binary RL, OPD and their sum.

use crate::error::{Result, TrainerError};

/// The learning signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A = r on every token of the step.
    BinaryRl,
    /// A_t = log π_teacher(a_t | s + hint) − log π_old(a_t | s).
    Opd,
    /// A_t = w_opd·gap_t + w_rl·r.
    Combined,
}

/// What the OPD teacher is compared with the student on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpdForm {
    /// The sampled token alone: A_t = log π_T(a_t) − log π_old(a_t), the first paper's form.
    Token,
    /// The student's `k` likeliest tokens at each position, weighted by its share of them
    /// (the revised OpenClaw-RL; k = 4 was best there). See [`crate::top_k`].
    TopK {
        /// How many of the student's likeliest tokens.
        k: usize,
    },
}

impl OpdForm {
    /// The revised paper's default: top-4.
    pub const DEFAULT: OpdForm = OpdForm::TopK { k: 4 };

    /// `0` is the sampled-token form, any other number that many of the likeliest tokens.
    pub fn from_k(k: usize) -> OpdForm {
        if k == 0 {
            OpdForm::Token
        } else {
            OpdForm::TopK { k }
        }
    }
}

impl std::fmt::Display for OpdForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpdForm::Token => f.write_str("sampled token"),
            OpdForm::TopK { k } => write!(f, "top-{k}"),
        }
    }
}

/// The gap clip C of GUI steps in the revised OpenClaw-RL (its personal-agent track uses 1).
pub const GUI_GAP_CLIP: f32 = 2.0;

/// How advantages are formed.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvantageSettings {
    /// Which learning signal the advantages carry.
    pub method: Method,
    /// The weight of the reward term in the combined method (the others ignore it).
    pub w_rl: f32,
    /// The weight of the teacher gap in the combined method (the others ignore it).
    pub w_opd: f32,
    /// Clip each teacher gap to ±this (the revised OpenClaw-RL: 2 for GUI steps, 1 for a
    /// personal agent's); `None` leaves it unclipped.
    pub opd_clip: Option<f32>,
    /// What the teacher is compared on: the sampled token or the student's top-k.
    pub opd_form: OpdForm,
}

impl Default for AdvantageSettings {
    fn default() -> Self {
        Self {
            method: Method::Combined,
            w_rl: 1.0,
            w_opd: 1.0,
            opd_clip: Some(GUI_GAP_CLIP),
            opd_form: OpdForm::DEFAULT,
        }
    }
}

/// What a sample trains on under the sample rules, when it trains at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// The reward term on every token (already weighted in the combined method).
    pub reward: f32,
    /// The weight of the teacher's term; 0 when it does not apply.
    pub teacher_weight: f32,
}

/// The sample rules: Binary RL needs a decided reward, OPD a teacher, combined either (hint
/// and ±1 → both terms; hint only → r = 0; ±1 only → no teacher term). `None`: dropped.
/// A reward of 0 counts as undecided.
pub fn sample_rule(
    settings: &AdvantageSettings,
    reward: Option<f32>,
    has_teacher: bool,
) -> Option<Rule> {
    let reward = reward.filter(|r| *r != 0.0);
    let (reward, teacher_weight) = match (settings.method, reward, has_teacher) {
        (Method::BinaryRl, Some(r), _) => (r, 0.0),
        (Method::BinaryRl, None, _) => return None,
        (Method::Opd, _, true) => (0.0, 1.0),
        (Method::Opd, _, false) => return None,
        (Method::Combined, r, true) => (settings.w_rl * r.unwrap_or(0.0), settings.w_opd),
        (Method::Combined, Some(r), false) => (settings.w_rl * r, 0.0),
        (Method::Combined, None, false) => return None,
    };
    Some(Rule {
        reward,
        teacher_weight,
    })
}

/// What is known of one generated response.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The step's reward: the judge's (or person's) ±1, or a standardised value; `None` or 0
    /// when no verdict decided.
    pub reward: Option<f32>,
    /// Per token, the log-probability recorded when the response was generated.
    pub old_logprobs: &'a [f32],
    /// Per token, the teacher's log-probability with the hint in context; `None` without a hint.
    pub teacher_logprobs: Option<&'a [f32]>,
}

/// A sample's per-token advantages, and which terms it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenAdvantages {
    /// The advantage of each response token, in order.
    pub values: Vec<f32>,
    /// The reward term applied (after the sample rules).
    pub reward: f32,
    /// The mean teacher gap over the tokens, when there was a teacher.
    pub mean_gap: Option<f32>,
}

/// Applies the sample rules and builds the advantages; `Ok(None)` for a sample that does not
/// train under `settings` (Binary RL without a decided reward, OPD without a hint, combined with
/// neither).
pub fn token_advantages(
    sample: &Sample<'_>,
    settings: &AdvantageSettings,
) -> Result<Option<TokenAdvantages>> {
    let n = sample.old_logprobs.len();
    if n == 0 {
        return Err(TrainerError::Input(
            "a sample has no response tokens".into(),
        ));
    }
    let reward = sample.reward.filter(|r| *r != 0.0);
    if let Some(r) = reward
        && !r.is_finite()
    {
        return Err(TrainerError::NonFinite {
            what: "reward",
            detail: r.to_string(),
        });
    }
    let gaps = match sample.teacher_logprobs {
        Some(teacher) => {
            if teacher.len() != n {
                return Err(TrainerError::Input(format!(
                    "{} teacher log-probabilities for {n} response tokens",
                    teacher.len()
                )));
            }
            let gaps: Vec<f32> = teacher
                .iter()
                .zip(sample.old_logprobs)
                .map(|(t, o)| {
                    let gap = t - o;
                    match settings.opd_clip {
                        Some(c) => gap.clamp(-c, c),
                        None => gap,
                    }
                })
                .collect();
            if let Some(bad) = gaps.iter().find(|g| !g.is_finite()) {
                return Err(TrainerError::NonFinite {
                    what: "teacher gap",
                    detail: bad.to_string(),
                });
            }
            Some(gaps)
        }
        None => None,
    };
    let mean_gap = gaps
        .as_ref()
        .map(|g| g.iter().sum::<f32>() / g.len() as f32);
    let Some(Rule {
        reward: reward_term,
        teacher_weight: gap_weight,
    }) = sample_rule(settings, reward, gaps.is_some())
    else {
        return Ok(None);
    };
    let values = match &gaps {
        Some(gaps) if gap_weight != 0.0 => {
            gaps.iter().map(|g| gap_weight * g + reward_term).collect()
        }
        _ => vec![reward_term; n],
    };
    Ok(Some(TokenAdvantages {
        values,
        reward: reward_term,
        mean_gap,
    }))
}

/// Step-wise standardisation: z-scores each reward within its group (same task, same step
/// index, several rollouts). A group whose rewards are all equal carries no signal and its
/// samples get `None` (dropped), as in OpenClaw-RL's GUI track; so does a missing reward.
pub fn standardise<K: PartialEq>(samples: &[(K, Option<f32>)]) -> Vec<Option<f32>> {
    samples
        .iter()
        .map(|(key, reward)| {
            let r = (*reward)?;
            let group: Vec<f32> = samples
                .iter()
                .filter(|(k, _)| k == key)
                .filter_map(|(_, r)| *r)
                .collect();
            let n = group.len() as f32;
            let mean = group.iter().sum::<f32>() / n;
            let var = group.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n;
            (var > 1e-12).then(|| (r - mean) / var.sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(method: Method) -> AdvantageSettings {
        AdvantageSettings {
            method,
            w_rl: 1.0,
            w_opd: 1.0,
            opd_clip: None,
            opd_form: OpdForm::Token,
        }
    }

    const OLD: [f32; 3] = [-1.0, -2.0, -0.5];
    const TEACHER: [f32; 3] = [-0.5, -3.0, -0.5];

    fn sample(reward: Option<f32>, teacher: bool) -> Sample<'static> {
        Sample {
            reward,
            old_logprobs: &OLD,
            teacher_logprobs: teacher.then_some(&TEACHER[..]),
        }
    }

    fn values(s: &Sample<'_>, m: &AdvantageSettings) -> Option<Vec<f32>> {
        token_advantages(s, m).unwrap().map(|a| a.values)
    }

    #[test]
    fn binary_rl_uses_the_reward_on_every_token() {
        let m = settings(Method::BinaryRl);
        assert_eq!(values(&sample(Some(-1.0), true), &m), Some(vec![-1.0; 3]));
        assert_eq!(values(&sample(None, true), &m), None);
        assert_eq!(values(&sample(Some(0.0), true), &m), None);
    }

    #[test]
    fn opd_uses_the_teacher_gap() {
        let m = settings(Method::Opd);
        assert_eq!(
            values(&sample(Some(1.0), true), &m),
            Some(vec![0.5, -1.0, 0.0])
        );
        assert_eq!(values(&sample(Some(1.0), false), &m), None);
        let clipped = AdvantageSettings {
            opd_clip: Some(0.25),
            ..m
        };
        assert_eq!(
            values(&sample(None, true), &clipped),
            Some(vec![0.25, -0.25, 0.0])
        );
    }

    #[test]
    fn combined_follows_the_sample_rules() {
        let m = AdvantageSettings {
            w_rl: 2.0,
            w_opd: 0.5,
            ..settings(Method::Combined)
        };
        // Hint and ±1: both terms.
        let a = token_advantages(&sample(Some(1.0), true), &m)
            .unwrap()
            .unwrap();
        assert_eq!(a.values, vec![2.25, 1.5, 2.0]);
        assert_eq!((a.reward, a.mean_gap), (2.0, Some(-0.5 / 3.0)));
        // Hint only: r = 0.
        assert_eq!(values(&sample(None, true), &m), Some(vec![0.25, -0.5, 0.0]));
        // ±1 only: the gap term is 0.
        assert_eq!(values(&sample(Some(-1.0), false), &m), Some(vec![-2.0; 3]));
        // Neither: dropped.
        assert_eq!(values(&sample(None, false), &m), None);
    }

    #[test]
    fn bad_signals_are_errors_not_advantages() {
        let m = settings(Method::Combined);
        let nan = [f32::NAN, 0.0, 0.0];
        let s = Sample {
            reward: None,
            old_logprobs: &OLD,
            teacher_logprobs: Some(&nan),
        };
        assert!(matches!(
            token_advantages(&s, &m),
            Err(TrainerError::NonFinite { .. })
        ));
        let short = [0.0];
        let s = Sample {
            teacher_logprobs: Some(&short),
            ..s
        };
        assert!(matches!(
            token_advantages(&s, &m),
            Err(TrainerError::Input(_))
        ));
        let s = sample(Some(f32::INFINITY), false);
        assert!(token_advantages(&s, &m).is_err());
        let empty = Sample {
            reward: Some(1.0),
            old_logprobs: &[],
            teacher_logprobs: None,
        };
        assert!(token_advantages(&empty, &m).is_err());
    }

    #[test]
    fn standardisation_is_per_group_and_drops_flat_groups() {
        let z = standardise(&[
            ("a", Some(1.0)),
            ("a", Some(-1.0)),
            ("b", Some(1.0)),
            ("b", Some(1.0)),
            ("a", None),
            ("c", Some(3.0)),
            ("c", Some(1.0)),
            ("c", Some(2.0)),
        ]);
        assert_eq!(z[0], Some(1.0));
        assert_eq!(z[1], Some(-1.0));
        assert_eq!((z[2], z[3], z[4]), (None, None, None));
        let sd = (2.0f32 / 3.0).sqrt();
        assert!((z[5].unwrap() - 1.0 / sd).abs() < 1e-6);
        assert!((z[7].unwrap()).abs() < 1e-6);
    }
}
