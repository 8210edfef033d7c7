//! Train mode as whole decoder layers: one graph node per layer, with a hand-written backward.
//!
//! Composed from candle's ops and the single-op kernels in `fused` and `frozen`, a layer is
//! about thirty graph nodes. Each edge of the backward pass allocates a zero tensor and adds
//! into it, each reshape or transpose of q, k and v is a node and a copy, and the frozen
//! products' threads meet at a barrier per node (`bench/RESULTS.md`, "Train mode as whole
//! layers"). Here a layer's forward keeps the activations its backward needs, and its backward
//! computes the input's gradient and every LoRA gradient of the layer in one pass, moving each
//! first gradient instead of adding it to zeros.
//!
//! The layer's adapters reach the graph as one flat tensor, the concatenation of each `A` and
//! `B` in [`LayerWeights::linears`]' order, so candle's own backward through the
//! concatenation hands each `Var` its part: callers read gradients from the `GradStore` as
//! before. The composed path stays as the reference (`TextModel::set_whole_layers`), and
//! `tests/training.rs` compares every LoRA gradient of the two.
//!
//! A prefill (Fast mode, into empty caches) runs the same forward over slices with no graph
//! and generation's softmax, and hands the rotated keys and the values to the cache
//! ([`prefill`]). Attention itself is `attend`'s blocks, in both.
//!
//! Norm weights that are being trained (`Qwen3Vl::train_base_weights`, as the practice
//! base's warm start does) join the packed tensor after the adapters, and the backward gives
//! their gradients too. CPU and f32 only: the cases [`applies`] accepts. This module owns the
//! layer's arithmetic and nothing else; it must not depend on `text` (which calls it).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, Var};

use rayon::prelude::*;

use crate::attend::{Attention, Probs};
use crate::fused::{self, Visibility};
use crate::product::{How, product, product_new};

/// One linear layer: frozen `weight` `[out, in]`, optional bias, optional adapter.
#[derive(Clone)]
pub(crate) struct LinearWeights {
    pub weight: Tensor,
    /// The weight as a contiguous `[in, out]`, when the model keeps that copy: the forward's
    /// products then pack it as whole vectors (`Linear::weight_transposed`).
    pub transposed: Option<Tensor>,
    pub bias: Option<Tensor>,
    /// `A` `[r, in]`, `B` `[out, r]` (the variables themselves) and the scale.
    pub lora: Option<(Var, Var, f64)>,
}

/// A decoder layer's weights, borrowed from the model for one pass.
#[derive(Clone)]
pub(crate) struct LayerWeights {
    pub input_norm: Tensor,
    pub post_norm: Tensor,
    /// Per-head RMSNorm of q and k (Qwen3).
    pub qk_norm: Option<(Tensor, Tensor)>,
    /// q, k, v, o, gate, up, down.
    pub linears: [LinearWeights; 7],
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
}

impl LayerWeights {
    /// The input, post-attention, q and k norm weights, in the order their gradients are
    /// packed.
    fn norms(&self) -> [Option<&Tensor>; 4] {
        let (q, k) = match &self.qk_norm {
            Some((q, k)) => (Some(q), Some(k)),
            None => (None, None),
        };
        [Some(&self.input_norm), Some(&self.post_norm), q, k]
    }
}

/// Slots of [`LayerWeights::norms`].
const INPUT_NORM: usize = 0;
const POST_NORM: usize = 1;
const Q_NORM: usize = 2;
const K_NORM: usize = 3;

const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// Rotary tables of one pass, `[b, s, head_dim/2]` flattened, shared by every layer.
#[derive(Clone)]
pub(crate) struct RopeTables {
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
}

impl RopeTables {
    pub fn new(cos: &Tensor, sin: &Tensor) -> Result<Self> {
        let flat = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        Ok(Self {
            cos: Arc::new(flat(cos)?),
            sin: Arc::new(flat(sin)?),
        })
    }
}

/// Whether a whole-layer pass can run: CPU f32 activations and weights, the frozen ones
/// untracked and each norm weight either frozen or a variable being trained.
pub(crate) fn applies(hidden: &Tensor, layer: &LayerWeights) -> bool {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    let frozen = |t: &Tensor| f32_cpu(t) && !t.is_variable() && !t.track_op();
    let norm = |t: &Tensor| frozen(t) || (f32_cpu(t) && t.is_variable());
    let shape_fits = layer.head_dim > 0
        && layer.head_dim.is_multiple_of(2)
        && layer.kv_heads > 0
        && layer.heads.is_multiple_of(layer.kv_heads)
        && hidden.dims3().is_ok_and(|(b, s, _)| b > 0 && s > 0);
    shape_fits
        && f32_cpu(hidden)
        && layer.norms().iter().flatten().all(|t| norm(t))
        && layer
            .linears
            .iter()
            .all(|l| frozen(&l.weight) && l.bias.as_ref().is_none_or(frozen))
}

/// Runs one decoder layer on `x` `[b, s, hidden]` as one graph node. `lora` says whether the
/// adapters apply (off: the frozen base, as `Pass::lora`).
pub(crate) fn forward(
    x: &Tensor,
    layer: &LayerWeights,
    rope: &RopeTables,
    visibility: &Visibility,
    lora: bool,
) -> Result<Tensor> {
    let (b, s, _) = x.dims3()?;
    check_pass(b, s, layer, rope, visibility)?;
    let mut vars: Vec<Tensor> = if lora {
        layer
            .linears
            .iter()
            .filter_map(|l| l.lora.as_ref())
            .flat_map(|(a, bm, _)| [a.as_tensor().flatten_all(), bm.as_tensor().flatten_all()])
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let norms = layer.norms();
    let trained_norms = norms.map(|n| n.is_some_and(|t| t.is_variable()));
    for norm in norms.iter().flatten().filter(|t| t.is_variable()) {
        vars.push(norm.flatten_all()?);
    }
    let trains = x.track_op() || !vars.is_empty();
    let packed = if vars.is_empty() {
        Tensor::zeros(1, DType::F32, x.device())?
    } else {
        Tensor::cat(&vars, 0)?
    };
    let op = WholeLayer {
        layer: layer.clone(),
        rope: rope.clone(),
        visibility: visibility.clone(),
        lora,
        trained_norms,
        b,
        s,
        saved: Mutex::new(None),
        keep: trains,
        fast: false,
    };
    let x = x.contiguous()?;
    if trains {
        x.apply_op2(&packed, op)
    } else {
        x.apply_op2_no_bwd(&packed, &op)
    }
}

/// Runs one decoder layer of a prefill (Fast mode, nothing cached before it) on `x`
/// `[b, s, hidden]`: its output, and the rotated keys and the values `[b, kv_heads, s, d]` the
/// layer's cache keeps. No graph: the same arithmetic as [`forward`], with generation's softmax.
pub(crate) fn prefill(
    x: &Tensor,
    layer: &LayerWeights,
    rope: &RopeTables,
    visibility: &Visibility,
    lora: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, s, hidden) = x.dims3()?;
    check_pass(b, s, layer, rope, visibility)?;
    let op = WholeLayer {
        layer: layer.clone(),
        rope: rope.clone(),
        visibility: visibility.clone(),
        lora,
        trained_norms: [false; 4],
        b,
        s,
        saved: Mutex::new(None),
        keep: false,
        fast: true,
    };
    let x = x.detach().contiguous()?;
    let (out, leftovers) = on_the_pool(|| op.run_forward(&x))?;
    let Leftovers::Cache { k, v } = leftovers else {
        candle_core::bail!("whole layer: a prefill kept its activations");
    };
    let heads = (b, layer.kv_heads, s, layer.head_dim);
    Ok((
        tensor(out, (b, s, hidden))?,
        tensor(k, heads)?,
        tensor(v, heads)?,
    ))
}

/// What [`forward`] and [`prefill`] require of a pass: it starts at position 0, and the rope
/// tables fit it.
fn check_pass(
    b: usize,
    s: usize,
    layer: &LayerWeights,
    rope: &RopeTables,
    visibility: &Visibility,
) -> Result<()> {
    if visibility.past != 0 {
        candle_core::bail!("whole layer: a pass without a cache starts at position 0");
    }
    if rope.cos.len() != b * s * (layer.head_dim / 2) || rope.sin.len() != rope.cos.len() {
        candle_core::bail!("whole layer: the rope tables do not fit [{b}, {s}, head_dim/2]");
    }
    Ok(())
}

/// What a layer's forward leaves behind: the activations for its backward (training), or the
/// keys and values for the cache (a prefill).
enum Leftovers {
    Saved(Box<Saved>),
    Cache { k: Vec<f32>, v: Vec<f32> },
}

struct WholeLayer {
    layer: LayerWeights,
    rope: RopeTables,
    visibility: Visibility,
    lora: bool,
    /// Which of [`LayerWeights::norms`] are being trained.
    trained_norms: [bool; 4],
    b: usize,
    s: usize,
    /// What the forward pass left for the backward one.
    saved: Mutex<Option<Arc<Saved>>>,
    /// Whether to keep activations (a graph is being recorded).
    keep: bool,
    /// Generation's softmax (a prefill) or training's.
    fast: bool,
}

/// A linear layer's forward leftovers: its input and, with an adapter, `scale · x Aᵀ`.
struct LinearSaved {
    input: Tensor,
    xa: Option<Tensor>,
}

struct Saved {
    q: LinearSaved,
    k: LinearSaved,
    v: LinearSaved,
    o: LinearSaved,
    gate: LinearSaved,
    up: LinearSaved,
    down: LinearSaved,
    /// q and k before their per-head norm, token-major `[T, heads·d]`.
    q_raw: Tensor,
    k_raw: Tensor,
    /// Rotated q `[b, kv, groups·s, d]`, k and v `[b, kv, s, d]`.
    q_rot: Vec<f32>,
    k_rot: Vec<f32>,
    v_heads: Vec<f32>,
    /// Attention probabilities, the visible blocks only.
    probs: Probs,
    /// The residual after attention, `[T, hidden]`.
    mid: Tensor,
    /// The MLP's gate and up outputs, `[T, intermediate]`.
    gate_out: Tensor,
    up_out: Tensor,
}

fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A contiguous f32 CPU tensor's values, borrowed: most of the layer's tensors are read
/// once, and copying them out was a tenth of a train step.
struct View<G> {
    guard: G,
    start: usize,
    len: usize,
}

impl<G: std::ops::Deref<Target = Storage>> std::ops::Deref for View<G> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.start + self.len],
            // `view` accepts nothing else.
            _ => &[],
        }
    }
}

/// Runs `f` on one of rayon's threads and waits for it. From the caller's own thread each
/// parallel loop of a layer (its products, attention blocks, elementwise chunks) is handed
/// to the pool while the caller sleeps until it ends, a futex wake-up each way, some fifty
/// times a layer: perf of the small train step had the kernel's thread switching at ~7% and
/// only 1.3 of its 2 cores busy. On a pool thread the loops split by work stealing instead.
/// An image prompt's prefill and a scored forward run here whole too, so that candle's own
/// parallel ops between the layers split the same way; on a pool thread already (a pool of
/// the caller's own, entered with `install`) it runs `f` where it is.
pub(crate) fn on_the_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::join(f, || ()).0
}

fn view(t: &Tensor) -> Result<View<impl std::ops::Deref<Target = Storage> + '_>> {
    if !t.is_contiguous() {
        candle_core::bail!("whole layer: a non-contiguous intermediate");
    }
    let (guard, layout) = t.storage_and_layout();
    if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
        candle_core::bail!("whole layer: f32 CPU tensors only");
    }
    Ok(View {
        start: layout.start_offset(),
        len: layout.shape().elem_count(),
        guard,
    })
}

/// Adds the gradient of an RMSNorm's weight, Σ over rows of `g · x · r(x)`, into `acc`.
fn add_norm_weight_grad(x: &[f32], g: &[f32], eps: f32, acc: &mut [f32]) {
    let h = acc.len();
    for (xr, gr) in x.chunks_exact(h).zip(g.chunks_exact(h)) {
        let mean = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let r = 1.0 / (mean + eps).sqrt();
        for ((a, &xv), &gv) in acc.iter_mut().zip(xr).zip(gr) {
            *a += gv * xv * r;
        }
    }
}

fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}

impl WholeLayer {
    fn adapter(&self, i: usize) -> Option<(Tensor, Tensor, f64)> {
        self.layer.linears[i]
            .lora
            .as_ref()
            .filter(|_| self.lora)
            .map(|(a, b, s)| (a.as_tensor().detach(), b.as_tensor().detach(), *s))
    }

    /// `x Wᵀ + bias + s (x Aᵀ) Bᵀ` for `x` `[T, in]`: the adapter's product accumulates into
    /// the frozen one's output, with no elementwise pass between them.
    fn linear(&self, i: usize, x: &Tensor) -> Result<(Tensor, LinearSaved)> {
        self.linear_on(i, x, How::SET.shared())
    }

    /// Linears `is` of the same input side by side, each on one thread: one meeting of the
    /// threads for all instead of one per product (q, k and v; gate and up).
    fn linears_beside(&self, is: &[usize], x: &Tensor) -> Result<Vec<(Tensor, LinearSaved)>> {
        is.par_iter()
            .map(|&i| self.linear_on(i, x, How::SET))
            .collect()
    }

    /// [`Self::linear`], its products on `how`'s threads.
    fn linear_on(&self, i: usize, x: &Tensor, how: How) -> Result<(Tensor, LinearSaved)> {
        let l = &self.layer.linears[i];
        let (t, d_in) = x.dims2()?;
        let d_out = l.weight.dim(0)?;
        // `Wᵀ` as gemm's right operand `[in, out]`: strided over the weight, or the copy's rows.
        let (w, w_strides) = match &l.transposed {
            Some(t) => (t.contiguous()?, (d_out, 1)),
            None => (l.weight.contiguous()?, (1, d_in)),
        };
        let xv = view(x)?;
        let wv = view(&w)?;
        let (xs, ws): (&[f32], &[f32]) = (&xv, &wv);
        let rhs = (ws, w_strides.0, w_strides.1);
        // On several threads, the rows are split between them, each part a single-threaded
        // product: gemm's own split of a product this size meets its threads more often
        // (measured: +8% on the small prefill, whose o and down products take this path).
        let mut y = if how.threads > 1 && t >= 2 * how.threads {
            let chunk = t.div_ceil(how.threads);
            let mut y = vec![0f32; t * d_out];
            y.par_chunks_mut(chunk * d_out)
                .zip(xs.par_chunks(chunk * d_in))
                .for_each(|(yc, xc)| {
                    let rows = xc.len() / d_in;
                    let part = How::SET.scaled(how.scale);
                    product((rows, d_out, d_in), yc, part, (xc, d_in, 1), rhs);
                });
            y
        } else {
            product_new((t, d_out, d_in), how, (xs, d_in, 1), rhs)
        };
        drop(wv);
        if let Some(bias) = &l.bias {
            let bias = bias.contiguous()?;
            let bias = view(&bias)?;
            for row in y.chunks_exact_mut(d_out) {
                row.iter_mut().zip(bias.iter()).for_each(|(y, b)| *y += b);
            }
        }
        let mut xa = None;
        if let Some((a, b, scale)) = self.adapter(i) {
            let r = a.dim(0)?;
            let u = product_new(
                (t, r, d_in),
                How::SET.scaled(scale as f32),
                (&xv, d_in, 1),
                (&view(&a)?, 1, d_in),
            );
            product(
                (t, d_out, r),
                &mut y,
                How { add: true, ..how },
                (&u, r, 1),
                (&view(&b)?, 1, r),
            );
            xa = Some(tensor(u, (t, r))?);
        }
        drop(xv);
        Ok((
            tensor(y, (t, d_out))?,
            LinearSaved {
                input: x.clone(),
                xa,
            },
        ))
    }

    /// The backward of [`Self::linear`]: adds its input's gradient into `dx` `[T, in]` (when
    /// given) and pushes its adapter's (`[A, B]` flattened, in packing order), from the
    /// output's gradient `dy` `[T, out]`.
    fn linear_backward(
        &self,
        i: usize,
        saved: &LinearSaved,
        dy: &[f32],
        dx: Option<&mut [f32]>,
        grads: &mut Vec<Tensor>,
    ) -> Result<()> {
        self.linear_backward_on(i, saved, dy, dx, grads, rayon::current_num_threads())
    }

    /// The backwards of linears of one input side by side, each on one thread, as
    /// [`Self::linears_beside`]: each `(linear, saved, dy)` pushes its adapter's gradients
    /// into its own list; their input gradients are summed in order into one `[T, in]`
    /// (when `want_dx`; else it is empty).
    fn linears_backward_beside(
        &self,
        parts: &[(usize, &LinearSaved, &[f32])],
        want_dx: bool,
        dx_len: usize,
    ) -> Result<(Vec<f32>, Vec<Vec<Tensor>>)> {
        let done: Vec<(Vec<f32>, Vec<Tensor>)> = parts
            .par_iter()
            .map(|&(i, saved, dy)| {
                let mut dx = if want_dx {
                    vec![0f32; dx_len]
                } else {
                    Vec::new()
                };
                let mut grads = Vec::new();
                let dx_slot = want_dx.then_some(dx.as_mut_slice());
                self.linear_backward_on(i, saved, dy, dx_slot, &mut grads, 1)?;
                Ok((dx, grads))
            })
            .collect::<Result<_>>()?;
        let mut sum: Option<Vec<f32>> = None;
        let mut grads = Vec::with_capacity(done.len());
        for (dx, g) in done {
            match sum.as_mut() {
                None => sum = Some(dx),
                Some(sum) => sum.iter_mut().zip(&dx).for_each(|(s, d)| *s += d),
            }
            grads.push(g);
        }
        Ok((sum.unwrap_or_default(), grads))
    }

    /// [`Self::linear_backward`], its products on `threads` threads.
    fn linear_backward_on(
        &self,
        i: usize,
        saved: &LinearSaved,
        dy: &[f32],
        dx: Option<&mut [f32]>,
        grads: &mut Vec<Tensor>,
        threads: usize,
    ) -> Result<()> {
        let l = &self.layer.linears[i];
        let w = l.weight.contiguous()?;
        let (d_out, d_in) = w.dims2()?;
        let t = dy.len() / d_out.max(1);
        let adapter = self.adapter(i).zip(saved.xa.as_ref());
        let mut du = Vec::new();
        if let Some(((a, b, scale), xa)) = &adapter {
            // y = u Bᵀ with u = s x Aᵀ: dB = dyᵀ u, du = s dy B, dA = duᵀ x, dx += du A.
            let r = a.dim(0)?;
            du = product_new(
                (t, r, d_out),
                How::SET.scaled(*scale as f32),
                (dy, d_out, 1),
                (&view(b)?, r, 1),
            );
            let d_b = product_new(
                (d_out, r, t),
                How::SET.on(threads),
                (dy, 1, d_out),
                (&view(xa)?, r, 1),
            );
            let d_a = product_new(
                (r, d_in, t),
                How::SET.on(threads),
                (&du, 1, r),
                (&view(&saved.input)?, d_in, 1),
            );
            grads.push(tensor(d_a, r * d_in)?);
            grads.push(tensor(d_b, d_out * r)?);
        }
        if let Some(dx) = dx {
            product(
                (t, d_in, d_out),
                dx,
                How::ADD.on(threads),
                (dy, d_out, 1),
                (&view(&w)?, d_in, 1),
            );
            if let Some(((a, _, _), _)) = &adapter {
                let r = a.dim(0)?;
                product(
                    (t, d_in, r),
                    dx,
                    How::ADD.on(threads),
                    (&du, r, 1),
                    (&view(a)?, d_in, 1),
                );
            }
        }
        Ok(())
    }

    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let l = &self.layer;
        (self.b, self.s, l.heads, l.kv_heads, l.head_dim)
    }

    /// The rotary tables' rows for token `t` of the batch-major sequence.
    fn rope_rows(&self, t: usize) -> (&[f32], &[f32]) {
        let half = self.layer.head_dim / 2;
        (
            &self.rope.cos[t * half..(t + 1) * half],
            &self.rope.sin[t * half..(t + 1) * half],
        )
    }

    /// Per-head norm (when `norm`) then rotation of token-major `raw` `[T, heads·d]`, written
    /// head-major `[b, heads, s, d]`.
    fn norm_rope(&self, raw: &[f32], heads: usize, norm: Option<&[f32]>) -> Vec<f32> {
        let (_, s, _, _, d) = self.dims();
        let half = d / 2;
        let eps = self.layer.eps as f32;
        let mut out = vec![0f32; raw.len()];
        // One task per (batch row, head): its `[s, d]` block of the output.
        out.par_chunks_mut(s * d)
            .enumerate()
            .for_each(|(block, out)| {
                let (bi, h) = (block / heads, block % heads);
                let mut normed = vec![0f32; d];
                for (si, o) in out.chunks_exact_mut(d).enumerate() {
                    let t = bi * s + si;
                    let (cos, sin) = self.rope_rows(t);
                    let src = &raw[(t * heads + h) * d..(t * heads + h + 1) * d];
                    match norm {
                        Some(w) => fused::rms_norm_row(src, w, eps, &mut normed),
                        None => normed.copy_from_slice(src),
                    }
                    let (o1, o2) = o.split_at_mut(half);
                    let (x1, x2) = normed.split_at(half);
                    for j in 0..half {
                        o1[j] = x1[j] * cos[j] - x2[j] * sin[j];
                        o2[j] = x2[j] * cos[j] + x1[j] * sin[j];
                    }
                }
            });
        out
    }

    /// The backward of [`Self::norm_rope`]: head-major `grad` to the token-major gradient of
    /// `raw`; the norm weight's gradient is added into `weight_grad` when one is given.
    /// Tokens run in parallel, except with `weight_grad`, whose sum over tokens keeps its
    /// order (an update must not depend on how threads split it).
    fn norm_rope_backward(
        &self,
        raw: &[f32],
        grad: &[f32],
        heads: usize,
        norm: Option<&[f32]>,
        weight_grad: Option<&mut [f32]>,
    ) -> Vec<f32> {
        let (_, s, _, _, d) = self.dims();
        let half = d / 2;
        let eps = self.layer.eps as f32;
        let mut out = vec![0f32; raw.len()];
        // Token `t`'s gradient rows (`out`, `[heads, d]`), the norm weight's gradient added
        // into `acc`.
        let token = |t: usize, out: &mut [f32], unrot: &mut [f32], acc: Option<&mut [f32]>| {
            let (bi, si) = (t / s, t % s);
            let (cos, sin) = self.rope_rows(t);
            let mut acc = acc;
            for (h, dst) in out.chunks_exact_mut(d).enumerate() {
                let base = ((bi * heads + h) * s + si) * d;
                let (g1, g2) = grad[base..base + d].split_at(half);
                {
                    let (u1, u2) = unrot.split_at_mut(half);
                    for j in 0..half {
                        u1[j] = g1[j] * cos[j] + g2[j] * sin[j];
                        u2[j] = g2[j] * cos[j] - g1[j] * sin[j];
                    }
                }
                let at = (t * heads + h) * d;
                if let Some(acc) = acc.as_deref_mut() {
                    add_norm_weight_grad(&raw[at..at + d], unrot, eps, acc);
                }
                match norm {
                    Some(w) => fused::rms_norm_row_backward(&raw[at..at + d], w, eps, unrot, dst),
                    None => dst.copy_from_slice(unrot),
                }
            }
        };
        match weight_grad {
            Some(acc) => {
                let mut unrot = vec![0f32; d];
                for (t, out) in out.chunks_exact_mut(heads * d).enumerate() {
                    token(t, out, &mut unrot, Some(&mut *acc));
                }
            }
            None => out.par_chunks_mut(heads * d).enumerate().for_each_init(
                || vec![0f32; d],
                |unrot, (t, out)| token(t, out, unrot, None),
            ),
        }
        out
    }

    /// Token-major `[T, heads·d]` to head-major `[b, heads, s, d]`, or back (`inverse`).
    fn transpose_heads(&self, x: &[f32], heads: usize, inverse: bool) -> Vec<f32> {
        let (_, s, _, _, d) = self.dims();
        let mut out = vec![0f32; x.len()];
        if inverse {
            // Token t's rows, from each head's block.
            out.par_chunks_mut(heads * d)
                .enumerate()
                .for_each(|(t, out)| {
                    let (bi, si) = (t / s, t % s);
                    for (h, dst) in out.chunks_exact_mut(d).enumerate() {
                        let head = ((bi * heads + h) * s + si) * d;
                        dst.copy_from_slice(&x[head..head + d]);
                    }
                });
        } else {
            // Head h of batch row bi, from each token's rows.
            out.par_chunks_mut(s * d)
                .enumerate()
                .for_each(|(block, out)| {
                    let (bi, h) = (block / heads, block % heads);
                    for (si, dst) in out.chunks_exact_mut(d).enumerate() {
                        let tok = ((bi * s + si) * heads + h) * d;
                        dst.copy_from_slice(&x[tok..tok + d]);
                    }
                });
        }
        out
    }

    fn attention(&self) -> Attention {
        let (b, s, nh, nkv, d) = self.dims();
        Attention {
            b,
            kv_heads: nkv,
            groups: nh / nkv,
            seq: s,
            keys: s,
            d,
            scale: (1.0 / (d as f64).sqrt()) as f32,
            fast: self.fast,
            visibility: self.visibility.clone(),
        }
    }

    /// The layer's output `[T·hidden]` for `x` `[b, s, hidden]`, and what its backward needs
    /// (when a graph is being recorded) or else the keys and values.
    fn run_forward(&self, x: &Tensor) -> Result<(Vec<f32>, Leftovers)> {
        let (b, s, nh, nkv, d) = self.dims();
        let l = &self.layer;
        let eps = l.eps as f32;
        let hidden = x.dim(2)?;
        let xv = view(x)?;
        let n1 = tensor(
            fused::rms_norm_rows(&xv, &vec_of(&l.input_norm)?, eps),
            (b * s, hidden),
        )?;
        let [(q, q_saved), (k, k_saved), (v, v_saved)]: [(Tensor, LinearSaved); 3] = self
            .linears_beside(&[Q, K, V], &n1)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("whole layer: q, k, v".into()))?;
        let norms = match &l.qk_norm {
            Some((qn, kn)) => Some((vec_of(qn)?, vec_of(kn)?)),
            None => None,
        };
        let q_rot = self.norm_rope(&view(&q)?, nh, norms.as_ref().map(|n| n.0.as_slice()));
        let k_rot = self.norm_rope(&view(&k)?, nkv, norms.as_ref().map(|n| n.1.as_slice()));
        let v_heads = self.transpose_heads(&view(&v)?, nkv, false);
        let (attended, probs) = self
            .attention()
            .forward(&q_rot, &k_rot, &v_heads, self.keep);
        let attended = tensor(self.transpose_heads(&attended, nh, true), (b * s, nh * d))?;
        let (o, o_saved) = self.linear(O, &attended)?;
        let mid: Vec<f32> = xv
            .iter()
            .zip(view(&o)?.iter())
            .map(|(a, b)| a + b)
            .collect();
        drop(o);
        let n2 = tensor(
            fused::rms_norm_rows(&mid, &vec_of(&l.post_norm)?, eps),
            (b * s, hidden),
        )?;
        let [(gate, gate_saved), (up, up_saved)]: [(Tensor, LinearSaved); 2] = self
            .linears_beside(&[GATE, UP], &n2)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("whole layer: gate, up".into()))?;
        let act = fused::silu_mul(&view(&gate)?, &view(&up)?);
        let act = tensor(act, gate.shape())?;
        let (down, down_saved) = self.linear(DOWN, &act)?;
        let out: Vec<f32> = mid
            .iter()
            .zip(view(&down)?.iter())
            .map(|(a, b)| a + b)
            .collect();
        let leftovers = match probs {
            Some(probs) => Leftovers::Saved(Box::new(Saved {
                q: q_saved,
                k: k_saved,
                v: v_saved,
                o: o_saved,
                gate: gate_saved,
                up: up_saved,
                down: down_saved,
                q_raw: q,
                k_raw: k,
                q_rot,
                k_rot,
                v_heads,
                probs,
                mid: tensor(mid, (b * s, hidden))?,
                gate_out: gate,
                up_out: up,
            })),
            None => Leftovers::Cache {
                k: k_rot,
                v: v_heads,
            },
        };
        Ok((out, leftovers))
    }

    /// The gradients of the layer's input (when it is on the graph) and of the packed
    /// adapters, from the output's gradient.
    fn run_backward(
        &self,
        x: &Tensor,
        want_input: bool,
        saved: &Saved,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Vec<Tensor>)> {
        let (b, s, nh, nkv, d) = self.dims();
        let l = &self.layer;
        let eps = l.eps as f32;
        let hidden = x.dim(2)?;
        let dy = grad.reshape((b * s, hidden))?.contiguous()?;
        let dy = view(&dy)?;
        let t = b * s;
        // Gradients come out in reverse order; kept per linear, they are packed in order.
        let mut by_linear: [Vec<Tensor>; 7] = Default::default();
        // MLP.
        let inter = saved.gate_out.dim(1)?;
        let mut d_act = vec![0f32; t * inter];
        self.linear_backward(
            DOWN,
            &saved.down,
            &dy,
            Some(&mut d_act),
            &mut by_linear[DOWN],
        )?;
        let (d_gate, d_up) =
            fused::silu_mul_backward(&d_act, &view(&saved.gate_out)?, &view(&saved.up_out)?);
        drop(d_act);
        let (d_n2, grads) = self.linears_backward_beside(
            &[(GATE, &saved.gate, &d_gate), (UP, &saved.up, &d_up)],
            true,
            t * hidden,
        )?;
        for (i, g) in [GATE, UP].into_iter().zip(grads) {
            by_linear[i] = g;
        }
        let post_w = vec_of(&l.post_norm)?;
        // Norm weights' gradients, in the slots of `LayerWeights::norms`.
        let mut norm_grads: [Option<Vec<f32>>; 4] = Default::default();
        for (slot, trained) in norm_grads.iter_mut().zip(self.trained_norms) {
            if trained {
                *slot = Some(Vec::new());
            }
        }
        if let Some(acc) = norm_grads[POST_NORM].as_mut() {
            *acc = vec![0f32; hidden];
            add_norm_weight_grad(&view(&saved.mid)?, &d_n2, eps, acc);
        }
        let mut d_mid = fused::rms_norm_rows_backward(&view(&saved.mid)?, &post_w, eps, &d_n2);
        d_mid.iter_mut().zip(dy.iter()).for_each(|(m, g)| *m += g);
        drop(dy);
        // Attention.
        let mut d_attended = vec![0f32; t * nh * d];
        self.linear_backward(
            O,
            &saved.o,
            &d_mid,
            Some(&mut d_attended),
            &mut by_linear[O],
        )?;
        let d_out = self.transpose_heads(&d_attended, nh, false);
        let (d_q_rot, d_k_rot, d_v) = self.attention().backward(
            &saved.q_rot,
            &saved.k_rot,
            &saved.v_heads,
            &saved.probs,
            &d_out,
        );
        let norms = match &l.qk_norm {
            Some((qn, kn)) => Some((vec_of(qn)?, vec_of(kn)?)),
            None => None,
        };
        for slot in [Q_NORM, K_NORM] {
            if let Some(acc) = norm_grads[slot].as_mut() {
                *acc = vec![0f32; d];
            }
        }
        let [_, _, q_acc, k_acc] = &mut norm_grads;
        let d_q = self.norm_rope_backward(
            &view(&saved.q_raw)?,
            &d_q_rot,
            nh,
            norms.as_ref().map(|n| n.0.as_slice()),
            q_acc.as_deref_mut(),
        );
        let d_k = self.norm_rope_backward(
            &view(&saved.k_raw)?,
            &d_k_rot,
            nkv,
            norms.as_ref().map(|n| n.1.as_slice()),
            k_acc.as_deref_mut(),
        );
        let d_v = self.transpose_heads(&d_v, nkv, true);
        // The input norm's output gradient, needed for the input's or the norm's own.
        let want_n1 = want_input || self.trained_norms[INPUT_NORM];
        let (d_n1, grads) = self.linears_backward_beside(
            &[
                (Q, &saved.q, &d_q),
                (K, &saved.k, &d_k),
                (V, &saved.v, &d_v),
            ],
            want_n1,
            t * hidden,
        )?;
        for (i, g) in [Q, K, V].into_iter().zip(grads) {
            by_linear[i] = g;
        }
        if let Some(acc) = norm_grads[INPUT_NORM].as_mut() {
            *acc = vec![0f32; hidden];
            add_norm_weight_grad(&view(x)?, &d_n1, eps, acc);
        }
        let d_x = if want_input {
            let in_w = vec_of(&l.input_norm)?;
            let mut d_x = fused::rms_norm_rows_backward(&view(x)?, &in_w, eps, &d_n1);
            d_x.iter_mut().zip(&d_mid).for_each(|(x, m)| *x += m);
            Some(tensor(d_x, (b, s, hidden))?)
        } else {
            None
        };
        let mut grads: Vec<Tensor> = by_linear.into_iter().flatten().collect();
        for g in norm_grads.into_iter().flatten() {
            let n = g.len();
            grads.push(tensor(g, n)?);
        }
        Ok((d_x, grads))
    }
}

impl CustomOp2 for WholeLayer {
    fn name(&self) -> &'static str {
        "whole-decoder-layer"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        _packed: &CpuStorage,
        _pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = x else {
            candle_core::bail!("whole layer: f32 only");
        };
        if !xl.is_contiguous() {
            candle_core::bail!("whole layer: contiguous input only");
        }
        let start = xl.start_offset();
        let n = xl.shape().elem_count();
        let x = Tensor::from_slice(
            &values[start..start + n],
            xl.shape(),
            &candle_core::Device::Cpu,
        )?;
        let (out, leftovers) = on_the_pool(|| self.run_forward(&x))?;
        if let Leftovers::Saved(saved) = leftovers {
            let mut slot = self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("whole layer: poisoned".into()))?;
            *slot = Some(Arc::from(saved));
        }
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("whole layer: poisoned".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("whole layer: no saved forward".into()))?;
        let x_in = x.detach();
        let (d_x, grads) = on_the_pool(|| self.run_backward(&x_in, x.track_op(), &saved, grad))?;
        let d_packed = if packed.track_op() && !grads.is_empty() {
            Some(Tensor::cat(&grads, 0)?)
        } else {
            None
        };
        Ok((d_x, d_packed))
    }
}
