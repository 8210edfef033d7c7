//! The vision towers. Qwen3-VL's: patch embedding, interpolated learned positions, 2-D rotary
//! attention blocks, the patch merger and the DeepStack mergers whose outputs join early text
//! layers. Qwen2.5-VL's windowed tower lives in [`crate::windowed`]; [`VisionModel`] is either.
//! What the two towers share is in [`crate::tower`].

use candle_core::{D, Device, Tensor};

use crate::config::{Family, Qwen3VlConfig, VisionConfig};
use crate::error::Result;
use crate::lora::Linear;
use crate::ops::{self, Mode, Pass};
use crate::rope::Grid;
use crate::tower::{patch_coords, patch_embedding, rotary_tables, self_attention};
use crate::weights::WeightFiles;
use crate::windowed::WindowedVision;

const LN_EPS: f64 = 1e-6;

#[derive(Clone)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
}

impl Norm {
    fn load(w: &WeightFiles, prefix: &str, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{prefix}.weight"), &[dim])?,
            bias: w.get(&format!("{prefix}.bias"), &[dim])?,
        })
    }
    fn forward(&self, x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, LN_EPS, mode)
    }
}

fn linear(w: &WeightFiles, prefix: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
    Ok(Linear::new(
        w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
        Some(w.get(&format!("{prefix}.bias"), &[out_dim])?),
    ))
}

#[derive(Clone)]
struct Block {
    norm1: Norm,
    norm2: Norm,
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

#[derive(Clone)]
struct Merger {
    norm: Norm,
    postshuffle: bool,
    fc1: Linear,
    fc2: Linear,
}

/// The vision encoder of either family; its output replaces the image placeholder tokens.
/// Cloning shares the weights.
#[derive(Clone)]
pub enum VisionModel {
    /// Qwen3-VL's tower, with DeepStack features.
    Qwen3(Qwen3Vision),
    /// Qwen2.5-VL's windowed tower.
    Windowed(WindowedVision),
}

impl VisionModel {
    /// Loads the tower `config`'s family uses.
    pub fn load(w: &WeightFiles, config: &Qwen3VlConfig) -> Result<Self> {
        Ok(match config.family() {
            Family::Qwen3Vl => Self::Qwen3(Qwen3Vision::load(w, config)?),
            Family::Qwen25Vl => Self::Windowed(WindowedVision::load(w, config)?),
        })
    }

    /// Encodes the patches of one or more images (`[patches, C·T·P·P]`, concatenated in order).
    pub fn forward(&self, pixels: &Tensor, grids: &[Grid], mode: Mode) -> Result<VisionOutput> {
        match self {
            Self::Qwen3(tower) => tower.forward(pixels, grids, mode),
            Self::Windowed(tower) => Ok(VisionOutput {
                embeds: tower.forward(pixels, grids, mode)?,
                deepstack: Vec::new(),
            }),
        }
    }
}

/// Qwen3-VL's vision encoder.
#[derive(Clone)]
pub struct Qwen3Vision {
    patch_weight: Tensor,
    patch_bias: Tensor,
    pos_embed: Tensor,
    grid_side: usize,
    blocks: Vec<Block>,
    merger: Merger,
    deepstack_indexes: Vec<usize>,
    deepstack_mergers: Vec<Merger>,
    heads: usize,
    head_dim: usize,
    merge: usize,
    gelu_tanh: bool,
}

/// Vision features for a prompt's images, in placeholder order.
pub struct VisionOutput {
    /// `[tokens, text_hidden]`
    pub embeds: Tensor,
    /// One `[tokens, text_hidden]` per DeepStack layer.
    pub deepstack: Vec<Tensor>,
}

impl Qwen3Vision {
    /// Prefix of the vision tower's tensor names in HF's checkpoints.
    pub const PREFIX: &'static str = "model.visual";

    /// Takes the vision tower's tensors from `w`, checking each shape against `config`.
    pub fn load(w: &WeightFiles, config: &Qwen3VlConfig) -> Result<Self> {
        let v: &VisionConfig = &config.vision_config;
        let p = Self::PREFIX;
        let h = v.hidden_size;
        let patch_weight = patch_embedding(w, p, v)?;
        let merged = h * v.spatial_merge_size * v.spatial_merge_size;
        let merger = |prefix: String, postshuffle: bool| -> Result<Merger> {
            Ok(Merger {
                norm: Norm::load(
                    w,
                    &format!("{prefix}.norm"),
                    if postshuffle { merged } else { h },
                )?,
                postshuffle,
                fc1: linear(w, &format!("{prefix}.linear_fc1"), merged, merged)?,
                fc2: linear(
                    w,
                    &format!("{prefix}.linear_fc2"),
                    v.out_hidden_size,
                    merged,
                )?,
            })
        };
        let mut blocks = Vec::with_capacity(v.depth);
        for i in 0..v.depth {
            let bp = format!("{p}.blocks.{i}");
            blocks.push(Block {
                norm1: Norm::load(w, &format!("{bp}.norm1"), h)?,
                norm2: Norm::load(w, &format!("{bp}.norm2"), h)?,
                qkv: linear(w, &format!("{bp}.attn.qkv"), 3 * h, h)?,
                proj: linear(w, &format!("{bp}.attn.proj"), h, h)?,
                fc1: linear(w, &format!("{bp}.mlp.linear_fc1"), v.intermediate_size, h)?,
                fc2: linear(w, &format!("{bp}.mlp.linear_fc2"), h, v.intermediate_size)?,
            });
        }
        let deepstack_mergers = (0..v.deepstack_visual_indexes.len())
            .map(|i| merger(format!("{p}.deepstack_merger_list.{i}"), true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_weight,
            patch_bias: w.get(&format!("{p}.patch_embed.proj.bias"), &[h])?,
            pos_embed: w.get(
                &format!("{p}.pos_embed.weight"),
                &[v.num_position_embeddings, h],
            )?,
            grid_side: (v.num_position_embeddings as f64).sqrt() as usize,
            blocks,
            merger: merger(format!("{p}.merger"), false)?,
            deepstack_indexes: v.deepstack_visual_indexes.clone(),
            deepstack_mergers,
            heads: v.num_heads,
            head_dim: h / v.num_heads,
            merge: v.spatial_merge_size,
            gelu_tanh: v.hidden_act == "gelu_pytorch_tanh",
        })
    }

    /// Encodes the patches of one or more images (`[patches, C·T·P·P]`, concatenated in order).
    pub fn forward(&self, pixels: &Tensor, grids: &[Grid], mode: Mode) -> Result<VisionOutput> {
        let pass = Pass { mode, lora: false };
        let device = pixels.device();
        let dtype = self.patch_weight.dtype();
        let pixels = pixels.to_dtype(dtype)?;
        let mut x = pixels
            .matmul(&self.patch_weight.t()?)?
            .broadcast_add(&self.patch_bias)?;
        x = (x + self.interpolated_positions(grids, device)?)?;
        let (cos, sin) = rotary_tables(&patch_coords(grids, self.merge), self.head_dim, device)?;
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        let frames: Vec<usize> = grids
            .iter()
            .flat_map(|&(t, h, w)| std::iter::repeat_n(h * w, t))
            .collect();
        let mut deepstack = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            x = self.block(block, &x, &cos, &sin, &frames, pass)?;
            if let Some(k) = self.deepstack_indexes.iter().position(|&d| d == i) {
                deepstack.push(self.merge_patches(&self.deepstack_mergers[k], &x, mode)?);
            }
        }
        let embeds = self.merge_patches(&self.merger, &x, mode)?;
        Ok(VisionOutput { embeds, deepstack })
    }

    fn block(
        &self,
        b: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        frames: &[usize],
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let normed = b.norm1.forward(x, pass.mode)?;
        let attn = self_attention(
            &b.qkv,
            &normed,
            (self.heads, self.head_dim),
            (cos, sin),
            frames,
            pass,
        )?;
        let x = (x + b.proj.forward(&attn, pass)?)?;
        let h = b.fc1.forward(&b.norm2.forward(&x, pass.mode)?, pass)?;
        let h = if self.gelu_tanh {
            h.gelu()?
        } else {
            h.gelu_erf()?
        };
        x + b.fc2.forward(&h, pass)?
    }

    fn merge_patches(&self, m: &Merger, x: &Tensor, mode: Mode) -> candle_core::Result<Tensor> {
        let pass = Pass { mode, lora: false };
        let unit = self.merge * self.merge;
        let hidden = x.dim(D::Minus1)?;
        let groups = x.dim(0)? / unit;
        let x = if m.postshuffle {
            m.norm.forward(&x.reshape((groups, unit * hidden))?, mode)?
        } else {
            m.norm.forward(x, mode)?.reshape((groups, unit * hidden))?
        };
        let h = m.fc1.forward(&x, pass)?.gelu_erf()?;
        m.fc2.forward(&h, pass)
    }

    /// The learned square grid of position embeddings, bilinearly resampled to each image's
    /// patch grid (HF's `fast_pos_embed_interpolate`).
    fn interpolated_positions(&self, grids: &[Grid], device: &Device) -> Result<Tensor> {
        let side = self.grid_side;
        let coords = patch_coords(grids, self.merge);
        let n = coords.len();
        let mut idx = vec![0u32; 4 * n];
        let mut weight = vec![0f32; 4 * n];
        for (i, &(row, col, h, w)) in coords.iter().enumerate() {
            let y = linspace_at(0.0, (side - 1) as f32, h, row);
            let x = linspace_at(0.0, (side - 1) as f32, w, col);
            let (y0, x0) = (y as usize, x as usize);
            let (y1, x1) = ((y0 + 1).min(side - 1), (x0 + 1).min(side - 1));
            let (dy, dx) = (y - y0 as f32, x - x0 as f32);
            let corners = [
                (y0 * side + x0, (1.0 - dy) * (1.0 - dx)),
                (y0 * side + x1, (1.0 - dy) * dx),
                (y1 * side + x0, dy * (1.0 - dx)),
                (y1 * side + x1, dy * dx),
            ];
            for (k, (id, wt)) in corners.into_iter().enumerate() {
                idx[k * n + i] = id as u32;
                weight[k * n + i] = wt;
            }
        }
        let hidden = self.pos_embed.dim(1)?;
        let idx = Tensor::from_vec(idx, 4 * n, device)?;
        let weight =
            Tensor::from_vec(weight, (4, n, 1), device)?.to_dtype(self.pos_embed.dtype())?;
        let gathered = self
            .pos_embed
            .index_select(&idx, 0)?
            .reshape((4, n, hidden))?;
        Ok(gathered.broadcast_mul(&weight)?.sum(0)?)
    }
}

/// `torch.linspace(start, end, steps)[i]` in f32, including torch's choice to count the
/// second half of the points back from `end`.
fn linspace_at(start: f32, end: f32, steps: usize, i: usize) -> f32 {
    if steps <= 1 {
        return start;
    }
    let step = (end - start) / (steps - 1) as f32;
    if i < steps / 2 {
        start + step * i as f32
    } else {
        end - step * (steps - 1 - i) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::linspace_at;

    #[test]
    fn linspace_hits_both_ends() {
        assert_eq!(linspace_at(0.0, 7.0, 16, 0), 0.0);
        assert_eq!(linspace_at(0.0, 7.0, 16, 15), 7.0);
        assert_eq!(linspace_at(0.0, 7.0, 1, 0), 0.0);
        assert!((linspace_at(0.0, 7.0, 15, 7) - 3.5).abs() < 1e-6);
    }
}
