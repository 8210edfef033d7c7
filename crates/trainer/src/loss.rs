//! The PPO-style clipped surrogate over a flat batch of response tokens, with exact gradients.
//!
//! Per token t: ρ_t = π_θ(a_t|s) / π_old(a_t|s) against the log-probability recorded at
//! generation time, and loss_t = max(−ρ_t·A_t, −clip(ρ_t, 1−ε_low, 1+ε_high)·A_t). Tokens are
//! averaged within each sample, then samples are averaged. Which branch is the max is decided
//! from the values, so the graph holds only ρ_t (and the optional k3 KL term): clipped tokens
//! add a constant and no gradient, as PPO intends, without relying on how `max` splits ties.

use candle_core::{DType, Tensor};

use crate::error::{Result, TrainerError};

/// PPO's clip range; OpenClaw-RL's ε_low 0.2, ε_high 0.28 by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRange {
    /// ε_low: the ratio is clipped below at 1 − this (for negative advantages).
    pub low: f64,
    /// ε_high: the ratio is clipped above at 1 + this (for positive advantages).
    pub high: f64,
}

impl Default for ClipRange {
    fn default() -> Self {
        Self {
            low: 0.2,
            high: 0.28,
        }
    }
}

/// The objective's settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Objective {
    /// The clip range of the ratio.
    pub clip: ClipRange,
    /// The weight of the k3 KL estimate to the base model; 0 turns it off (the default).
    pub kl_coef: f64,
}

/// The loss and what is reported about it.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// A scalar to call `backward` on.
    pub loss: Tensor,
    /// The surrogate's value (without the KL term).
    pub surrogate: f64,
    /// The KL term's value before weighting, when base log-probabilities were given.
    pub kl_to_base: Option<f64>,
    /// The share of counted tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// The mean of (ρ − 1) − ln ρ over counted tokens: how far the policy moved from the one
    /// that generated the samples.
    pub approx_kl: f64,
    /// Counted tokens (those with a non-zero mask).
    pub tokens: usize,
    /// Samples with at least one counted token.
    pub samples: usize,
}

/// The surrogate loss of a batch.
///
/// `logprobs` is the policy's `[N]` log-probabilities of all response tokens (as
/// `Qwen3Vl::score` returns them, with gradient); `spans` gives each sample's `(start, len)` in
/// it; `old` and `advantages` are per token; `mask` (1 counts, 0 does not) is optional; `base`
/// holds the base model's log-probabilities for the KL term.
pub fn surrogate_loss(
    logprobs: &Tensor,
    spans: &[(usize, usize)],
    old: &[f32],
    advantages: &[f32],
    mask: Option<&[f32]>,
    base: Option<&[f32]>,
    objective: &Objective,
) -> Result<LossParts> {
    let n = logprobs.dims1()?;
    for (what, len) in [
        ("old log-probabilities", old.len()),
        ("advantages", advantages.len()),
    ]
    .into_iter()
    .chain(mask.map(|m| ("mask", m.len())))
    .chain(base.map(|b| ("base log-probabilities", b.len())))
    {
        if len != n {
            return Err(TrainerError::Input(format!("{len} {what} for {n} tokens")));
        }
    }
    let mut covered = 0;
    for &(start, len) in spans {
        if start != covered || len == 0 {
            return Err(TrainerError::Input(format!(
                "spans must tile the tokens in order without empty ones; ({start}, {len}) after {covered}"
            )));
        }
        covered += len;
    }
    if covered != n {
        return Err(TrainerError::Input(format!(
            "spans cover {covered} of {n} tokens"
        )));
    }
    let ClipRange { low, high } = objective.clip;
    if !((0.0..1.0).contains(&low) && high >= 0.0 && high.is_finite()) {
        return Err(TrainerError::Input(format!(
            "clip range ({low}, {high}) is not valid"
        )));
    }
    let new: Vec<f32> = logprobs.to_dtype(DType::F32)?.to_vec1()?;
    for (what, values) in [
        ("policy log-probability", &new[..]),
        ("old log-probability", old),
        ("advantage", advantages),
    ] {
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(TrainerError::NonFinite {
                what,
                detail: bad.to_string(),
            });
        }
    }

    // Weights: a token's share of its sample's mean, times the sample's share of the batch.
    let keep = |t: usize| mask.map_or(1.0, |m| m[t]);
    let counted: Vec<f32> = spans
        .iter()
        .map(|&(s, len)| (s..s + len).map(keep).sum())
        .collect();
    let samples = counted.iter().filter(|c| **c > 0.0).count();
    if samples == 0 {
        return Err(TrainerError::Input(
            "no token of the batch is trainable".into(),
        ));
    }
    let mut weight = vec![0f32; n];
    for (&(s, len), &c) in spans.iter().zip(&counted) {
        if c > 0.0 {
            for (t, w) in weight.iter_mut().enumerate().skip(s).take(len) {
                *w = keep(t) / (c * samples as f32);
            }
        }
    }

    let (lo, hi) = (1.0 - low, 1.0 + high);
    let mut coef = vec![0f32; n];
    let (mut surrogate, mut constant) = (0f64, 0f64);
    let (mut clipped, mut tokens, mut approx_kl) = (0usize, 0usize, 0f64);
    for t in 0..n {
        let w = f64::from(weight[t]);
        if w == 0.0 {
            continue;
        }
        let ratio = f64::from(new[t] - old[t]).exp();
        let a = f64::from(advantages[t]);
        let is_clipped = (a > 0.0 && ratio > hi) || (a < 0.0 && ratio < lo);
        let value = (-ratio * a).max(-ratio.clamp(lo, hi) * a);
        surrogate += w * value;
        if is_clipped {
            clipped += 1;
            constant += w * value;
        } else {
            coef[t] = (-w * a) as f32;
        }
        tokens += 1;
        approx_kl += (ratio - 1.0) - ratio.ln();
    }
    let device = logprobs.device();
    let old_t = Tensor::from_slice(old, n, device)?;
    let coef_t = Tensor::from_slice(&coef, n, device)?;
    let ratio = (logprobs.to_dtype(DType::F32)? - old_t)?.exp()?;
    let mut loss = ((ratio * coef_t)?.sum_all()? + constant)?;

    let kl_to_base = match base {
        Some(base) if objective.kl_coef != 0.0 => {
            // k3: exp(d) − d − 1 with d = log π_base − log π_θ; ≥ 0, unbiased for KL(π_θ‖π_base).
            let d = (Tensor::from_slice(base, n, device)? - logprobs.to_dtype(DType::F32)?)?;
            let k3 = ((d.exp()? - &d)? - 1.0)?;
            let kl = (k3 * Tensor::from_slice(&weight, n, device)?)?.sum_all()?;
            let value = f64::from(kl.to_scalar::<f32>()?);
            loss = (loss + (kl * objective.kl_coef)?)?;
            Some(value)
        }
        _ => None,
    };
    if !surrogate.is_finite() {
        return Err(TrainerError::NonFinite {
            what: "loss",
            detail: surrogate.to_string(),
        });
    }
    Ok(LossParts {
        loss,
        surrogate,
        kl_to_base,
        clip_fraction: clipped as f64 / tokens as f64,
        approx_kl: approx_kl / tokens as f64,
        tokens,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Policy log-probabilities with the given ratios against an old log-probability of ln ½.
    fn setup(ratios: &[f64]) -> (Var, Vec<f32>) {
        let old = vec![0.5f64.ln() as f32; ratios.len()];
        let new: Vec<f32> = ratios.iter().map(|r| (0.5 * r).ln() as f32).collect();
        let var = Var::from_slice(&new, ratios.len(), &Device::Cpu).unwrap();
        (var, old)
    }

    fn run(
        ratios: &[f64],
        spans: &[(usize, usize)],
        adv: &[f32],
        mask: Option<&[f32]>,
    ) -> (LossParts, Vec<f32>) {
        let (var, old) = setup(ratios);
        let parts = surrogate_loss(
            var.as_tensor(),
            spans,
            &old,
            adv,
            mask,
            None,
            &Objective::default(),
        )
        .unwrap();
        let grads = parts.loss.backward().unwrap();
        let grad = grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (parts, grad)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5, "{a} != {b}");
    }

    #[test]
    fn positive_advantage_inside_and_above_the_clip() {
        // ρ = 1.1 (inside) and 1.5 (> 1.28, clipped) with A = +1, one sample of two tokens.
        let (p, g) = run(&[1.1, 1.5], &[(0, 2)], &[1.0, 1.0], None);
        close(p.surrogate, (-1.1 - 1.28) / 2.0);
        close(f64::from(p.loss.to_scalar::<f32>().unwrap()), p.surrogate);
        // d(−ρ/2)/d log π = −ρ/2 for the free token; none for the clipped one.
        close(f64::from(g[0]), -0.55);
        close(f64::from(g[1]), 0.0);
        close(p.clip_fraction, 0.5);
    }

    #[test]
    fn negative_advantage_inside_and_below_the_clip() {
        // A = −1: ρ = 0.7 (< 0.8, clipped: loss 0.8) and 0.9 (inside: loss 0.9).
        let (p, g) = run(&[0.7, 0.9], &[(0, 2)], &[-1.0, -1.0], None);
        close(p.surrogate, (0.8 + 0.9) / 2.0);
        close(f64::from(g[0]), 0.0);
        close(f64::from(g[1]), 0.45);
    }

    #[test]
    fn the_clip_only_binds_on_the_side_that_would_overshoot() {
        // A > 0 with ρ = 0.5 and A < 0 with ρ = 1.5: the unclipped term is the max, with gradient.
        let (p, g) = run(&[0.5, 1.5], &[(0, 1), (1, 1)], &[2.0, -1.0], None);
        close(p.surrogate, (-0.5 * 2.0 + 1.5) / 2.0);
        close(f64::from(g[0]), -0.5 * 2.0 / 2.0);
        close(f64::from(g[1]), 1.5 / 2.0);
        close(p.clip_fraction, 0.0);
    }

    #[test]
    fn tokens_average_within_samples_then_samples_average() {
        // Sample 1: one token with A = 1; sample 2: three tokens with A = 3, one masked out.
        let ratios = [1.0; 4];
        let adv = [1.0, 3.0, 3.0, 3.0];
        let mask = [1.0, 1.0, 0.0, 1.0];
        let (p, g) = run(&ratios, &[(0, 1), (1, 3)], &adv, Some(&mask));
        close(p.surrogate, (-1.0 + -3.0) / 2.0);
        close(f64::from(g[0]), -0.5);
        close(f64::from(g[1]), -0.75);
        close(f64::from(g[2]), 0.0);
        close(f64::from(g[3]), -0.75);
        assert_eq!((p.tokens, p.samples), (3, 2));
        close(p.approx_kl, 0.0);
    }

    #[test]
    fn a_fully_masked_sample_does_not_dilute_the_others() {
        let (p, _) = run(
            &[1.0, 1.0],
            &[(0, 1), (1, 1)],
            &[1.0, 5.0],
            Some(&[1.0, 0.0]),
        );
        close(p.surrogate, -1.0);
        assert_eq!(p.samples, 1);
        let (var, old) = setup(&[1.0]);
        let err = surrogate_loss(
            var.as_tensor(),
            &[(0, 1)],
            &old,
            &[1.0],
            Some(&[0.0]),
            None,
            &Objective::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no token"), "{err}");
    }

    #[test]
    fn k3_kl_to_the_base_adds_its_value_and_gradient() {
        let (var, old) = setup(&[1.0, 1.0]);
        let logp = var.as_tensor().to_vec1::<f32>().unwrap();
        let base = [logp[0], logp[1] - 0.5];
        let objective = Objective {
            kl_coef: 0.1,
            ..Objective::default()
        };
        let p = surrogate_loss(
            var.as_tensor(),
            &[(0, 2)],
            &old,
            &[0.0, 0.0],
            None,
            Some(&base),
            &objective,
        )
        .unwrap();
        let d = -0.5f64;
        let expect = (d.exp() - d - 1.0) / 2.0;
        close(p.kl_to_base.unwrap(), expect);
        close(f64::from(p.loss.to_scalar::<f32>().unwrap()), 0.1 * expect);
        let g = p
            .loss
            .backward()
            .unwrap()
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // d/dlogπ of exp(b − l) − (b − l) − 1 is 1 − exp(b − l).
        close(f64::from(g[0]), 0.0);
        close(f64::from(g[1]), 0.1 * (1.0 - d.exp()) / 2.0);
    }

    #[test]
    fn mismatched_or_non_finite_inputs_are_refused() {
        let (var, old) = setup(&[1.0, 1.0]);
        let o = Objective::default();
        let t = var.as_tensor();
        assert!(matches!(
            surrogate_loss(t, &[(0, 2)], &old[..1], &[1.0, 1.0], None, None, &o),
            Err(TrainerError::Input(_))
        ));
        assert!(matches!(
            surrogate_loss(t, &[(0, 1)], &old, &[1.0, 1.0], None, None, &o),
            Err(TrainerError::Input(_))
        ));
        assert!(matches!(
            surrogate_loss(t, &[(1, 1), (0, 1)], &old, &[1.0, 1.0], None, None, &o),
            Err(TrainerError::Input(_))
        ));
        assert!(matches!(
            surrogate_loss(t, &[(0, 2)], &old, &[1.0, f32::NAN], None, None, &o),
            Err(TrainerError::NonFinite {
                what: "advantage",
                ..
            })
        ));
        let nan = Tensor::new(&[f32::NAN, 0.0], &Device::Cpu).unwrap();
        assert!(matches!(
            surrogate_loss(&nan, &[(0, 2)], &old, &[1.0, 1.0], None, None, &o),
            Err(TrainerError::NonFinite { .. })
        ));
    }
}
