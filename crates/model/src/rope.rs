//! Positions for Qwen3-VL and Qwen2.5-VL: the 3-D (time, height, width) position ids that HF's
//! `get_rope_index` gives each token (the same for still images in both families), and the
//! M-RoPE cos/sin tables built from them: interleaved (Qwen3-VL) or in sections (Qwen2.5-VL).

use candle_core::{Device, Result, Tensor};

/// One image's grid in patches: (t, h, w) before the spatial merge.
pub type Grid = (usize, usize, usize);

/// Token positions on the three rotary axes, one entry per token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Positions {
    /// Positions on the time axis.
    pub t: Vec<i64>,
    /// Positions on the height axis; equal to `t` for text tokens.
    pub h: Vec<i64>,
    /// Positions on the width axis; equal to `t` for text tokens.
    pub w: Vec<i64>,
}

impl Positions {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.t.len()
    }
    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
    fn push_text(&mut self, start: i64, count: usize) {
        for i in 0..count as i64 {
            self.t.push(start + i);
            self.h.push(start + i);
            self.w.push(start + i);
        }
    }
    fn max(&self) -> Option<i64> {
        self.t.iter().chain(&self.h).chain(&self.w).copied().max()
    }
    /// Sequential positions, the same on all three axes (text-only prompts and decoding).
    pub fn sequential(start: i64, count: usize) -> Self {
        let mut p = Self::default();
        p.push_text(start, count);
        p
    }
}

/// HF's `get_rope_index` for one unpadded sequence of images and text. Returns the positions
/// and the rope delta (max position + 1 - length) that decoding adds to the cache position.
pub fn rope_index(
    ids: &[u32],
    image_token_id: u32,
    grids: &[Grid],
    spatial_merge: usize,
) -> (Positions, i64) {
    let mut positions = Positions::default();
    let mut st = 0usize;
    for &(t, h, w) in grids {
        let Some(offset) = ids[st.min(ids.len())..]
            .iter()
            .position(|&id| id == image_token_id)
        else {
            break;
        };
        let ed = st + offset;
        let (gt, gh, gw) = (t, h / spatial_merge, w / spatial_merge);
        let start = positions.max().map_or(0, |m| m + 1);
        positions.push_text(start, ed - st);
        let base = start + (ed - st) as i64;
        for ti in 0..gt {
            for hi in 0..gh {
                for wi in 0..gw {
                    positions.t.push(base + ti as i64);
                    positions.h.push(base + hi as i64);
                    positions.w.push(base + wi as i64);
                }
            }
        }
        st = ed + gt * gh * gw;
    }
    if st < ids.len() {
        let start = positions.max().map_or(0, |m| m + 1);
        positions.push_text(start, ids.len() - st);
    }
    let delta = positions.max().map_or(0, |m| m + 1) - ids.len() as i64;
    (positions, delta)
}

/// M-RoPE: which position axis each rotary frequency reads.
///
/// Interleaved (Qwen3-VL): frequency j takes the height axis when `j % 3 == 1` and
/// `j < 3·section[1]`, the width axis when `j % 3 == 2` and `j < 3·section[2]`, and the time
/// axis otherwise. In sections (Qwen2.5-VL): the first `section[0]` frequencies take time, the
/// next `section[1]` height, the rest width; HF splits the doubled table by `mrope_section * 2`, which
/// gives both halves of a head the same assignment.
#[derive(Debug, Clone)]
pub struct TextRope {
    inv_freq: Vec<f32>,
    axis: Vec<u8>,
}

impl TextRope {
    /// Frequencies `theta^(-2i/head_dim)` for heads of width `head_dim`, split by `mrope_section`
    /// interleaved or in sections.
    pub fn new(head_dim: usize, theta: f64, mrope_section: &[usize], interleaved: bool) -> Self {
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let section = |i: usize| mrope_section.get(i).copied().unwrap_or(0);
        let (s0, s1, s2) = (section(0), section(1), section(2));
        let axis = (0..half)
            .map(|j| {
                if interleaved {
                    if j % 3 == 1 && j < 3 * s1 {
                        1
                    } else if j % 3 == 2 && j < 3 * s2 {
                        2
                    } else {
                        0
                    }
                } else if j < s0 {
                    0
                } else if j < s0 + s1 {
                    1
                } else {
                    2
                }
            })
            .collect();
        Self { inv_freq, axis }
    }

    /// cos and sin tables `[batch, seq, head_dim/2]` (f32) for a batch of equally long rows.
    pub fn tables(&self, rows: &[Positions], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let seq = rows.first().map_or(0, |p| p.len());
        let mut cos = Vec::with_capacity(rows.len() * seq * half);
        let mut sin = Vec::with_capacity(rows.len() * seq * half);
        for p in rows {
            if p.len() != seq {
                candle_core::bail!("position rows of unequal length");
            }
            for s in 0..seq {
                for j in 0..half {
                    let pos = match self.axis[j] {
                        1 => p.h[s],
                        2 => p.w[s],
                        _ => p.t[s],
                    };
                    let f = pos as f32 * self.inv_freq[j];
                    cos.push(f.cos());
                    sin.push(f.sin());
                }
            }
        }
        let shape = (rows.len(), seq, half);
        Ok((
            Tensor::from_vec(cos, shape, device)?,
            Tensor::from_vec(sin, shape, device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_positions_follow_hf() {
        // text text <img x4 (grid 1x4x4, merge 2 -> 2x2)> text
        let img = 9;
        let ids = [1, 2, img, img, img, img, 3];
        let (p, delta) = rope_index(&ids, img, &[(1, 4, 4)], 2);
        assert_eq!(p.t, vec![0, 1, 2, 2, 2, 2, 4]);
        assert_eq!(p.h, vec![0, 1, 2, 2, 3, 3, 4]);
        assert_eq!(p.w, vec![0, 1, 2, 3, 2, 3, 4]);
        assert_eq!(delta, 5 - 7);
    }

    #[test]
    fn text_only_is_sequential() {
        let (p, delta) = rope_index(&[5, 6, 7], 9, &[], 2);
        assert_eq!(p, Positions::sequential(0, 3));
        assert_eq!(delta, 0);
    }

    #[test]
    fn interleaving_assigns_axes() {
        let rope = TextRope::new(16, 10000.0, &[4, 2, 2], true);
        assert_eq!(rope.axis, vec![0, 1, 2, 0, 1, 2, 0, 0]);
    }

    #[test]
    fn sections_assign_contiguous_axes() {
        let rope = TextRope::new(16, 10000.0, &[4, 2, 2], false);
        assert_eq!(rope.axis, vec![0, 0, 0, 0, 1, 1, 2, 2]);
    }
}
