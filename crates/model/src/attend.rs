//! Grouped-query attention on the CPU, block by block of query rows, so that the keys a block
//! cannot see are never multiplied.
//!
//! As candle's products compute it, attention multiplies every query row by every key and then
//! masks the causal half away: in a train step of the small bench shape that half was about a
//! tenth of all the step's arithmetic, and more in a screenshot-sized prompt. Here each block
//! of [`BLOCK`] query rows multiplies only the keys its last row sees (causal from
//! `Visibility::past`, and no key past its batch row's real length), and its probabilities are
//! kept block by block for the backward, which skips the same keys.
//!
//! Rows inside a block that see fewer keys than its last row get zeros there, so the block's
//! products stay exact. Blocks run in parallel, each product single-threaded inside (gemm's own
//! threads would meet at a barrier for products this small). The vision towers' attention
//! within frames or windows ([`within_spans`]) runs on the same blocks, with nothing masked.
//! This module owns the arithmetic on slices; it must not depend on the layers that call it
//! (`whole`, `text`, `tower`).

use rayon::prelude::*;

use crate::fused::{Visibility, softmax_row_in_place};
use crate::product::{How, product};

/// Query rows per block: small enough that the skipped triangle is most of the masked half
/// (a prompt of 320 tokens multiplies 60% of its score matrix, of 1,552 tokens 52%), large
/// enough that each product keeps gemm's kernels busy.
const BLOCK: usize = 64;

/// The shape of one attention: `[b, kv_heads, groups·seq, d]` queries (each key head's query
/// heads folded into its rows, head by head, as `text::Attention` lays them out) against
/// `[b, kv_heads, keys, d]` keys and values.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub b: usize,
    pub kv_heads: usize,
    pub groups: usize,
    /// Query rows per query head (the positions of this pass).
    pub seq: usize,
    /// Keys per key head: cached ones first, then this pass's.
    pub keys: usize,
    pub d: usize,
    pub scale: f32,
    /// The lane sum (generation) or the ordered sum (training), as `fused`'s softmax rows.
    pub fast: bool,
    pub visibility: Visibility,
}

/// One block of query rows.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Batch row.
    batch: usize,
    /// Key head, counted across the batch (`batch · kv_heads + head`).
    head: usize,
    /// The block's first row among all query rows.
    first_row: usize,
    rows: usize,
    /// The position of its first row in the sequence.
    position: usize,
    /// Keys its last row sees: the width of its scores.
    width: usize,
}

/// The probabilities of every block, `[rows, width]` each, one after another in block order:
/// what the backward needs, without the masked half.
pub(crate) struct Probs(Vec<f32>);

impl Attention {
    /// Keys visible to the query at `position` of batch row `batch`.
    fn visible(&self, batch: usize, position: usize) -> usize {
        self.visibility.seen(batch, position, self.keys)
    }

    fn blocks(&self) -> Vec<Block> {
        let mut blocks = Vec::new();
        for batch in 0..self.b {
            for kv in 0..self.kv_heads {
                let head = batch * self.kv_heads + kv;
                for g in 0..self.groups {
                    for position in (0..self.seq).step_by(BLOCK) {
                        let rows = BLOCK.min(self.seq - position);
                        blocks.push(Block {
                            batch,
                            head,
                            first_row: (head * self.groups + g) * self.seq + position,
                            rows,
                            position,
                            width: self.visible(batch, position + rows - 1),
                        });
                    }
                }
            }
        }
        blocks
    }

    fn check(&self, q: &[f32], k: &[f32], v: &[f32]) {
        let rows = self.b * self.kv_heads * self.groups * self.seq;
        let keys = self.b * self.kv_heads * self.keys;
        assert!(
            q.len() == rows * self.d && k.len() == keys * self.d && v.len() == keys * self.d,
            "attention: q, k or v does not fit {self:?}"
        );
    }

    /// The attention output `[b, kv_heads, groups·seq, d]`, and the probabilities when the
    /// backward will need them (`keep`).
    pub(crate) fn forward(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        keep: bool,
    ) -> (Vec<f32>, Option<Probs>) {
        self.check(q, k, v);
        let d = self.d;
        let blocks = self.blocks();
        let mut out = vec![0f32; q.len()];
        let probs_len = if keep {
            blocks.iter().map(|b| b.rows * b.width).sum()
        } else {
            0
        };
        let mut probs = vec![0f32; probs_len];
        // Each block's rows of the output, and of the probabilities when kept, in block order.
        let mut work = Vec::with_capacity(blocks.len());
        let (mut out_rest, mut probs_rest) = (out.as_mut_slice(), probs.as_mut_slice());
        for block in &blocks {
            let (o, rest) = out_rest.split_at_mut(block.rows * d);
            out_rest = rest;
            let p = if keep {
                let (p, rest) = probs_rest.split_at_mut(block.rows * block.width);
                probs_rest = rest;
                Some(p)
            } else {
                None
            };
            work.push((*block, o, p));
        }
        work.into_par_iter()
            .for_each_init(Vec::new, |scratch: &mut Vec<f32>, (block, o, p)| {
                let p = match p {
                    Some(p) => p,
                    None => {
                        // Not cleared: the scores' product writes every value first.
                        let need = block.rows * block.width;
                        if scratch.len() < need {
                            scratch.resize(need, 0.0);
                        }
                        &mut scratch[..need]
                    }
                };
                self.forward_block(&block, q, k, v, o, p);
            });
        (out, keep.then_some(Probs(probs)))
    }

    fn forward_block(
        &self,
        block: &Block,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
        p: &mut [f32],
    ) {
        let (d, w) = (self.d, block.width);
        let q_rows = &q[block.first_row * d..(block.first_row + block.rows) * d];
        let k_head = &k[block.head * self.keys * d..][..w * d];
        let v_head = &v[block.head * self.keys * d..][..w * d];
        // Scores: q_rows · k_headᵀ.
        product(
            (block.rows, w, d),
            p,
            How::SET,
            (q_rows, d, 1),
            (k_head, 1, d),
        );
        for (r, row) in p.chunks_exact_mut(w).enumerate() {
            let n = self.visible(block.batch, block.position + r);
            softmax_row_in_place(&mut row[..n], self.scale, self.fast);
            row[n..].fill(0.0);
        }
        product((block.rows, d, w), out, How::SET, (p, w, 1), (v_head, d, 1));
    }

    /// The gradients of q, k and v from the output's gradient `d_out`, with the probabilities
    /// [`Attention::forward`] kept.
    pub(crate) fn backward(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        probs: &Probs,
        d_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        self.check(q, k, v);
        assert_eq!(d_out.len(), q.len(), "attention: d_out does not fit q");
        let d = self.d;
        let blocks = self.blocks();
        let mut d_q = vec![0f32; q.len()];
        let mut d_k = vec![0f32; k.len()];
        let mut d_v = vec![0f32; v.len()];
        // Each key head's blocks, query rows and probabilities; its key and value gradients
        // gather over all its blocks, so a key head is one task.
        let per_head = blocks.len() / (self.b * self.kv_heads).max(1);
        let mut heads = Vec::with_capacity(self.b * self.kv_heads);
        let mut probs_rest = probs.0.as_slice();
        for (head_blocks, ((dq, dk), dv)) in blocks.chunks(per_head.max(1)).zip(
            d_q.chunks_mut(self.groups * self.seq * d)
                .zip(d_k.chunks_mut(self.keys * d))
                .zip(d_v.chunks_mut(self.keys * d)),
        ) {
            let len: usize = head_blocks.iter().map(|b| b.rows * b.width).sum();
            let (p, rest) = probs_rest.split_at(len);
            probs_rest = rest;
            heads.push((head_blocks, p, dq, dk, dv));
        }
        heads
            .into_par_iter()
            .for_each(|(head_blocks, p, dq, dk, dv)| {
                let first = head_blocks.first().map_or(0, |b| b.first_row);
                let mut scratch = Vec::new();
                let mut p_rest = p;
                for block in head_blocks {
                    let (p_block, rest) = p_rest.split_at(block.rows * block.width);
                    p_rest = rest;
                    let at = (block.first_row - first) * d;
                    let dq_rows = &mut dq[at..at + block.rows * d];
                    self.backward_block(
                        block,
                        q,
                        k,
                        v,
                        p_block,
                        d_out,
                        dq_rows,
                        dk,
                        dv,
                        &mut scratch,
                    );
                }
            });
        (d_q, d_k, d_v)
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_block(
        &self,
        block: &Block,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        p: &[f32],
        d_out: &[f32],
        d_q: &mut [f32],
        d_k: &mut [f32],
        d_v: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let (d, w) = (self.d, block.width);
        let rows = block.first_row * d..(block.first_row + block.rows) * d;
        let (q_rows, do_rows) = (&q[rows.clone()], &d_out[rows]);
        let k_head = &k[block.head * self.keys * d..][..w * d];
        let v_head = &v[block.head * self.keys * d..][..w * d];
        // The probabilities' gradient: d_out · vᵀ, then through the softmax in place. Not
        // cleared: the product writes every value first.
        let need = block.rows * w;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let scratch = &mut scratch[..need];
        product(
            (block.rows, w, d),
            scratch,
            How::SET,
            (do_rows, d, 1),
            (v_head, 1, d),
        );
        for (r, (g, y)) in scratch
            .chunks_exact_mut(w)
            .zip(p.chunks_exact(w))
            .enumerate()
        {
            let n = self.visible(block.batch, block.position + r);
            let dot: f32 = y[..n].iter().zip(&g[..n]).map(|(a, b)| a * b).sum();
            for (gv, &yv) in g[..n].iter_mut().zip(&y[..n]) {
                *gv = self.scale * yv * (*gv - dot);
            }
            g[n..].fill(0.0);
        }
        let d_scores = &*scratch;
        product(
            (block.rows, d, w),
            d_q,
            How::SET,
            (d_scores, w, 1),
            (k_head, d, 1),
        );
        product(
            (w, d, block.rows),
            &mut d_k[..w * d],
            How::ADD,
            (d_scores, 1, w),
            (q_rows, d, 1),
        );
        product(
            (w, d, block.rows),
            &mut d_v[..w * d],
            How::ADD,
            (p, 1, w),
            (do_rows, d, 1),
        );
    }
}

/// Attention of `[heads, n, d]` q, k and v (one image's patches) within consecutive `spans` of
/// the patches, each patch seeing every patch of its span and no other: a vision tower's
/// frames or windows. Generation's softmax; `[heads, n, d]` out.
pub(crate) fn within_spans(
    (q, k, v): (&[f32], &[f32], &[f32]),
    (heads, n, d): (usize, usize, usize),
    spans: &[usize],
    scale: f32,
) -> Vec<f32> {
    assert!(
        q.len() == heads * n * d && k.len() == q.len() && v.len() == q.len(),
        "attention: q, k or v does not fit [{heads}, {n}, {d}]"
    );
    assert!(
        spans.iter().sum::<usize>() == n,
        "attention: spans do not cover {n} rows"
    );
    // Spans run in parallel, each with its blocks in parallel inside: a windowed tower has
    // hundreds of spans of a block or two each, one hand-over to the pool apiece otherwise.
    let mut starts = Vec::with_capacity(spans.len());
    let mut start = 0;
    for &len in spans {
        if len > 0 {
            starts.push((start, len));
        }
        start += len;
    }
    let rows = |h: usize, start: usize, len: usize| (h * n + start) * d..(h * n + start + len) * d;
    let outs: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&(start, len)| {
            let gather = |x: &[f32]| -> Vec<f32> {
                (0..heads)
                    .flat_map(|h| &x[rows(h, start, len)])
                    .copied()
                    .collect()
            };
            let attention = Attention {
                b: 1,
                kv_heads: heads,
                groups: 1,
                seq: len,
                keys: len,
                d,
                scale,
                fast: true,
                // Every key counts as seen before the first query: nothing is causal.
                visibility: Visibility {
                    past: len,
                    lens: None,
                },
            };
            attention
                .forward(&gather(q), &gather(k), &gather(v), false)
                .0
        })
        .collect();
    let mut out = vec![0f32; q.len()];
    for (&(start, len), o) in starts.iter().zip(&outs) {
        for (h, o) in o.chunks_exact(len * d).enumerate() {
            out[rows(h, start, len)].copy_from_slice(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng as Rng;

    /// The attention written out with no blocks and no skipping: every score, masked to
    /// −∞, softmax, then the weighted values; and its gradients by the same rules.
    fn reference(a: &Attention, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let d = a.d;
        let mut out = vec![0f32; q.len()];
        for row in 0..a.b * a.kv_heads * a.groups * a.seq {
            let head = row / (a.groups * a.seq);
            let batch = head / a.kv_heads;
            let n = a.visible(batch, row % a.seq);
            let qr = &q[row * d..][..d];
            let scores: Vec<f32> = (0..n)
                .map(|j| {
                    let kr = &k[(head * a.keys + j) * d..][..d];
                    qr.iter().zip(kr).map(|(x, y)| x * y).sum::<f32>() * a.scale
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            for (j, ej) in e.iter().enumerate() {
                let vr = &v[(head * a.keys + j) * d..][..d];
                for (o, x) in out[row * d..][..d].iter_mut().zip(vr) {
                    *o += ej / sum * x;
                }
            }
        }
        out
    }

    fn shape(b: usize, seq: usize, past: usize, lens: Option<Vec<usize>>) -> Attention {
        Attention {
            b,
            kv_heads: 2,
            groups: 3,
            seq,
            keys: past + seq,
            d: 8,
            scale: 0.35,
            fast: false,
            visibility: Visibility { past, lens },
        }
    }

    fn inputs(a: &Attention, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let rows = a.b * a.kv_heads * a.groups * a.seq * a.d;
        let keys = a.b * a.kv_heads * a.keys * a.d;
        (
            rng.normals(rows, 1.0),
            rng.normals(keys, 1.0),
            rng.normals(keys, 1.0),
        )
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Several blocks per head, a last block cut short, a cache before the pass, and right
    /// padding shorter than one block: each changes which keys a row sees. Heads of 16 and
    /// 32, as in the test-sized models.
    fn shapes() -> Vec<Attention> {
        vec![
            shape(1, 150, 0, None),
            shape(2, 70, 0, Some(vec![70, 41])),
            shape(1, 65, 30, None),
            shape(2, 9, 0, Some(vec![3, 9])),
            Attention {
                d: 16,
                ..shape(2, 70, 0, Some(vec![70, 41]))
            },
            Attention {
                d: 32,
                ..shape(1, 150, 0, None)
            },
        ]
    }

    #[test]
    fn blocks_give_the_masked_attention() {
        for (i, a) in shapes().into_iter().enumerate() {
            let (q, k, v) = inputs(&a, 10 + i as u64);
            let (out, probs) = a.forward(&q, &k, &v, true);
            let want = reference(&a, &q, &k, &v);
            assert!(
                max_diff(&out, &want) < 1e-5,
                "shape {i}: {}",
                max_diff(&out, &want)
            );
            let (fast, none) = Attention {
                fast: true,
                ..a.clone()
            }
            .forward(&q, &k, &v, false);
            assert!(none.is_none());
            assert!(max_diff(&fast, &want) < 1e-5, "shape {i}, fast");
            assert!(probs.is_some());
        }
    }

    /// Spans of patches see their own span whole, and only it.
    #[test]
    fn spans_see_their_own_patches_only() {
        let (heads, n, d) = (3, 150, 8);
        let spans = [70, 0, 80];
        let mut rng = Rng::new(40);
        let (q, k, v) = (
            rng.normals(heads * n * d, 1.0),
            rng.normals(heads * n * d, 1.0),
            rng.normals(heads * n * d, 1.0),
        );
        let out = within_spans((&q, &k, &v), (heads, n, d), &spans, 0.35);
        let mut want = vec![0f32; out.len()];
        for h in 0..heads {
            for (start, len) in [(0, 70), (70, 80)] {
                for i in start..start + len {
                    let qr = &q[(h * n + i) * d..][..d];
                    let scores: Vec<f32> = (start..start + len)
                        .map(|j| {
                            let kr = &k[(h * n + j) * d..][..d];
                            qr.iter().zip(kr).map(|(x, y)| x * y).sum::<f32>() * 0.35
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f32 = e.iter().sum();
                    for (j, ej) in (start..start + len).zip(&e) {
                        let vr = &v[(h * n + j) * d..][..d];
                        for (o, x) in want[(h * n + i) * d..][..d].iter_mut().zip(vr) {
                            *o += ej / sum * x;
                        }
                    }
                }
            }
        }
        assert!(max_diff(&out, &want) < 1e-5, "{}", max_diff(&out, &want));
    }

    /// The backward against central differences of `Σ d_out · out`, for a few entries of
    /// each of q, k and v, including keys only a later block sees.
    #[test]
    fn the_backward_matches_finite_differences() {
        for (i, a) in shapes().into_iter().enumerate() {
            let (q, k, v) = inputs(&a, 20 + i as u64);
            let mut rng = Rng::new(30 + i as u64);
            let d_out = rng.normals(q.len(), 1.0);
            let (_, probs) = a.forward(&q, &k, &v, true);
            let probs = probs.expect("kept");
            let (d_q, d_k, d_v) = a.backward(&q, &k, &v, &probs, &d_out);
            let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
                let out = reference(&a, q, k, v);
                out.iter().zip(&d_out).map(|(o, g)| (o * g) as f64).sum()
            };
            let eps = 1e-2f32;
            for (which, grad) in [(0, &d_q), (1, &d_k), (2, &d_v)] {
                let len = grad.len();
                for at in [0, len / 3, len / 2, len - 1] {
                    let mut x = [q.clone(), k.clone(), v.clone()];
                    x[which][at] += eps;
                    let up = loss(&x[0], &x[1], &x[2]);
                    x[which][at] -= 2.0 * eps;
                    let down = loss(&x[0], &x[1], &x[2]);
                    let numeric = ((up - down) / (2.0 * eps as f64)) as f32;
                    assert!(
                        (numeric - grad[at]).abs() < 2e-2 * (1.0 + numeric.abs()),
                        "shape {i}, input {which}, entry {at}: {numeric} vs {}",
                        grad[at]
                    );
                }
            }
            // Keys past a padded row's length, and the cache's keys no row may skip, get
            // exactly what they should: nothing, where nothing sees them.
            if let Some(lens) = &a.visibility.lens {
                let seen = lens[1].max(1);
                let head = a.kv_heads; // batch row 1's first key head
                let rows = &d_k[(head * a.keys + seen) * a.d..(head + 1) * a.keys * a.d];
                assert!(rows.iter().all(|&g| g == 0.0), "shape {i}: padding keys");
            }
        }
    }
}
