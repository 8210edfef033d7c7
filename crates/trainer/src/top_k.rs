//! Top-k OPD, the revised OpenClaw-RL distillation: at every response position the teacher
//! (the base with the hint in context) is compared with the student not on the sampled token
//! alone but on the student's k likeliest tokens, each weighted by the student's probability
//! among those k, the log-probability gap clipped to ±C. Where several judges wrote hints, the
//! teacher context kept is the one whose own top-k overlaps the student's most.
//!
//! For position t and each v in the student's top-k S_t:
//! w_v = softmax over S_t of log π_old(v), A_v = w_v · clip(log π_T(v) − log π_old(v), −C, C),
//! and the loss is the clipped surrogate of each (t, v) summed over v, averaged over the
//! sample's positions. Log-probabilities are over the whole vocabulary (only the weights are
//! renormalised over S_t). π_old is the policy at the update, before its step: top-k is taken
//! from the update's own forward pass, as OpenClaw-RL recomputes it on the trainer's weights.
//! So the ratio of this term is 1 in value and its PPO clip never acts; with several optimiser
//! steps per batch (`epochs`), each step takes the top-k afresh, and this term, unlike the
//! sampled tokens' (whose π_old is the generation-time policy), is not held near the policy
//! that sampled. Holding it would need the top-k kept from before the first step.
//!
//! Pure arithmetic on host values: no model, no candle.

/// A teacher's values for one sample under one hint.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherTopK {
    /// `[positions × k]`: the teacher's log-probabilities at the student's top-k.
    pub at_student: Vec<f32>,
    /// `[positions × k]`: the teacher's own top-k token ids.
    pub own: Vec<u32>,
}

/// What the top-k term is for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TopKAdvantages {
    /// `[positions × k]`: A_v, scaled by k so that the surrogate's mean over the sample's
    /// `positions × k` entries is the per-position sum over S_t averaged over positions.
    pub scaled: Vec<f32>,
    /// The mean over positions of Σ_v w_v · clipped gap: the expected gap under the student.
    pub mean_gap: f32,
}

/// The advantages of the top-k term for one sample.
///
/// `student` is `[positions × k]` of the student's log-probabilities at its top-k, `teacher`
/// the teacher's at the same ids; `clip` is C (`None`: unclipped).
pub fn advantages(
    student: &[f32],
    teacher: &[f32],
    k: usize,
    clip: Option<f32>,
) -> Result<TopKAdvantages, String> {
    if k == 0 || student.is_empty() || !student.len().is_multiple_of(k) {
        return Err(format!(
            "{} student values do not make rows of {k}",
            student.len()
        ));
    }
    if teacher.len() != student.len() {
        return Err(format!(
            "{} teacher values for {} student values",
            teacher.len(),
            student.len()
        ));
    }
    if let Some(bad) = student.iter().chain(teacher).find(|v| !v.is_finite()) {
        return Err(format!("a log-probability is {bad}"));
    }
    let positions = student.len() / k;
    let mut scaled = Vec::with_capacity(student.len());
    let mut gap_sum = 0f64;
    for (s, t) in student.chunks(k).zip(teacher.chunks(k)) {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = s.iter().map(|v| f64::from(v - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        for ((e, sv), tv) in exp.iter().zip(s).zip(t) {
            let w = e / total;
            let gap = f64::from(tv - sv);
            let gap = match clip {
                Some(c) => gap.clamp(-f64::from(c), f64::from(c)),
                None => gap,
            };
            gap_sum += w * gap;
            scaled.push((w * gap * k as f64) as f32);
        }
    }
    Ok(TopKAdvantages {
        scaled,
        mean_gap: (gap_sum / positions as f64) as f32,
    })
}

/// How many of the student's top-k the teacher's own top-k shares, summed over positions.
pub fn overlap(student: &[u32], teacher: &[u32], k: usize) -> usize {
    student
        .chunks(k)
        .zip(teacher.chunks(k))
        .map(|(s, t)| s.iter().filter(|id| t.contains(id)).count())
        .sum()
}

/// The hint to keep: the candidate whose teacher top-k overlaps the student's most over the
/// whole response; on a tie the earlier (candidates come shortest hint first). `None` when
/// there is no candidate.
pub fn choose_hint(student: &[u32], candidates: &[TeacherTopK], k: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let o = overlap(student, &c.own, k);
        if best.is_none_or(|(_, b)| o > b) {
            best = Some((i, o));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn advantages_weight_each_gap_by_the_students_share_of_its_top_k() {
        // One position, k = 2: the student gives 0.5 and 0.3, the teacher 0.2 and 0.6.
        let s = [0.5f32.ln(), 0.3f32.ln()];
        let t = [0.2f32.ln(), 0.6f32.ln()];
        let a = advantages(&s, &t, 2, None).expect("advantages");
        // w = (0.625, 0.375); gaps ln 0.4 = -0.916291, ln 2 = 0.693147.
        let (a0, a1) = (0.625 * 0.4f32.ln(), 0.375 * 2f32.ln());
        assert!(close(a.scaled[0], 2.0 * a0), "{:?}", a.scaled);
        assert!(close(a.scaled[1], 2.0 * a1), "{:?}", a.scaled);
        assert!(close(a.mean_gap, a0 + a1), "{}", a.mean_gap);
        // Clipped at C = 0.5: gaps become -0.5 and 0.5.
        let c = advantages(&s, &t, 2, Some(0.5)).expect("advantages");
        assert!(close(c.scaled[0], 2.0 * 0.625 * -0.5), "{:?}", c.scaled);
        assert!(close(c.scaled[1], 2.0 * 0.375 * 0.5), "{:?}", c.scaled);
        assert!(close(c.mean_gap, -0.125), "{}", c.mean_gap);
    }

    #[test]
    fn the_mean_gap_averages_positions_and_bad_input_is_refused() {
        // Two positions, k = 1: the weight is 1 and the gap is the plain difference.
        let a = advantages(&[-1.0, -2.0], &[-0.5, -4.0], 1, Some(1.0)).expect("advantages");
        assert_eq!(a.scaled, [0.5, -1.0]);
        assert!(close(a.mean_gap, -0.25));
        assert!(advantages(&[-1.0, -2.0, -3.0], &[-1.0, -2.0, -3.0], 2, None).is_err());
        assert!(advantages(&[-1.0, -2.0], &[-1.0], 2, None).is_err());
        assert!(advantages(&[-1.0, f32::NAN], &[-1.0, -2.0], 2, None).is_err());
    }

    #[test]
    fn the_hint_kept_overlaps_most_and_ties_go_to_the_shorter() {
        let student = [1, 2, 3, 4, 5, 6];
        let first = TeacherTopK {
            at_student: vec![0.0; 6],
            own: vec![1, 9, 9, 4, 9, 9],
        };
        let second = TeacherTopK {
            at_student: vec![0.0; 6],
            own: vec![3, 2, 9, 6, 5, 4],
        };
        assert_eq!(overlap(&student, &first.own, 3), 2);
        assert_eq!(overlap(&student, &second.own, 3), 5);
        assert_eq!(
            choose_hint(&student, &[first.clone(), second.clone()], 3),
            Some(1)
        );
        assert_eq!(choose_hint(&student, &[second.clone(), second], 3), Some(0));
        assert_eq!(choose_hint(&student, &[], 3), None);
    }
}
