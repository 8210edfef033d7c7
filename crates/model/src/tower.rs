//! What both vision towers share: the patch embedding, the merge-block order of the patches,
//! the 2-D rotary tables and a block's attention within spans (whole frames, or windows).
//! Depends on nothing of either tower, so that neither imports the other.

use candle_core::{D, Device, Tensor};

use crate::attend;
use crate::config::VisionConfig;
use crate::error::Result;
use crate::fused;
use crate::lora::Linear;
use crate::ops::{self, Mode, Pass};
use crate::rope::Grid;
use crate::weights::WeightFiles;

/// The patch embedding's 3-D convolution kernel as the `[hidden, C·T·P·P]` matrix it is for
/// non-overlapping patches.
pub(crate) fn patch_embedding(w: &WeightFiles, prefix: &str, v: &VisionConfig) -> Result<Tensor> {
    let h = v.hidden_size;
    let patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
    Ok(w.get(
        &format!("{prefix}.patch_embed.proj.weight"),
        &[
            h,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
    )?
    .reshape((h, patch_dim))?)
}

/// A vision block's attention before its output projection: q, k, v from one `qkv` linear,
/// the 2-D rotary on q and k, attention within `spans`; `[n, heads·hd]`.
pub(crate) fn self_attention(
    qkv: &Linear,
    normed: &Tensor,
    (heads, hd): (usize, usize),
    (cos, sin): (&Tensor, &Tensor),
    spans: &[usize],
    pass: Pass,
) -> candle_core::Result<Tensor> {
    let n = normed.dim(0)?;
    let qkv = qkv
        .forward(normed, pass)?
        .reshape((n, 3, heads, hd))?
        .permute((1, 2, 0, 3))?; // [3, heads, n, hd]
    let rot = |i: usize| -> candle_core::Result<Tensor> {
        let t = qkv.get(i)?.unsqueeze(0)?.contiguous()?;
        ops::rope(&t, cos, sin, pass.mode)
    };
    let (q, k) = (rot(0)?, rot(1)?);
    let v = qkv.get(2)?.unsqueeze(0)?.contiguous()?;
    attend_in_spans(&q, &k, &v, spans, pass.mode)?
        .squeeze(0)?
        .transpose(0, 1)?
        .reshape((n, heads * hd))
}

/// Query rows per piece of a Fast-mode attention: a piece's scores (rows × span) stay in the
/// cache instead of a screenshot's whole span² matrix going through memory.
const QUERY_CHUNK: usize = 256;

/// Attention of `[1, heads, n, hd]` q, k, v within consecutive spans of the patches (one per
/// frame, or one per window), each patch seeing its own span only. In Fast mode the queries
/// of a span go in pieces of rows, so the whole span's scores are never built: on the CPU as
/// `attend`'s blocks, elsewhere as pieces of [`QUERY_CHUNK`] rows with the scale folded into
/// them. Train mode keeps the composed path, whose backward exists.
pub(crate) fn attend_in_spans(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spans: &[usize],
    mode: Mode,
) -> candle_core::Result<Tensor> {
    let hd = q.dim(D::Minus1)?;
    let scale = 1.0 / (hd as f64).sqrt();
    // On the CPU, blocks of rows over slices, with no tensor per piece.
    if mode == Mode::Fast && fused::applies(q) {
        let (_, heads, n, _) = q.dims4()?;
        let out = fused::with_slice(q, |q| {
            fused::with_slice(k, |k| {
                fused::with_slice(v, |v| {
                    attend::within_spans((q, k, v), (heads, n, hd), spans, scale as f32)
                })
            })
        })???;
        return Tensor::from_vec(out, q.shape(), q.device());
    }
    let mut outs = Vec::with_capacity(spans.len());
    let mut start = 0;
    for &len in spans {
        let qc = q.narrow(2, start, len)?;
        let kt = k.narrow(2, start, len)?.t()?.contiguous()?;
        let vc = v.narrow(2, start, len)?.contiguous()?;
        match mode {
            Mode::Fast => {
                let qc = (qc * scale)?;
                let mut from = 0;
                while from < len {
                    let rows = QUERY_CHUNK.min(len - from);
                    let scores = qc.narrow(2, from, rows)?.contiguous()?.matmul(&kt)?;
                    let probs = ops::softmax_last(&scores, mode)?;
                    outs.push(probs.matmul(&vc)?);
                    from += rows;
                }
            }
            Mode::Train => {
                let scores = (qc.matmul(&kt)? * scale)?;
                let probs = ops::softmax_last(&scores, mode)?;
                outs.push(probs.matmul(&vc)?);
            }
        }
        start += len;
    }
    Tensor::cat(&outs, 2)
}

/// Each patch's (row, column, image height, image width), in the merge-block order of the
/// pixel rows, for every frame of every image.
pub(crate) fn patch_coords(grids: &[Grid], m: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut coords = Vec::new();
    for &(t, h, w) in grids {
        for _ in 0..t {
            for bh in 0..h / m {
                for bw in 0..w / m {
                    for mh in 0..m {
                        for mw in 0..m {
                            coords.push((bh * m + mh, bw * m + mw, h, w));
                        }
                    }
                }
            }
        }
    }
    coords
}

/// The 2-D rotary cos/sin `[patches, head_dim/2]` (f32): the row's frequencies then the
/// column's, with theta 10,000 over a quarter of the head each.
pub(crate) fn rotary_tables(
    coords: &[(usize, usize, usize, usize)],
    head_dim: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let dim = head_dim / 2;
    let inv: Vec<f32> = (0..dim / 2)
        .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(coords.len() * dim);
    let mut sin = Vec::with_capacity(coords.len() * dim);
    for &(row, col, _, _) in coords {
        for pos in [row, col] {
            for f in &inv {
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    let shape = (coords.len(), dim);
    Ok((
        Tensor::from_vec(cos, shape, device)?,
        Tensor::from_vec(sin, shape, device)?,
    ))
}
