//! The response tokens' log-probabilities as one graph node on the CPU: the head's product,
//! the log-softmax over the vocabulary and the pick of each target token, with a hand-written
//! backward.
//!
//! Composed from candle's ops this is a product, six log-softmax nodes over `[tokens, vocab]`
//! and a gather, and each node's backward allocates temporaries of that size (the maximum's
//! backward builds a mask). In the small bench shape's train step those nodes took 7.5 of the
//! backward's 42 ms (bench/RESULTS.md). Here the forward keeps nothing of that size: the
//! backward makes the logits again, in blocks of rows, so at Qwen's vocabulary of 151,936 a
//! block never holds more than [`BLOCK_VALUES`] of them.
//!
//! Depends on `fused` (the row kernels) and `product` (gemm) only; the composed path in
//! `model` stays the reference it is tested against.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{input, log_sum_exp_row, softmax_row_in_place, with_slice};
use crate::product::{How, product, product_new};

/// Logits per block of rows (16 MB of f32): at least one row, however wide the vocabulary.
const BLOCK_VALUES: usize = 1 << 22;

struct ResponseLogProbs {
    targets: Vec<u32>,
    /// Logits per block; [`BLOCK_VALUES`] but in tests, which make blocks of a few rows.
    block_values: usize,
}

impl ResponseLogProbs {
    /// The rows of each block for `n` rows over a vocabulary of `vocab`.
    fn block_rows(&self, vocab: usize) -> usize {
        (self.block_values / vocab.max(1)).max(1)
    }

    fn check(&self, n: usize, d: usize, vocab: usize, d_head: usize) -> Result<()> {
        if d != d_head {
            candle_core::bail!("response log-probabilities: hidden width {d}, head width {d_head}");
        }
        if self.targets.len() != n {
            candle_core::bail!(
                "response log-probabilities: {} targets for {n} rows",
                self.targets.len()
            );
        }
        if let Some(bad) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("response log-probabilities: token {bad} outside {vocab}");
        }
        Ok(())
    }

    /// Logits of rows `first..first + rows` of `hidden` `[n, d]` against `head` `[vocab, d]`.
    fn logits(hidden: &[f32], head: &[f32], first: usize, rows: usize, d: usize) -> Vec<f32> {
        let vocab = head.len() / d;
        let block = &hidden[first * d..(first + rows) * d];
        product_new(
            (rows, vocab, d),
            How::SET.shared(),
            (block, d, 1),
            (head, 1, d),
        )
    }
}

impl CustomOp2 for ResponseLogProbs {
    fn name(&self) -> &'static str {
        "response-log-probs"
    }

    fn cpu_fwd(
        &self,
        hidden: &CpuStorage,
        hl: &Layout,
        head: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = hl.shape().dims2()?;
        let (vocab, d_head) = wl.shape().dims2()?;
        self.check(n, d, vocab, d_head)?;
        let hidden = input(hidden, hl, self.name())?;
        let head = input(head, wl, self.name())?;
        let mut out = vec![0f32; n];
        let block = self.block_rows(vocab);
        for first in (0..n).step_by(block) {
            let rows = block.min(n - first);
            let logits = Self::logits(hidden, head, first, rows, d);
            logits
                .par_chunks(vocab)
                .zip(out[first..first + rows].par_iter_mut())
                .zip(&self.targets[first..first + rows])
                .for_each(|((row, o), &t)| *o = row[t as usize] - log_sum_exp_row(row));
        }
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// With `g` the output's gradient, row i's logits get `g_i (onehot(t_i) − softmax_i)`;
    /// the hidden rows' and the head's gradients are products with it.
    fn bwd(
        &self,
        hidden: &Tensor,
        head: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = hidden.dims2()?;
        let (vocab, _) = head.dims2()?;
        let (want_hidden, want_head) = (hidden.track_op(), head.track_op());
        if !want_hidden && !want_head {
            return Ok((None, None));
        }
        let g = grad.to_vec1::<f32>()?;
        let (d_hidden, d_head) = with_slice(hidden, |hs| {
            with_slice(head, |ws| {
                let mut d_hidden = if want_hidden {
                    vec![0f32; n * d]
                } else {
                    Vec::new()
                };
                let mut d_head = if want_head {
                    vec![0f32; vocab * d]
                } else {
                    Vec::new()
                };
                let block = self.block_rows(vocab);
                for first in (0..n).step_by(block) {
                    let rows = block.min(n - first);
                    let mut dl = Self::logits(hs, ws, first, rows, d);
                    dl.par_chunks_mut(vocab)
                        .zip(&g[first..first + rows])
                        .zip(&self.targets[first..first + rows])
                        .for_each(|((row, &gi), &t)| {
                            softmax_row_in_place(row, 1.0, false);
                            row.iter_mut().for_each(|p| *p *= -gi);
                            row[t as usize] += gi;
                        });
                    if want_hidden {
                        product(
                            (rows, d, vocab),
                            &mut d_hidden[first * d..(first + rows) * d],
                            How::SET.shared(),
                            (&dl, vocab, 1),
                            (ws, d, 1),
                        );
                    }
                    if want_head {
                        let block_hidden = &hs[first * d..(first + rows) * d];
                        product(
                            (vocab, d, rows),
                            &mut d_head,
                            How::ADD.shared(),
                            (&dl, 1, vocab),
                            (block_hidden, d, 1),
                        );
                    }
                }
                (d_hidden, d_head)
            })
        })??;
        let d_hidden = want_hidden
            .then(|| Tensor::from_vec(d_hidden, (n, d), hidden.device()))
            .transpose()?;
        let d_head = want_head
            .then(|| Tensor::from_vec(d_head, (vocab, d), head.device()))
            .transpose()?;
        Ok((d_hidden, d_head))
    }
}

/// `log softmax(hidden · headᵀ)[i, targets[i]]` for each row i of `hidden` `[n, d]`, with
/// `head` `[vocab, d]`: f32 CPU tensors (see [`crate::fused::applies`]).
pub(crate) fn response_log_probs(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[u32],
) -> Result<Tensor> {
    log_probs_in_blocks(hidden, head, targets, BLOCK_VALUES)
}

fn log_probs_in_blocks(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[u32],
    block_values: usize,
) -> Result<Tensor> {
    let op = ResponseLogProbs {
        targets: targets.to_vec(),
        block_values,
    };
    hidden.contiguous()?.apply_op2(&head.contiguous()?, op)
}

#[cfg(test)]
mod tests {
    use candle_core::{D, Device, Tensor, Var};

    use super::*;

    /// Values in [-scale, scale) from a fixed pattern, so both paths see the same numbers.
    fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
            .map(|x| x * scale)
            .collect()
    }

    /// The composed reference: candle's product, log-softmax and gather.
    fn composed(hidden: &Tensor, head: &Tensor, targets: &[u32]) -> Result<Tensor> {
        let logits = hidden.matmul(&head.t()?)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let index = Tensor::new(targets, hidden.device())?.unsqueeze(1)?;
        logp.gather(&index, 1)?.squeeze(1)
    }

    fn close(ours: &Tensor, theirs: &Tensor, what: &str) -> Result<()> {
        let (a, b) = (
            ours.flatten_all()?.to_vec1::<f32>()?,
            theirs.flatten_all()?.to_vec1::<f32>()?,
        );
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{what} at {i}: {x} vs {y}"
            );
        }
        Ok(())
    }

    /// The log-probabilities and the gradients of the hidden rows and the head (a weighted
    /// sum of the outputs as the loss) against the composed ops, in one block and in blocks
    /// of two rows with a ragged last one; logits large enough that e^x would overflow
    /// without the maximum taken out.
    #[test]
    fn log_probs_and_their_gradients_match_the_composed_ops() -> Result<()> {
        let (n, d, vocab) = (7, 24, 53);
        let dev = Device::Cpu;
        let targets: Vec<u32> = (0..n).map(|i| (i * 17 % vocab) as u32).collect();
        let weights = Tensor::new(values(n, 3, 1.0).as_slice(), &dev)?;
        for block_values in [BLOCK_VALUES, 2 * vocab] {
            for train_head in [true, false] {
                let hidden = Var::from_vec(values(n * d, 1, 4.0), (n, d), &dev)?;
                let head_values = Tensor::from_vec(values(vocab * d, 2, 3.0), (vocab, d), &dev)?;
                let head = Var::from_tensor(&head_values)?;
                let head_t = if train_head {
                    head.as_tensor().clone()
                } else {
                    head_values.clone()
                };
                let ours = log_probs_in_blocks(&hidden, &head_t, &targets, block_values)?;
                let theirs = composed(&hidden, &head_t, &targets)?;
                close(&ours, &theirs, "log-probabilities")?;
                let ours_grads = (&ours * &weights)?.sum_all()?.backward()?;
                let theirs_grads = (&theirs * &weights)?.sum_all()?.backward()?;
                let pick = |g: &candle_core::backprop::GradStore, v: &Var| {
                    g.get(v)
                        .cloned()
                        .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))
                };
                close(
                    &pick(&ours_grads, &hidden)?,
                    &pick(&theirs_grads, &hidden)?,
                    "hidden gradient",
                )?;
                if train_head {
                    close(
                        &pick(&ours_grads, &head)?,
                        &pick(&theirs_grads, &head)?,
                        "head gradient",
                    )?;
                } else {
                    assert!(
                        ours_grads.get(&head).is_none(),
                        "a frozen head got a gradient"
                    );
                }
            }
        }
        Ok(())
    }

    /// A target outside the vocabulary, or a count that does not match the rows, is an error,
    /// not a read past the row.
    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let hidden = Tensor::from_vec(values(2 * 4, 1, 1.0), (2, 4), &dev)?;
        let head = Tensor::from_vec(values(5 * 4, 2, 1.0), (5, 4), &dev)?;
        assert!(response_log_probs(&hidden, &head, &[0, 5]).is_err());
        assert!(response_log_probs(&hidden, &head, &[0]).is_err());
        assert!(response_log_probs(&hidden, &head, &[0, 4]).is_ok());
        Ok(())
    }
}
