//! Train-mode kernels for the CPU with hand-written backward passes: RMSNorm (weight frozen),
//! softmax over the last axis and rotary embedding; and the row kernels the whole layers
//! share (softmax rows, SwiGLU's activation and its gradients, `exp_f32`), each compiled for
//! the widest vectors the CPU has.
//!
//! Composed from candle primitives, each of these is 6-10 graph nodes whose backward passes
//! allocate as many temporaries (`bench/RESULTS.md`, "Against the target": with
//! candle's composed ops a train step ran at ~0.16x PyTorch's, its backward passes dominating).
//! As single nodes they make one pass over memory forward and one backward. They run on f32 CPU
//! tensors; other devices and dtypes take the composed path in `ops`.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};

/// Whether the fused kernels apply to this tensor.
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Runs `f` on the f32 contents of a contiguous CPU tensor.
pub(crate) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let start = layout.start_offset();
            Ok(f(&v[start..start + layout.shape().elem_count()]))
        }
        _ => candle_core::bail!("fused kernels take f32 CPU tensors"),
    }
}

pub(crate) fn input<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else {
        candle_core::bail!("{op}: f32 only");
    };
    if !layout.is_contiguous() {
        candle_core::bail!("{op}: contiguous input only");
    }
    let start = layout.start_offset();
    Ok(&v[start..start + layout.shape().elem_count()])
}

struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "train-rms-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input(storage, layout, self.name())?;
        let out = rms_norm_rows(x, &self.weight, self.eps);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_slice(arg, |x| {
            with_slice(grad, |g| {
                rms_norm_rows_backward(x, &self.weight, self.eps, g)
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Rows per parallel task of the norms: 4,096 values at the small bench shape's width of
/// 256, 32,768 at 2,048.
const NORM_ROWS: usize = 16;

/// RMSNorm of one row into `dst`, scaled by `weight`.
#[inline]
pub(crate) fn rms_norm_row(row: &[f32], weight: &[f32], eps: f32, dst: &mut [f32]) {
    let mean = row.iter().map(|v| v * v).sum::<f32>() / weight.len() as f32;
    let r = 1.0 / (mean + eps).sqrt();
    for ((d, &v), &w) in dst.iter_mut().zip(row).zip(weight) {
        *d = w * (v * r);
    }
}

/// [`rms_norm_row`]'s gradient with respect to the row `xr`, given the output's gradient `gr`.
#[inline]
pub(crate) fn rms_norm_row_backward(
    xr: &[f32],
    weight: &[f32],
    eps: f32,
    gr: &[f32],
    dr: &mut [f32],
) {
    let h = weight.len();
    let mean = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
    let r = 1.0 / (mean + eps).sqrt();
    // u = g·w; dx = r·u − x·r³·mean(u·x)
    let dot = xr
        .iter()
        .zip(gr)
        .zip(weight)
        .map(|((&xv, &gv), &w)| gv * w * xv)
        .sum::<f32>()
        / h as f32;
    let r3 = r * r * r;
    for (i, d) in dr.iter_mut().enumerate() {
        *d = r * gr[i] * weight[i] - xr[i] * r3 * dot;
    }
}

/// RMSNorm of each `weight.len()`-wide row of `x`, scaled by `weight`; rows in parallel when
/// there are many (each row's arithmetic is the same either way).
pub(crate) fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    use rayon::prelude::*;
    let h = weight.len();
    let mut out = vec![0f32; x.len()];
    let rows = |(x, out): (&[f32], &mut [f32])| {
        for (row, dst) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
            rms_norm_row(row, weight, eps, dst);
        }
    };
    if x.len() >= PARALLEL_ABOVE {
        x.par_chunks(NORM_ROWS * h)
            .zip(out.par_chunks_mut(NORM_ROWS * h))
            .for_each(rows);
    } else {
        rows((x, &mut out));
    }
    out
}

/// The gradient of [`rms_norm_rows`] with respect to `x`, given the output's gradient `g`.
pub(crate) fn rms_norm_rows_backward(x: &[f32], weight: &[f32], eps: f32, g: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let h = weight.len();
    let mut dx = vec![0f32; x.len()];
    let rows = |((x, g), dx): ((&[f32], &[f32]), &mut [f32])| {
        for ((xr, gr), dr) in x
            .chunks_exact(h)
            .zip(g.chunks_exact(h))
            .zip(dx.chunks_exact_mut(h))
        {
            rms_norm_row_backward(xr, weight, eps, gr, dr);
        }
    };
    if x.len() >= PARALLEL_ABOVE {
        x.par_chunks(NORM_ROWS * h)
            .zip(g.par_chunks(NORM_ROWS * h))
            .zip(dx.par_chunks_mut(NORM_ROWS * h))
            .for_each(rows);
    } else {
        rows(((x, g), &mut dx));
    }
    dx
}

/// RMSNorm with a frozen weight, as one node.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let weight = weight.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    x.contiguous()?.apply_op1(RmsNorm {
        weight,
        eps: eps as f32,
    })
}

/// e^x in f32 without a library call, so that a row's loop vectorises: x = k·ln2 + r with
/// |r| ≤ ln2/2, e^r by its Taylor series to r⁷ (relative error below 2e-7 there), and 2^k put
/// into the exponent bits with integer arithmetic only (a float-to-int cast would not
/// vectorise). Below e^-87 (underflow, and the masked −∞) it is 0. The steps are fused
/// multiply-adds, one instruction each in the FMA builds of [`widest_vectors!`] (a third
/// fewer than separate products and sums) and the same bits everywhere; code built without
/// FMA calls the library's `fmaf` for them, correct but slow.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5·2²³: adding it rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const ROUND_BITS: u32 = 0x4B40_0000;
    let clamped = x.clamp(-87.0, 88.0);
    let shifted = clamped.mul_add(LOG2E, ROUND);
    let k = shifted - ROUND;
    let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, clamped));
    let p = [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ]
    .iter()
    .fold(1.0f32 / 5040.0, |p, &c| p.mul_add(r, c));
    let k_bits = shifted.to_bits().wrapping_sub(ROUND_BITS);
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    if x < -87.0 { 0.0 } else { p * scale }
}

/// Softmax of `row` · `scale` in place, on [`exp_f32`]; the sum in sixteen lanes when
/// `LANES`, else in order.
#[inline(always)]
fn softmax_row_generic<const LANES: bool>(row: &mut [f32], scale: f32) {
    let max = lane_max(row, scale);
    for d in row.iter_mut() {
        *d = exp_f32(*d * scale - max);
    }
    let sum = if LANES {
        lane_sum(row)
    } else {
        row.iter().sum::<f32>()
    };
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|d| *d *= inv);
}

/// The largest of `values` · `scale`, in sixteen running lanes. A fold of `f32::max` runs one
/// value at a time (its NaN rule keeps the compiler from reordering it); the largest value
/// is the same in any order.
#[inline(always)]
fn lane_max(values: &[f32], scale: f32) -> f32 {
    const LANES: usize = 16;
    let larger = |a: f32, b: f32| if b > a { b } else { a };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| larger(m, v * scale));
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = larger(*a, v * scale);
        }
    }
    acc.iter().fold(tail, |m, &a| larger(m, a))
}

/// The sum of `values` in sixteen running lanes. A plain `iter().sum()` of floats must add
/// in order, one value at a time: in generation's softmax that scalar chain was almost half
/// of the row's time (perf, the image prompt). Lanes add in another order; training keeps
/// the ordered sum (see [`softmax_row_in_place`]).
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Defines a function whose body is compiled three times, for AVX-512, for AVX2 with FMA
/// and for the build's baseline, and runs the widest the CPU has. The build targets plain
/// x86-64, whose four-lane code leaves most of a loop's speed unused. (A closure handed to
/// one `#[target_feature]` function is not reliably inlined into it, and then runs as
/// baseline code: measured, the image prompt's prefill fell by a quarter.)
macro_rules! widest_vectors {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has just been found to support the features the
                    // function is compiled for; it touches nothing but its arguments.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

widest_vectors! {
    /// [`softmax_row_generic`] summing in lanes.
    fn softmax_row_lanes(row: &mut [f32], scale: f32) {
        softmax_row_generic::<true>(row, scale);
    }
}

widest_vectors! {
    /// [`softmax_row_generic`] summing in order.
    fn softmax_row_ordered(row: &mut [f32], scale: f32) {
        softmax_row_generic::<false>(row, scale);
    }
}

/// Softmax of `row` · `scale` in place, on [`exp_f32`] in the widest vectors the CPU has.
/// `fast` (generation) also sums in lanes. Training keeps the ordered sum, the same as the
/// composed path its whole layers are tested against (every adapter gradient to 1e-5), so
/// that the two differ by rounding inside each product only.
#[inline]
pub(crate) fn softmax_row_in_place(row: &mut [f32], scale: f32, fast: bool) {
    if fast {
        softmax_row_lanes(row, scale);
    } else {
        softmax_row_ordered(row, scale);
    }
}

widest_vectors! {
    /// `ln Σ e^(x − max)` of `row` into `out`, on [`exp_f32`], summed in order.
    fn log_sum_exp_shifted(row: &[f32], max: f32, out: &mut f32) {
        let mut sum = 0f32;
        for &x in row {
            sum += exp_f32(x - max);
        }
        *out = sum.ln();
    }
}

/// `ln Σ e^x` over `row` (its largest value taken out first, so nothing overflows): the
/// log-softmax's normaliser, summed in order as training's softmax is.
pub(crate) fn log_sum_exp_row(row: &[f32]) -> f32 {
    let max = lane_max(row, 1.0);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut shifted = 0f32;
    log_sum_exp_shifted(row, max, &mut shifted);
    max + shifted
}

/// Elements per parallel chunk of the elementwise kernels below: large enough that a
/// chunk's work outweighs handing it to a thread.
const CHUNK: usize = 1 << 13;

widest_vectors! {
    /// SiLU(gate) · up into `out`.
    fn silu_mul_chunk(out: &mut [MaybeUninit<f32>], gate: &[f32], up: &[f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            o.write(g / (1.0 + exp_f32(-g)) * u);
        }
    }
}

widest_vectors! {
    /// [`silu_mul_chunk`]'s gradients.
    fn silu_mul_backward_chunk(
        d_gate: &mut [MaybeUninit<f32>],
        d_up: &mut [MaybeUninit<f32>],
        d_act: &[f32],
        gate: &[f32],
        up: &[f32],
    ) {
        let outs = d_gate.iter_mut().zip(d_up.iter_mut());
        for ((dg, du), ((&da, &g), &u)) in outs.zip(d_act.iter().zip(gate).zip(up)) {
            let sig = 1.0 / (1.0 + exp_f32(-g));
            dg.write(da * u * sig * (1.0 + g * (1.0 - sig)));
            du.write(da * g * sig);
        }
    }
}

/// SwiGLU's activation, SiLU(gate) · up, elementwise. The outputs here and in
/// [`silu_mul_backward`] are written once, never zeroed first.
pub(crate) fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;
    let n = gate.len();
    assert_eq!(up.len(), n, "silu_mul: gate and up differ in length");
    let mut out = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(out, (gate, up))| silu_mul_chunk(out, gate, up));
    // SAFETY: the chunks cover the first `n` spare values and each chunk's loop writes all
    // of its values (its inputs, chunked alike, are as long).
    unsafe { out.set_len(n) };
    out
}

/// The gradients of `gate` and `up` in [`silu_mul`], from its output's gradient `d_act`.
pub(crate) fn silu_mul_backward(d_act: &[f32], gate: &[f32], up: &[f32]) -> (Vec<f32>, Vec<f32>) {
    use rayon::prelude::*;
    let n = gate.len();
    assert!(
        up.len() == n && d_act.len() == n,
        "silu_mul_backward: inputs differ in length"
    );
    let mut d_gate = Vec::with_capacity(n);
    let mut d_up = Vec::with_capacity(n);
    d_gate.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(d_up.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
        .zip(d_act.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(((d_gate, d_up), d_act), (gate, up))| {
            silu_mul_backward_chunk(d_gate, d_up, d_act, gate, up)
        });
    // SAFETY: as in `silu_mul`, every one of the first `n` values of both is written.
    unsafe {
        d_gate.set_len(n);
        d_up.set_len(n);
    }
    (d_gate, d_up)
}

/// Softmax of `row` · `scale` into `dst`, as [`softmax_row_in_place`].
#[inline]
fn softmax_row(row: &[f32], dst: &mut [f32], scale: f32, fast: bool) {
    dst.copy_from_slice(row);
    softmax_row_in_place(dst, scale, fast);
}

/// Rows of at least this many values in all are shared among the CPU's threads.
const PARALLEL_ABOVE: usize = 1 << 16;

struct Softmax {
    fast: bool,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "train-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input(storage, layout, self.name())?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        if x.len() >= PARALLEL_ABOVE {
            use rayon::prelude::*;
            x.par_chunks_exact(n)
                .zip(out.par_chunks_exact_mut(n))
                .for_each(|(row, dst)| softmax_row(row, dst, 1.0, self.fast));
        } else {
            for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                softmax_row(row, dst, 1.0, self.fast);
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = arg.dims().last().copied().unwrap_or(1);
        let dx = with_slice(res, |y| {
            with_slice(grad, |g| {
                let mut dx = vec![0f32; y.len()];
                for ((yr, gr), dr) in y
                    .chunks_exact(n)
                    .zip(g.chunks_exact(n))
                    .zip(dx.chunks_exact_mut(n))
                {
                    let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                    for ((d, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
                        *d = yv * (gv - dot);
                    }
                }
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Softmax over the last axis, as one node.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax { fast: false })
}

/// [`softmax_last`] summing in lanes, for generation (its backward is never taken).
pub fn softmax_last_fast(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax { fast: true })
}

struct Rope {
    /// `[b, s, d/2]`, contiguous f32
    cos: Vec<f32>,
    sin: Vec<f32>,
    b: usize,
}

impl Rope {
    /// Rotate-half rope of `x` `[b, h, s, d]` with a sign on sin (−1 gives the inverse rotation,
    /// which is the transpose: the backward pass).
    fn apply(&self, x: &[f32], dims: &[usize], sign: f32) -> Result<Vec<f32>> {
        let &[b, h, s, d] = dims else {
            candle_core::bail!("rope takes [b, heads, seq, dim]");
        };
        let half = d / 2;
        if b != self.b || self.cos.len() != b * s * half {
            candle_core::bail!("rope tables do not fit {dims:?}");
        }
        let mut out = vec![0f32; x.len()];
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    let base = ((bi * h + hi) * s + si) * d;
                    let t = (bi * s + si) * half;
                    let (cos, sin) = (&self.cos[t..t + half], &self.sin[t..t + half]);
                    let (x1, x2) = x[base..base + d].split_at(half);
                    let (o1, o2) = out[base..base + d].split_at_mut(half);
                    for j in 0..half {
                        let (c, sn) = (cos[j], sign * sin[j]);
                        o1[j] = x1[j] * c - x2[j] * sn;
                        o2[j] = x2[j] * c + x1[j] * sn;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "train-rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input(storage, layout, self.name())?;
        let out = self.apply(x, layout.shape().dims(), 1.0)?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dims = arg.dims().to_vec();
        let dx = with_slice(grad, |g| self.apply(g, &dims, -1.0))??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Rotary embedding (rotate-half layout) as one node; `cos`/`sin` are `[b, s, d/2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)?;
    let flat = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
    x.contiguous()?.apply_op1(Rope {
        cos: flat(cos)?,
        sin: flat(sin)?,
        b,
    })
}

/// Which keys each query row may see: causal from `past`, and only the first `lens[b]` keys of
/// batch row b (right padding).
#[derive(Debug, Clone)]
pub struct Visibility {
    /// Keys cached before the first query row; query row `s` sees keys `0..=past + s`.
    pub past: usize,
    /// Real length of each batch row; `None` when no row is padded.
    pub lens: Option<Vec<usize>>,
}

impl Visibility {
    /// How many of `keys` the query at `position` of batch row `batch` sees: causal after
    /// `past`, and none past the row's real length (at least one, so a row is never empty).
    pub(crate) fn seen(&self, batch: usize, position: usize, keys: usize) -> usize {
        let causal = self.past + position + 1;
        let len = self
            .lens
            .as_ref()
            .and_then(|l| l.get(batch).copied())
            .unwrap_or(keys)
            .max(1);
        causal.min(len).min(keys)
    }
}

struct MaskedSoftmax {
    scale: f32,
    /// Sums in lanes (generation) or in order (training).
    fast: bool,
    /// Query rows per (batch, kv-head) block: groups × seq.
    seq: usize,
    blocks_per_batch: usize,
    visibility: Visibility,
}

impl MaskedSoftmax {
    /// The masked softmax of the flattened `[rows, keys]` scores `x`; hidden keys get 0.
    fn forward_rows(&self, x: &[f32], keys: usize) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        let one = |r: usize, row: &[f32], dst: &mut [f32]| {
            let n = self.visible(r, keys);
            softmax_row(&row[..n], &mut dst[..n], self.scale, self.fast);
        };
        if x.len() >= PARALLEL_ABOVE {
            use rayon::prelude::*;
            x.par_chunks_exact(keys)
                .zip(out.par_chunks_exact_mut(keys))
                .enumerate()
                .for_each(|(r, (row, dst))| one(r, row, dst));
        } else {
            for (r, (row, dst)) in x
                .chunks_exact(keys)
                .zip(out.chunks_exact_mut(keys))
                .enumerate()
            {
                one(r, row, dst);
            }
        }
        out
    }

    /// The gradient with respect to the raw scores, given the output `y` and its gradient `g`.
    fn backward_rows(&self, y: &[f32], g: &[f32], keys: usize) -> Vec<f32> {
        let mut dx = vec![0f32; y.len()];
        let one = |r: usize, yr: &[f32], gr: &[f32], dr: &mut [f32]| {
            let n = self.visible(r, keys);
            let dot: f32 = yr[..n].iter().zip(&gr[..n]).map(|(a, b)| a * b).sum();
            for ((d, &yv), &gv) in dr[..n].iter_mut().zip(&yr[..n]).zip(&gr[..n]) {
                *d = self.scale * yv * (gv - dot);
            }
        };
        if y.len() >= PARALLEL_ABOVE {
            use rayon::prelude::*;
            y.par_chunks_exact(keys)
                .zip(g.par_chunks_exact(keys))
                .zip(dx.par_chunks_exact_mut(keys))
                .enumerate()
                .for_each(|(r, ((yr, gr), dr))| one(r, yr, gr, dr));
        } else {
            for (r, ((yr, gr), dr)) in y
                .chunks_exact(keys)
                .zip(g.chunks_exact(keys))
                .zip(dx.chunks_exact_mut(keys))
                .enumerate()
            {
                one(r, yr, gr, dr);
            }
        }
        dx
    }

    /// The number of visible keys for row `r` of the flattened `[rows, keys]` scores.
    fn visible(&self, r: usize, keys: usize) -> usize {
        let per_batch = self.blocks_per_batch * self.seq;
        self.visibility.seen(r / per_batch, r % self.seq, keys)
    }
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = input(storage, layout, self.name())?;
        let keys = layout.shape().dims().last().copied().unwrap_or(1);
        let out = self.forward_rows(x, keys);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let keys = arg.dims().last().copied().unwrap_or(1);
        let dx = with_slice(res, |y| {
            with_slice(grad, |g| self.backward_rows(y, g, keys))
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `softmax(scale · scores)` over keys with the causal and padding mask applied in the kernel
/// (no mask tensor, no separate scale and add nodes). `scores` is `[b, kv_heads, groups·seq,
/// keys]`, grouped-query rows as `text::Attention` lays them out.
pub fn masked_softmax(
    scores: &Tensor,
    scale: f64,
    seq: usize,
    visibility: &Visibility,
    fast: bool,
) -> Result<Tensor> {
    let (_, blocks, rows, _) = scores.dims4()?;
    if seq == 0 || rows % seq != 0 {
        candle_core::bail!("masked softmax: {rows} rows are not whole groups of {seq}");
    }
    scores.contiguous()?.apply_op1(MaskedSoftmax {
        scale: scale as f32,
        fast,
        seq,
        blocks_per_batch: blocks * (rows / seq),
        visibility: visibility.clone(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fast_exp_is_within_a_few_ulps_of_the_library_s() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (ours, theirs) = (super::exp_f32(x), x.exp());
            worst = worst.max(((ours - theirs) / theirs).abs());
            x += 0.013;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(super::exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp_f32(-1e9), 0.0);
        assert_eq!(super::exp_f32(0.0), 1.0);
    }

    /// The row kernel as dispatched (sixteen lanes on a CPU with AVX-512) against the
    /// plain formula.
    #[test]
    fn a_softmax_row_matches_the_formula() {
        let row: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * 0.5));
        let exps: Vec<f64> = row
            .iter()
            .map(|&v| f64::from(v * 0.5 - max).exp())
            .collect();
        let sum: f64 = exps.iter().sum();
        for lanes in [true, false] {
            let mut ours = vec![0f32; row.len()];
            super::softmax_row(&row, &mut ours, 0.5, lanes);
            for (o, e) in ours.iter().zip(&exps) {
                assert!((f64::from(*o) - e / sum).abs() < 1e-7, "{o} vs {}", e / sum);
            }
        }
    }

    /// The lanes' maximum wherever the largest value sits (a lane, the tail, the first),
    /// and a softmax row whose scores would overflow e^x without it.
    #[test]
    fn the_largest_score_is_found_in_any_position() {
        for len in [1, 15, 16, 17, 40, 1000] {
            for at in [0, len / 2, len - 1] {
                let mut row: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 300.0).collect();
                row[at] = 300.0;
                assert_eq!(super::lane_max(&row, 0.5), 150.0, "length {len}, at {at}");
                for lanes in [true, false] {
                    let mut soft = vec![0f32; len];
                    super::softmax_row(&row, &mut soft, 0.5, lanes);
                    assert!((soft[at] - 1.0).abs() < 1e-6, "length {len}, at {at}");
                }
            }
        }
    }

    /// SwiGLU's activation and its gradients against the formulas in f64, over more than one
    /// parallel chunk, a ragged tail, and gates from −100 to 100 (where e^−g overflows f32).
    #[test]
    fn silu_times_up_and_its_gradients_match_the_formulas() {
        let n = super::CHUNK * 2 + 37;
        let gate: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) * 0.1)
            .collect();
        let up: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.25)
            .collect();
        let d_act: Vec<f32> = (0..n).map(|i| ((i * 13 % 11) as f32 - 5.0) * 0.5).collect();
        let act = super::silu_mul(&gate, &up);
        let (d_gate, d_up) = super::silu_mul_backward(&d_act, &gate, &up);
        for i in 0..n {
            let (g, u, da) = (f64::from(gate[i]), f64::from(up[i]), f64::from(d_act[i]));
            let sig = 1.0 / (1.0 + (-g).exp());
            let want = [
                g * sig * u,
                da * u * sig * (1.0 + g * (1.0 - sig)),
                da * g * sig,
            ];
            let got = [act[i], d_gate[i], d_up[i]].map(f64::from);
            for (w, o) in want.iter().zip(got) {
                assert!(
                    (w - o).abs() <= 1e-6 * w.abs().max(1.0),
                    "at {i}: {o} vs {w}"
                );
            }
        }
    }
}
