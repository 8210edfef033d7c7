//! The language model: embeddings, decoder layers (GQA, SwiGLU), final norm. Qwen3's layers
//! normalise q and k per head; Qwen2's (Qwen2.5-VL) bias q, k and v instead.

use candle_core::{DType, Device, Tensor};

use crate::attend;
use crate::config::Qwen3VlConfig;
use crate::error::Result;
use crate::fused::{self, Visibility};
use crate::lora::Linear;
use crate::ops::{self, Mode, Pass};
use crate::weights::WeightFiles;
use crate::whole::{self, LayerWeights, LinearWeights, RopeTables};

/// Keys and values of one layer for the tokens seen so far (Fast mode only).
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
}

#[derive(Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Per-head RMSNorm weights of q and k (Qwen3 only).
    qk_norm: Option<(Tensor, Tensor)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f64,
}

#[derive(Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

#[derive(Clone)]
struct DecoderLayer {
    input_layernorm: Tensor,
    post_attention_layernorm: Tensor,
    attn: Attention,
    mlp: Mlp,
}

/// The decoder stack. Cloning shares the weights (candle tensors are reference-counted).
#[derive(Clone)]
pub struct TextModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    eps: f64,
    /// Train mode runs each layer as one node with a hand-written backward (`whole`), and a
    /// prefill runs each layer as one pass over slices, where they apply; off, the composed
    /// ops, kept as the reference.
    whole_layers: bool,
    /// Whether the whole layers' forward products read each frozen weight from a second,
    /// transposed copy (`Linear::weight_transposed`): on f32 CPU weights whose copies cost at
    /// most [`TRANSPOSED_COPIES_BYTES`] in all.
    transposed_copies: bool,
}

/// The most memory the frozen linears' transposed copies may take: every shape the CPU trains
/// and benches (the tiny, small and practice models, a few MB) has them, a 2B checkpoint (5.6 GB
/// of f32 linears) does not.
const TRANSPOSED_COPIES_BYTES: usize = 1 << 30;

fn linear(
    w: &WeightFiles,
    prefix: &str,
    out_dim: usize,
    in_dim: usize,
    bias: bool,
) -> Result<Linear> {
    let weight = w.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
    let bias = if bias {
        Some(w.get(&format!("{prefix}.bias"), &[out_dim])?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

impl TextModel {
    /// Prefix of the decoder's tensor names in HF's checkpoints.
    pub const PREFIX: &'static str = "model.language_model";

    /// Takes the decoder's tensors from `w`, checking each shape against `config`.
    pub fn load(w: &WeightFiles, config: &Qwen3VlConfig) -> Result<Self> {
        let t = &config.text_config;
        let p = Self::PREFIX;
        let hd = config.head_dim();
        let (h, nh, nkv, im) = (
            t.hidden_size,
            t.num_attention_heads,
            t.num_key_value_heads,
            t.intermediate_size,
        );
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for i in 0..t.num_hidden_layers {
            let lp = format!("{p}.layers.{i}");
            let (bias, o_bias) = config.attention_biases();
            let qk_norm = if config.qk_norm() {
                Some((
                    w.get(&format!("{lp}.self_attn.q_norm.weight"), &[hd])?,
                    w.get(&format!("{lp}.self_attn.k_norm.weight"), &[hd])?,
                ))
            } else {
                None
            };
            layers.push(DecoderLayer {
                input_layernorm: w.get(&format!("{lp}.input_layernorm.weight"), &[h])?,
                post_attention_layernorm: w
                    .get(&format!("{lp}.post_attention_layernorm.weight"), &[h])?,
                attn: Attention {
                    q_proj: linear(w, &format!("{lp}.self_attn.q_proj"), nh * hd, h, bias)?,
                    k_proj: linear(w, &format!("{lp}.self_attn.k_proj"), nkv * hd, h, bias)?,
                    v_proj: linear(w, &format!("{lp}.self_attn.v_proj"), nkv * hd, h, bias)?,
                    o_proj: linear(w, &format!("{lp}.self_attn.o_proj"), h, nh * hd, o_bias)?,
                    qk_norm,
                    heads: nh,
                    kv_heads: nkv,
                    head_dim: hd,
                    eps: t.rms_norm_eps,
                },
                mlp: Mlp {
                    gate_proj: linear(w, &format!("{lp}.mlp.gate_proj"), im, h, false)?,
                    up_proj: linear(w, &format!("{lp}.mlp.up_proj"), im, h, false)?,
                    down_proj: linear(w, &format!("{lp}.mlp.down_proj"), h, im, false)?,
                },
            });
        }
        let mut bytes = 0;
        let mut f32_cpu = true;
        for layer in &layers {
            for l in layer.linears() {
                let w = l.weight();
                bytes += w.elem_count() * w.dtype().size_in_bytes();
                f32_cpu &= w.dtype() == DType::F32 && w.device().is_cpu();
            }
        }
        Ok(Self {
            embed_tokens: w.get(&format!("{p}.embed_tokens.weight"), &[t.vocab_size, h])?,
            layers,
            norm: w.get(&format!("{p}.norm.weight"), &[h])?,
            eps: t.rms_norm_eps,
            whole_layers: true,
            transposed_copies: f32_cpu && bytes <= TRANSPOSED_COPIES_BYTES,
        })
    }

    /// The token embedding matrix, `[vocab, hidden]`; also `lm_head` when the embeddings are tied.
    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// Whether Train mode and prefills run whole layers (the default) or the composed
    /// reference ops.
    pub fn set_whole_layers(&mut self, on: bool) {
        self.whole_layers = on;
    }

    /// Whether whole layers are on (see [`Self::set_whole_layers`]).
    pub fn whole_layers(&self) -> bool {
        self.whole_layers
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Embeds token ids `[b, s]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        Ok(self
            .embed_tokens
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, s, ()))?)
    }

    /// Runs the decoder over `hidden` `[b, s, h]`. `visibility` says which keys each query
    /// sees (causal after `past` cached tokens, right padding); `deepstack[i]` (dense `[b, s, h]`)
    /// is added after layer i; `caches` (Fast mode) extend each layer's keys and values.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        mut hidden: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        visibility: &Visibility,
        deepstack: &[Tensor],
        mut caches: Option<&mut [LayerCache]>,
        pass: Pass,
    ) -> Result<Tensor> {
        let (b, s, _) = hidden.dims3()?;
        // The fused kernel masks in place on f32 CPU tensors; elsewhere an additive mask
        // tensor is built once for all layers.
        let mask = if fused::applies(&hidden) || (s == 1 && visibility.lens.is_none()) {
            None
        } else {
            Some(causal_mask(
                b,
                s,
                visibility.past,
                visibility.lens.as_deref(),
                hidden.device(),
            )?)
        };
        let attn_mask = AttnMask {
            tensor: mask.as_ref(),
            visibility,
        };
        let whole = self.whole_layers
            && visibility.past == 0
            && match pass.mode {
                Mode::Train => caches.is_none(),
                // A prefill into empty caches; one-token decoding keeps the composed layers.
                Mode::Fast => {
                    s > 1
                        && caches
                            .as_deref()
                            .is_none_or(|c| c.iter().all(|l| l.kv.is_none()))
                }
            };
        let mut tables = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let weights = whole
                .then(|| layer.weights(self.transposed_copies))
                .transpose()?;
            if let Some(weights) = weights.filter(|w| whole::applies(&hidden, w)) {
                let tables = match &tables {
                    Some(t) => t,
                    None => tables.insert(RopeTables::new(cos, sin)?),
                };
                hidden = match pass.mode {
                    Mode::Train => {
                        whole::forward(&hidden, &weights, tables, visibility, pass.lora)?
                    }
                    Mode::Fast => {
                        let (out, k, v) =
                            whole::prefill(&hidden, &weights, tables, visibility, pass.lora)?;
                        if let Some(cache) = caches.as_deref_mut().and_then(|c| c.get_mut(i)) {
                            cache.kv = Some((k, v));
                        }
                        out
                    }
                };
            } else {
                let cache = caches.as_deref_mut().and_then(|c| c.get_mut(i));
                hidden = layer.forward(&hidden, cos, sin, &attn_mask, cache, pass)?;
            }
            if let Some(extra) = deepstack.get(i) {
                hidden = (hidden + extra)?;
            }
        }
        Ok(ops::rms_norm(&hidden, &self.norm, self.eps, pass.mode)?)
    }

    /// Visits every linear layer with its PEFT module path (for LoRA).
    pub fn linears_mut(&mut self) -> Vec<(String, &'static str, &mut Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let lp = format!("{}.layers.{i}", Self::PREFIX);
            let a = &mut layer.attn;
            let m = &mut layer.mlp;
            out.push((format!("{lp}.self_attn.q_proj"), "q_proj", &mut a.q_proj));
            out.push((format!("{lp}.self_attn.k_proj"), "k_proj", &mut a.k_proj));
            out.push((format!("{lp}.self_attn.v_proj"), "v_proj", &mut a.v_proj));
            out.push((format!("{lp}.self_attn.o_proj"), "o_proj", &mut a.o_proj));
            out.push((format!("{lp}.mlp.gate_proj"), "gate_proj", &mut m.gate_proj));
            out.push((format!("{lp}.mlp.up_proj"), "up_proj", &mut m.up_proj));
            out.push((format!("{lp}.mlp.down_proj"), "down_proj", &mut m.down_proj));
        }
        out
    }

    /// Every RMSNorm weight under its HF name: each layer's input, post-attention, q and k
    /// norms, then the final norm.
    pub fn norms_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let lp = format!("{}.layers.{i}", Self::PREFIX);
            out.push((
                format!("{lp}.input_layernorm.weight"),
                &mut layer.input_layernorm,
            ));
            out.push((
                format!("{lp}.post_attention_layernorm.weight"),
                &mut layer.post_attention_layernorm,
            ));
            if let Some((q_norm, k_norm)) = &mut layer.attn.qk_norm {
                out.push((format!("{lp}.self_attn.q_norm.weight"), q_norm));
                out.push((format!("{lp}.self_attn.k_norm.weight"), k_norm));
            }
        }
        out.push((format!("{}.norm.weight", Self::PREFIX), &mut self.norm));
        out
    }

    /// The token embeddings, under their HF name, to train them.
    pub fn embed_tokens_mut(&mut self) -> (String, &mut Tensor) {
        (
            format!("{}.embed_tokens.weight", Self::PREFIX),
            &mut self.embed_tokens,
        )
    }

    /// Read-only twin of [`Self::linears_mut`].
    pub fn linears(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let lp = format!("{}.layers.{i}", Self::PREFIX);
            let a = &layer.attn;
            let m = &layer.mlp;
            out.push((format!("{lp}.self_attn.q_proj"), &a.q_proj));
            out.push((format!("{lp}.self_attn.k_proj"), &a.k_proj));
            out.push((format!("{lp}.self_attn.v_proj"), &a.v_proj));
            out.push((format!("{lp}.self_attn.o_proj"), &a.o_proj));
            out.push((format!("{lp}.mlp.gate_proj"), &m.gate_proj));
            out.push((format!("{lp}.mlp.up_proj"), &m.up_proj));
            out.push((format!("{lp}.mlp.down_proj"), &m.down_proj));
        }
        out
    }
}

impl DecoderLayer {
    /// The layer's weights as a whole-layer pass takes them.
    /// q, k, v, o, gate, up, down.
    fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    /// The layer's weights for a whole-layer pass, with the frozen weights' transposed copies
    /// when `transposed` (made on the first pass).
    fn weights(&self, transposed: bool) -> candle_core::Result<LayerWeights> {
        let lin = |l: &Linear| -> candle_core::Result<LinearWeights> {
            Ok(LinearWeights {
                weight: l.weight().clone(),
                transposed: transposed.then(|| l.weight_transposed()).transpose()?,
                bias: l.bias().cloned(),
                lora: l.lora().map(|w| (w.a.clone(), w.b.clone(), w.scale)),
            })
        };
        let (a, m) = (&self.attn, &self.mlp);
        Ok(LayerWeights {
            input_norm: self.input_layernorm.clone(),
            post_norm: self.post_attention_layernorm.clone(),
            qk_norm: a.qk_norm.clone(),
            linears: [
                lin(&a.q_proj)?,
                lin(&a.k_proj)?,
                lin(&a.v_proj)?,
                lin(&a.o_proj)?,
                lin(&m.gate_proj)?,
                lin(&m.up_proj)?,
                lin(&m.down_proj)?,
            ],
            heads: a.heads,
            kv_heads: a.kv_heads,
            head_dim: a.head_dim,
            eps: a.eps,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttnMask,
        cache: Option<&mut LayerCache>,
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let eps = self.attn.eps;
        let normed = ops::rms_norm(x, &self.input_layernorm, eps, pass.mode)?;
        let x = (x + self.attn.forward(&normed, cos, sin, mask, cache, pass)?)?;
        let normed = ops::rms_norm(&x, &self.post_attention_layernorm, eps, pass.mode)?;
        let gate = self.mlp.gate_proj.forward(&normed, pass)?;
        let up = self.mlp.up_proj.forward(&normed, pass)?;
        let act = (candle_nn::ops::silu(&gate)? * up)?;
        x + self.mlp.down_proj.forward(&act, pass)?
    }
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttnMask,
        cache: Option<&mut LayerCache>,
        pass: Pass,
    ) -> candle_core::Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let hd = self.head_dim;
        let q = self
            .q_proj
            .forward(x, pass)?
            .reshape((b, s, self.heads, hd))?;
        let k = self
            .k_proj
            .forward(x, pass)?
            .reshape((b, s, self.kv_heads, hd))?;
        let v = self
            .v_proj
            .forward(x, pass)?
            .reshape((b, s, self.kv_heads, hd))?;
        let (q, k) = match &self.qk_norm {
            Some((q_norm, k_norm)) => (
                ops::rms_norm(&q, q_norm, self.eps, pass.mode)?,
                ops::rms_norm(&k, k_norm, self.eps, pass.mode)?,
            ),
            None => (q, k),
        };
        let (q, k) = (q.transpose(1, 2)?, k.transpose(1, 2)?);
        let v = v.transpose(1, 2)?.contiguous()?;
        let q = ops::rope(&q.contiguous()?, cos, sin, pass.mode)?;
        let k = ops::rope(&k.contiguous()?, cos, sin, pass.mode)?;
        let (k, v) = match cache {
            Some(cache) => {
                let (k, v) = match &cache.kv {
                    Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                    None => (k, v),
                };
                cache.kv = Some((k.clone(), v.clone()));
                (k, v)
            }
            None => (k, v),
        };
        let kv_len = k.dim(2)?;
        let groups = self.heads / self.kv_heads;
        // Grouped-query attention without copying keys: fold each group's query heads into
        // the sequence axis of its key head.
        let q = q.reshape((b, self.kv_heads, groups * s, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        // A prefill on the CPU multiplies only the keys each block of rows sees. Decoding (one
        // row) and Train mode's composed path, the whole layers' reference, keep the products
        // below.
        if pass.mode == Mode::Fast && s > 1 && fused::applies(&q) {
            let attention = attend::Attention {
                b,
                kv_heads: self.kv_heads,
                groups,
                seq: s,
                keys: kv_len,
                d: hd,
                scale: scale as f32,
                fast: true,
                visibility: mask.visibility.clone(),
            };
            let out = fused::with_slice(&q, |q| {
                fused::with_slice(&k, |k| {
                    fused::with_slice(&v, |v| attention.forward(q, k, v, false).0)
                })
            })???;
            let out = Tensor::from_vec(out, (b, self.heads, s, hd), q.device())?
                .transpose(1, 2)?
                .reshape((b, s, self.heads * hd))?;
            return self.o_proj.forward(&out, pass);
        }
        let raw = q.matmul(&k.t()?)?;
        let probs = if fused::applies(&raw) {
            fused::masked_softmax(&raw, scale, s, mask.visibility, pass.mode == Mode::Fast)?
        } else {
            let scores = (raw * scale)?;
            let scores = match mask.tensor {
                Some(mask) => scores
                    .reshape((b, self.kv_heads, groups, s, kv_len))?
                    .broadcast_add(&mask.unsqueeze(2)?.to_dtype(scores.dtype())?)?
                    .reshape((b, self.kv_heads, groups * s, kv_len))?,
                None => scores,
            };
            ops::softmax_last(&scores, pass.mode)?
        };
        let out = probs
            .matmul(&v)?
            .reshape((b, self.heads, s, hd))?
            .transpose(1, 2)?
            .reshape((b, s, self.heads * hd))?;
        self.o_proj.forward(&out, pass)
    }
}

/// The attention mask in both forms: the rule for the fused kernel, the tensor for the rest.
struct AttnMask<'a> {
    tensor: Option<&'a Tensor>,
    visibility: &'a Visibility,
}

/// Additive causal mask `[b, 1, s, past + s]` that also hides padded keys (`lens[i]` real
/// tokens at the start of row i).
pub fn causal_mask(
    b: usize,
    s: usize,
    past: usize,
    lens: Option<&[usize]>,
    device: &Device,
) -> Result<Tensor> {
    const NEG: f32 = -1e9;
    let kv = past + s;
    let mut data = Vec::with_capacity(b * s * kv);
    for row in 0..b {
        let len = lens.and_then(|l| l.get(row).copied()).unwrap_or(kv);
        for i in 0..s {
            for j in 0..kv {
                let visible = j <= past + i && j < len.max(1);
                data.push(if visible { 0.0 } else { NEG });
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, 1, s, kv), device)?)
}
