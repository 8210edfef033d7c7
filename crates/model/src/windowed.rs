//! Qwen2.5-VL's vision tower: patches grouped into windows of `window_size` pixels, most blocks
//! attending only within a window and the `fullatt_block_indexes` blocks over the whole image,
//! RMSNorm and a SwiGLU MLP in each block, and a merger whose output is put back in the
//! image's own order. The 2-D rotary embedding, the merge-block patch order and the block's
//! attention are shared with Qwen3-VL's tower ([`crate::tower`]).
//!
//! Owns only the tower; it knows nothing of the text decoder or of how features are placed.

use candle_core::{D, Tensor};

use crate::config::{Qwen3VlConfig, VisionConfig};
use crate::error::Result;
use crate::lora::Linear;
use crate::ops::{self, Mode, Pass};
use crate::rope::Grid;
use crate::tower::{patch_coords, patch_embedding, rotary_tables, self_attention};
use crate::weights::WeightFiles;

/// HF builds every norm of this tower with eps 1e-6.
const NORM_EPS: f64 = 1e-6;

#[derive(Clone)]
struct Block {
    norm1: Tensor,
    norm2: Tensor,
    qkv: Linear,
    proj: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The windowed tower. Cloning shares the weights.
#[derive(Clone)]
pub struct WindowedVision {
    patch_weight: Tensor,
    blocks: Vec<Block>,
    full_attention: Vec<usize>,
    merger_norm: Tensor,
    merger_fc1: Linear,
    merger_fc2: Linear,
    heads: usize,
    head_dim: usize,
    merge: usize,
    /// Side of a window in merged tokens.
    window: usize,
}

fn linear(w: &WeightFiles, prefix: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
    Ok(Linear::new(
        w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
        Some(w.get(&format!("{prefix}.bias"), &[out_dim])?),
    ))
}

/// The order windows visit the merged tokens of a batch of images, and each window's length
/// in patches. HF's `get_window_index`: each image's grid of merged tokens is cut into
/// `window × window` tiles row by row, a tile at the right or bottom edge keeping what is left;
/// tiles that hold nothing are dropped.
pub fn window_order(grids: &[Grid], merge: usize, window: usize) -> (Vec<usize>, Vec<usize>) {
    let unit = merge * merge;
    let mut order = Vec::new();
    let mut lens = Vec::new();
    let mut base = 0;
    for &(t, h, w) in grids {
        let (gh, gw) = (h / merge, w / merge);
        for ti in 0..t {
            for wy in 0..gh.div_ceil(window) {
                for wx in 0..gw.div_ceil(window) {
                    let before = order.len();
                    for y in wy * window..((wy + 1) * window).min(gh) {
                        for x in wx * window..((wx + 1) * window).min(gw) {
                            order.push(base + (ti * gh + y) * gw + x);
                        }
                    }
                    if order.len() > before {
                        lens.push((order.len() - before) * unit);
                    }
                }
            }
        }
        base += t * gh * gw;
    }
    (order, lens)
}

impl WindowedVision {
    /// Prefix of the tower's tensor names in HF's checkpoints.
    pub const PREFIX: &'static str = "model.visual";

    /// Takes the tower's tensors from `w`, checking each shape against `config`.
    pub fn load(w: &WeightFiles, config: &Qwen3VlConfig) -> Result<Self> {
        let v: &VisionConfig = &config.vision_config;
        let p = Self::PREFIX;
        let h = v.hidden_size;
        let patch_weight = patch_embedding(w, p, v)?;
        let mut blocks = Vec::with_capacity(v.depth);
        for i in 0..v.depth {
            let bp = format!("{p}.blocks.{i}");
            let im = v.intermediate_size;
            blocks.push(Block {
                norm1: w.get(&format!("{bp}.norm1.weight"), &[h])?,
                norm2: w.get(&format!("{bp}.norm2.weight"), &[h])?,
                qkv: linear(w, &format!("{bp}.attn.qkv"), 3 * h, h)?,
                proj: linear(w, &format!("{bp}.attn.proj"), h, h)?,
                gate: linear(w, &format!("{bp}.mlp.gate_proj"), im, h)?,
                up: linear(w, &format!("{bp}.mlp.up_proj"), im, h)?,
                down: linear(w, &format!("{bp}.mlp.down_proj"), h, im)?,
            });
        }
        let merged = h * v.spatial_merge_size * v.spatial_merge_size;
        let unit = v.patch_size * v.spatial_merge_size;
        Ok(Self {
            patch_weight,
            blocks,
            full_attention: v.fullatt_block_indexes.clone(),
            merger_norm: w.get(&format!("{p}.merger.ln_q.weight"), &[h])?,
            merger_fc1: linear(w, &format!("{p}.merger.mlp.0"), merged, merged)?,
            merger_fc2: linear(w, &format!("{p}.merger.mlp.2"), v.out_hidden_size, merged)?,
            heads: v.num_heads,
            head_dim: h / v.num_heads,
            merge: v.spatial_merge_size,
            window: v.window_size.unwrap_or(unit) / unit,
        })
    }

    /// Encodes the patches of one or more images (`[patches, C·T·P·P]`, concatenated in order)
    /// into `[merged tokens, out_hidden]`, in the images' own token order.
    pub fn forward(&self, pixels: &Tensor, grids: &[Grid], mode: Mode) -> Result<Tensor> {
        let pass = Pass { mode, lora: false };
        let device = pixels.device();
        let dtype = self.patch_weight.dtype();
        let unit = self.merge * self.merge;
        let x = pixels.to_dtype(dtype)?.matmul(&self.patch_weight.t()?)?;
        let (cos, sin) = rotary_tables(&patch_coords(grids, self.merge), self.head_dim, device)?;
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        let (order, windows) = window_order(grids, self.merge, self.window);
        let frames: Vec<usize> = grids
            .iter()
            .flat_map(|&(t, h, w)| std::iter::repeat_n(h * w, t))
            .collect();
        // Patches move in groups of one merged token, so each token's patches stay together.
        let patch_order: Vec<u32> = order
            .iter()
            .flat_map(|&g| (0..unit).map(move |k| (g * unit + k) as u32))
            .collect();
        let gather = Tensor::new(patch_order.as_slice(), device)?;
        let mut x = x.index_select(&gather, 0)?;
        let (cos, sin) = (cos.index_select(&gather, 0)?, sin.index_select(&gather, 0)?);
        for (i, block) in self.blocks.iter().enumerate() {
            let spans = if self.full_attention.contains(&i) {
                &frames
            } else {
                &windows
            };
            x = self.block(block, &x, &cos, &sin, spans, pass)?;
        }
        let hidden = x.dim(D::Minus1)?;
        let groups = x.dim(0)? / unit;
        let x = ops::rms_norm(&x, &self.merger_norm, NORM_EPS, mode)?
            .reshape((groups, unit * hidden))?;
        let x = self.merger_fc1.forward(&x, pass)?.gelu_erf()?;
        let x = self.merger_fc2.forward(&x, pass)?;
        // Back to the images' order: token order[j] sits at row j.
        let mut inverse = vec![0u32; order.len()];
        for (row, &token) in order.iter().enumerate() {
            inverse[token] = row as u32;
        }
        let inverse = Tensor::new(inverse.as_slice(), device)?;
        Ok(x.index_select(&inverse, 0)?)
    }

    fn block(
        &self,
        b: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spans: &[usize],
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let normed = ops::rms_norm(x, &b.norm1, NORM_EPS, pass.mode)?;
        let attn = self_attention(
            &b.qkv,
            &normed,
            (self.heads, self.head_dim),
            (cos, sin),
            spans,
            pass,
        )?;
        let x = (x + b.proj.forward(&attn, pass)?)?;
        let normed = ops::rms_norm(&x, &b.norm2, NORM_EPS, pass.mode)?;
        let gate = b.gate.forward(&normed, pass)?;
        let up = b.up.forward(&normed, pass)?;
        let act = (candle_nn::ops::silu(&gate)? * up)?;
        x + b.down.forward(&act, pass)?
    }
}

#[cfg(test)]
mod tests {
    use super::window_order;

    #[test]
    fn windows_tile_row_by_row_and_keep_edges() {
        // One image of 6×4 patches, merge 2: a 3×2 grid of tokens; windows of 2×2 tokens.
        let (order, lens) = window_order(&[(1, 6, 4)], 2, 2);
        // Tokens are numbered row-major over the 3×2 grid: 0 1 / 2 3 / 4 5.
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(lens, vec![16, 8]);
        // A 2×6 token grid with windows of 2: three windows side by side.
        let (order, lens) = window_order(&[(1, 4, 12)], 2, 2);
        assert_eq!(order, vec![0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        assert_eq!(lens, vec![16, 16, 16]);
    }

    #[test]
    fn later_images_continue_the_numbering() {
        let (order, lens) = window_order(&[(1, 2, 2), (1, 4, 2)], 2, 1);
        assert_eq!(order, vec![0, 1, 2]);
        assert_eq!(lens, vec![4, 4, 4]);
    }
}
