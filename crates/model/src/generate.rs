//! Sampling from the model in Fast mode, returning the generated ids with the log-probability
//! of each under the distribution it was drawn from (what PPO's importance ratio needs).

use candle_core::DType;

use crate::error::{ModelError, Result};
use crate::model::{KvCache, Logits, ModelInput, Qwen3Vl};
use crate::rng::SeededRng;

/// Sampling settings, with HF's order of application: temperature, then top-k, then top-p.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f64,
    /// 1.0 disables nucleus filtering.
    pub top_p: f64,
    /// 0 disables top-k filtering.
    pub top_k: usize,
    /// Seed of the sampler's random stream.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Tokens that end the generation (included in the output).
    pub stop: Vec<u32>,
    /// Alternatives to report per position (OpenAI's `top_logprobs`); 0 reports none.
    pub top_logprobs: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.8,
            top_k: 20,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            top_logprobs: 0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A token from `stop` was generated; it is the last of the output.
    Stop(u32),
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The sequence reached the model's context limit.
    ContextFull,
    /// The caller's `on_token` asked to stop (a stop string, a client that went away).
    Halted,
}

/// A generated response.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generated token ids, stop token included.
    pub tokens: Vec<u32>,
    /// Per token: log-probability under the sampling distribution (temperature-scaled and
    /// truncated); for greedy decoding, under the model's own distribution.
    pub logprobs: Vec<f32>,
    /// Per token, the `top_logprobs` most likely tokens of the same distribution, best first
    /// (empty when none were asked for).
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    /// Why generation ended.
    pub finish: Finish,
}

/// Generates a response to `input`; `on_token` sees each token as it is chosen. Vision
/// placeholder ids are never chosen (see [`crate::Qwen3VlConfig::vision_token_ids`]).
pub fn generate(
    model: &Qwen3Vl,
    cache: &mut KvCache,
    input: &ModelInput,
    sampling: &Sampling,
    lora: bool,
    on_token: &mut dyn FnMut(u32),
) -> Result<Generation> {
    generate_until(model, cache, input, sampling, lora, &mut |token| {
        on_token(token);
        true
    })
}

/// As [`generate`], but `on_token` returns whether to go on: `false` ends the generation
/// after that token with [`Finish::Halted`].
pub fn generate_until(
    model: &Qwen3Vl,
    cache: &mut KvCache,
    input: &ModelInput,
    sampling: &Sampling,
    lora: bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Generation> {
    if !(sampling.temperature >= 0.0 && sampling.temperature.is_finite()) {
        return Err(ModelError::Input(format!(
            "temperature {} must be finite and >= 0",
            sampling.temperature
        )));
    }
    if !(sampling.top_p > 0.0 && sampling.top_p <= 1.0) {
        return Err(ModelError::Input(format!(
            "top_p {} must be in (0, 1]",
            sampling.top_p
        )));
    }
    let limit = model.context_limit();
    let vision_ids = model.config().vision_token_ids();
    let mut rng = SeededRng::new(sampling.seed);
    let mut tokens = Vec::new();
    let mut logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut logits = model
        .prefill(cache, input, lora, Logits::Last)?
        .squeeze(0)?;
    let finish = loop {
        if tokens.len() >= sampling.max_tokens {
            break Finish::MaxTokens;
        }
        let mut values = logits.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for id in vision_ids {
            if let Some(v) = values.get_mut(id as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        let (token, logprob) = choose(&values, sampling, &mut rng)?;
        if sampling.top_logprobs > 0 {
            top_logprobs.push(most_likely(&values, sampling, sampling.top_logprobs));
        }
        tokens.push(token);
        logprobs.push(logprob);
        let go_on = on_token(token);
        if sampling.stop.contains(&token) {
            break Finish::Stop(token);
        }
        if !go_on {
            break Finish::Halted;
        }
        if cache.len() + 1 > limit {
            break Finish::ContextFull;
        }
        if tokens.len() >= sampling.max_tokens {
            break Finish::MaxTokens;
        }
        logits = model.decode(cache, token, lora)?;
    };
    Ok(Generation {
        tokens,
        logprobs,
        top_logprobs,
        finish,
    })
}

/// Picks one token from raw logits; returns it with its log-probability. A logit of -inf
/// is never picked.
pub fn choose(logits: &[f32], sampling: &Sampling, rng: &mut SeededRng) -> Result<(u32, f32)> {
    if logits.is_empty() {
        return Err(ModelError::Input("empty logits".into()));
    }
    if logits.iter().any(|x| x.is_nan()) {
        return Err(ModelError::Input("the model produced NaN logits".into()));
    }
    if sampling.temperature == 0.0 {
        let (best, _) = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc },
            );
        return Ok((best as u32, log_softmax_at(logits, best, 1.0)));
    }
    let (order, weights) = sampling_distribution(logits, sampling);
    let kept_total: f64 = weights.iter().sum();
    let mut draw = rng.uniform() * kept_total;
    let mut pick = weights.len() - 1;
    for (j, w) in weights.iter().enumerate() {
        if draw < *w {
            pick = j;
            break;
        }
        draw -= w;
    }
    let logprob = (weights[pick] / kept_total).ln() as f32;
    Ok((order[pick] as u32, logprob))
}

/// The tokens sampling may pick, most likely first, with unnormalised weights: temperature
/// applied, then top-k, then the smallest prefix whose mass reaches top-p (at least one).
fn sampling_distribution(logits: &[f32], sampling: &Sampling) -> (Vec<usize>, Vec<f64>) {
    let t = sampling.temperature as f32;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if sampling.top_k > 0 && sampling.top_k < order.len() {
        order.truncate(sampling.top_k);
    }
    let max = logits[order[0]] / t;
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] / t - max) as f64).exp())
        .collect();
    // Masked (-inf) and underflowed tokens weigh nothing; were they kept, a draw that rounding
    // carried past the last real weight would land on one.
    let possible = weights.iter().take_while(|w| **w > 0.0).count().max(1);
    order.truncate(possible);
    weights.truncate(possible);
    let total: f64 = weights.iter().sum();
    let mut kept = 0;
    let mut mass = 0.0;
    for w in &weights {
        kept += 1;
        mass += w / total;
        if mass >= sampling.top_p {
            break;
        }
    }
    order.truncate(kept);
    weights.truncate(kept);
    (order, weights)
}

/// The `n` most likely tokens with their log-probabilities under the distribution
/// [`choose`] samples from (temperature-scaled, top-k and top-p truncated; the model's own
/// for greedy), so the chosen token's log-probability matches its entry here.
pub fn most_likely(logits: &[f32], sampling: &Sampling, n: usize) -> Vec<(u32, f32)> {
    if logits.is_empty() || n == 0 || logits.iter().any(|x| x.is_nan()) {
        return Vec::new();
    }
    if sampling.temperature == 0.0 {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(n);
        return order
            .into_iter()
            .map(|i| (i as u32, log_softmax_at(logits, i, 1.0)))
            .collect();
    }
    let (order, weights) = sampling_distribution(logits, sampling);
    let kept_total: f64 = weights.iter().sum();
    order
        .iter()
        .zip(&weights)
        .take(n)
        .map(|(&i, w)| (i as u32, (w / kept_total).ln() as f32))
        .collect()
}

fn log_softmax_at(logits: &[f32], index: usize, t: f32) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x / t));
    let sum: f64 = logits.iter().map(|&x| ((x / t - max) as f64).exp()).sum();
    (logits[index] / t - max) - sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest() {
        let s = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        let (tok, lp) = choose(&[0.0, 3.0, 1.0], &s, &mut SeededRng::new(0)).expect("choose");
        assert_eq!(tok, 1);
        let expected = 3.0 - (1.0f64 + 3f64.exp() + 1f64.exp()).ln();
        assert!((lp as f64 - expected).abs() < 1e-5);
    }

    #[test]
    fn top_k_one_is_deterministic_with_logprob_zero() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            ..Sampling::default()
        };
        for seed in 0..20 {
            let (tok, lp) =
                choose(&[0.5, 0.1, 2.0], &s, &mut SeededRng::new(seed)).expect("choose");
            assert_eq!(tok, 2);
            assert_eq!(lp, 0.0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            ..Sampling::default()
        };
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4 and 3/4
        let mut rng = SeededRng::new(3);
        let n = 4000;
        let ones = (0..n)
            .filter(|_| choose(&logits, &s, &mut rng).expect("choose").0 == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }

    #[test]
    fn the_alternatives_agree_with_the_chosen_tokens_logprob() {
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        for s in [
            Sampling {
                temperature: 0.0,
                ..Sampling::default()
            },
            Sampling {
                temperature: 0.7,
                top_k: 3,
                top_p: 0.95,
                ..Sampling::default()
            },
        ] {
            let mut rng = SeededRng::new(5);
            for _ in 0..50 {
                let (tok, lp) = choose(&logits, &s, &mut rng).expect("choose");
                let top = most_likely(&logits, &s, 4);
                let listed = top
                    .iter()
                    .find(|(t, _)| *t == tok)
                    .expect("chosen is listed");
                assert!((listed.1 - lp).abs() < 1e-5, "{listed:?} vs {lp}");
                assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
            }
        }
        // Greedy reports the model's own distribution: the probabilities of all four sum to 1.
        let greedy = Sampling {
            temperature: 0.0,
            ..Sampling::default()
        };
        let all: f32 = most_likely(&logits, &greedy, 9)
            .iter()
            .map(|(_, lp)| lp.exp())
            .sum();
        assert!((all - 1.0).abs() < 1e-5);
        assert_eq!(most_likely(&logits, &greedy, 2).len(), 2);
    }

    #[test]
    fn a_masked_logit_is_never_drawn() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            ..Sampling::default()
        };
        let logits = [f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY];
        let mut rng = SeededRng::new(2);
        for _ in 0..500 {
            let (tok, lp) = choose(&logits, &s, &mut rng).expect("choose");
            assert!(tok == 1 || tok == 2, "{tok}");
            assert!((lp - 0.5f32.ln()).abs() < 1e-6);
        }
    }

    #[test]
    fn nucleus_drops_the_tail() {
        // probabilities ≈ 0.665, 0.245, 0.090: top_p 0.8 keeps the first two.
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.8,
            ..Sampling::default()
        };
        let mut rng = SeededRng::new(1);
        for _ in 0..500 {
            let (tok, _) = choose(&[2.0, 1.0, 0.0], &s, &mut rng).expect("choose");
            assert_ne!(tok, 2);
        }
    }
}
