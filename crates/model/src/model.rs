//! Qwen3-VL for conditional generation: vision tower + language model + lm_head, with the two
//! execution modes (see [`crate::ops::Mode`]) and LoRA adapters on the language model.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var, backprop::GradStore};

use crate::config::Qwen3VlConfig;
use crate::error::{ModelError, Result};
use crate::fused::Visibility;
use crate::lora::{LoraConfig, LoraWeights};
use crate::ops::{Mode, Pass};
use crate::preprocess::PreparedImage;
use crate::rng::SeededRng;
use crate::rope::{Positions, TextRope, rope_index};
use crate::text::{LayerCache, TextModel};
use crate::vision::VisionModel;
use crate::weights::WeightFiles;

/// The untied output head's HF name.
pub const LM_HEAD: &str = "lm_head.weight";

/// A rendered prompt: token ids with image placeholders expanded, and the images in order.
#[derive(Debug, Clone, Default)]
pub struct ModelInput {
    /// Token ids, each image placeholder expanded to one image token per merged patch.
    pub ids: Vec<u32>,
    /// The images, in the order their placeholders appear in `ids`.
    pub images: Vec<PreparedImage>,
}

/// Keys and values of a generation in progress, resettable and sized by what was seen.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    rope_delta: i64,
    lora: Option<bool>,
}

impl KvCache {
    /// Tokens the cache holds: the prompt plus every token decoded since.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the cache holds nothing (before a prefill or after a reset).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forgets everything, keeping the allocation-free empty state.
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            *layer = LayerCache::default();
        }
        self.len = 0;
        self.rope_delta = 0;
        self.lora = None;
    }
}

/// Which positions' logits a prefill returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's, `[1, vocab]`: enough to start generating.
    Last,
    /// Every position's, `[s, vocab]`.
    All,
}

/// A prompt and the response whose per-token log-probabilities are wanted.
#[derive(Debug, Clone)]
pub struct ScoreItem {
    /// The prompt, images included.
    pub prompt: ModelInput,
    /// The response token ids to score; must not be empty.
    pub response: Vec<u32>,
}

/// Per-token log-probabilities of a batch of responses, flat, with each item's span.
#[derive(Debug, Clone)]
pub struct Scored {
    /// `[total response tokens]`, f32, carrying gradient in Train mode.
    pub logprobs: Tensor,
    /// (start, len) of each item in `logprobs`.
    pub spans: Vec<(usize, usize)>,
}

/// A batch's rows at its response positions (final hidden rows, or their log-softmax), the
/// response tokens, and each item's span.
type ResponseRows = (Tensor, Vec<u32>, Vec<(usize, usize)>);

/// [`Scored`] with each position's top-k, from [`Qwen3Vl::score_top_k`].
#[derive(Debug, Clone)]
pub struct ScoredTopK {
    /// The response tokens' log-probabilities.
    pub scored: Scored,
    /// `[tokens × k]`, row-major: this model's k likeliest tokens at each response position,
    /// likeliest first (ties: the lower id).
    pub indices: Vec<u32>,
    /// `[tokens, k]`: their log-probabilities, carrying gradient in Train mode.
    pub top: Tensor,
    /// `[tokens, k]`: the log-probabilities at the indices asked for, when asked.
    pub at: Option<Tensor>,
}

/// The `k` largest entries of a row, largest first, ties to the lower index; a NaN sorts last.
pub fn top_k_indices(row: &[f32], k: usize) -> Vec<u32> {
    let order = |a: &u32, b: &u32| {
        let (x, y) = (row[*a as usize], row[*b as usize]);
        y.partial_cmp(&x)
            .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
            .then(a.cmp(b))
    };
    let mut all: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(all.len());
    if k < all.len() {
        all.select_nth_unstable_by(k, order);
        all.truncate(k);
    }
    all.sort_by(order);
    all
}

/// One prepared row: embeddings, positions and the DeepStack additions.
struct Row {
    embeds: Tensor,
    positions: Positions,
    delta: i64,
    deepstack: Vec<Tensor>,
}

/// The model.
pub struct Qwen3Vl {
    config: Qwen3VlConfig,
    vision: VisionModel,
    text: TextModel,
    lm_head: Tensor,
    rope: TextRope,
    device: Device,
    dtype: DType,
    lora: Option<LoraConfig>,
}

impl Qwen3Vl {
    /// Loads the weights of a model directory whose config has been read.
    pub fn load(dir: &Path, config: Qwen3VlConfig, device: &Device, dtype: DType) -> Result<Self> {
        let weights = WeightFiles::open(dir, device, dtype)?;
        let vision = VisionModel::load(&weights, &config)?;
        let text = TextModel::load(&weights, &config)?;
        let t = &config.text_config;
        let lm_head = if config.tie_word_embeddings() {
            text.embed_tokens().clone()
        } else {
            weights.get(LM_HEAD, &[t.vocab_size, t.hidden_size])?
        };
        weights.finish()?;
        let rope = TextRope::new(
            config.head_dim(),
            config.rope_theta(),
            &config.mrope_section(),
            config.mrope_interleaved(),
        );
        Ok(Self {
            config,
            vision,
            text,
            lm_head,
            rope,
            device: device.clone(),
            dtype,
            lora: None,
        })
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &Qwen3VlConfig {
        &self.config
    }
    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The dtype of the frozen weights; adapter weights stay f32.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The longest sequence the model takes, in tokens (`max_position_embeddings`).
    pub fn context_limit(&self) -> usize {
        self.config.text_config.max_position_embeddings
    }

    /// An empty cache with one slot per decoder layer, for [`Self::prefill`] and [`Self::decode`].
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            layers: vec![LayerCache::default(); self.text.num_layers()],
            len: 0,
            rope_delta: 0,
            lora: None,
        }
    }

    fn check_input(&self, input: &ModelInput) -> Result<()> {
        if input.ids.is_empty() {
            return Err(ModelError::Input("empty prompt".into()));
        }
        if input.ids.len() > self.context_limit() {
            return Err(ModelError::ContextOverflow {
                tokens: input.ids.len(),
                limit: self.context_limit(),
            });
        }
        let vocab = self.config.text_config.vocab_size;
        if let Some(bad) = input.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let merge = self.config.vision_config.spatial_merge_size;
        let placeholders = input
            .ids
            .iter()
            .filter(|&&id| id == self.config.image_token_id)
            .count();
        let wanted: usize = input.images.iter().map(|im| im.num_tokens(merge)).sum();
        if placeholders != wanted {
            return Err(ModelError::ImageCountMismatch {
                placeholders,
                images: wanted,
            });
        }
        let patch_dim = self.config.vision_config.in_channels
            * self.config.vision_config.temporal_patch_size
            * self.config.vision_config.patch_size.pow(2);
        if let Some(im) = input.images.iter().find(|im| im.patch_dim != patch_dim) {
            return Err(ModelError::Input(format!(
                "image patches of {} values, the vision tower takes {patch_dim}",
                im.patch_dim
            )));
        }
        Ok(())
    }

    /// Embeds one prompt, runs the (frozen) vision tower and places its outputs.
    fn prepare_row(&self, input: &ModelInput) -> Result<Row> {
        self.check_input(input)?;
        let s = input.ids.len();
        let ids = Tensor::new(input.ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut embeds = self.text.embed(&ids)?.squeeze(0)?;
        let merge = self.config.vision_config.spatial_merge_size;
        let grids: Vec<_> = input.images.iter().map(|im| im.grid).collect();
        let (positions, delta) = rope_index(&input.ids, self.config.image_token_id, &grids, merge);
        let mut deepstack = Vec::new();
        if !input.images.is_empty() {
            let pixels: Vec<f32> = input
                .images
                .iter()
                .flat_map(|im| im.pixels.iter().copied())
                .collect();
            let patches: usize = input.images.iter().map(|im| im.num_patches()).sum();
            let pixels =
                Tensor::from_vec(pixels, (patches, input.images[0].patch_dim), &self.device)?;
            let out = self.vision.forward(&pixels, &grids, Mode::Fast)?;
            let slots: Vec<u32> = input
                .ids
                .iter()
                .enumerate()
                .filter(|(_, id)| **id == self.config.image_token_id)
                .map(|(i, _)| i as u32)
                .collect();
            let slots = Tensor::new(slots.as_slice(), &self.device)?;
            let hidden = embeds.dim(1)?;
            let zeros = Tensor::zeros((s, hidden), self.dtype, &self.device)?;
            let placed = zeros.index_add(&slots, &out.embeds.to_dtype(self.dtype)?, 0)?;
            let ones = Tensor::ones((slots.dim(0)?, 1), self.dtype, &self.device)?;
            let is_image =
                Tensor::zeros((s, 1), self.dtype, &self.device)?.index_add(&slots, &ones, 0)?;
            let keep = (1.0 - &is_image)?;
            embeds = (embeds.broadcast_mul(&keep)? + placed)?;
            for feature in &out.deepstack {
                deepstack.push(
                    zeros
                        .index_add(&slots, &feature.to_dtype(self.dtype)?, 0)?
                        .unsqueeze(0)?,
                );
            }
        }
        Ok(Row {
            embeds: embeds.unsqueeze(0)?,
            positions,
            delta,
            deepstack,
        })
    }

    /// lm_head on `[n, hidden]` rows, in f32.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(hidden.matmul(&self.lm_head.t()?)?.to_dtype(DType::F32)?)
    }

    /// Fast mode: runs a prompt into a fresh cache and returns logits `[positions, vocab]`.
    ///
    /// A prompt with images runs on one of the compute pool's threads (see `on_the_pool`):
    /// the vision towers' many parallel loops then split by work stealing, not by a hand-over
    /// from the caller's thread for each (image prompts 20-40% faster). A text prompt stays on
    /// the caller's thread: on the pool, the small shape's prefill lost a third in some rounds
    /// of `bench model` run between PyTorch's (bench/RESULTS.md).
    pub fn prefill(
        &self,
        cache: &mut KvCache,
        input: &ModelInput,
        lora: bool,
        keep: Logits,
    ) -> Result<Tensor> {
        if input.images.is_empty() {
            return self.prefill_here(cache, input, lora, keep);
        }
        crate::whole::on_the_pool(|| self.prefill_here(cache, input, lora, keep))
    }

    fn prefill_here(
        &self,
        cache: &mut KvCache,
        input: &ModelInput,
        lora: bool,
        keep: Logits,
    ) -> Result<Tensor> {
        cache.reset();
        let row = self.prepare_row(input)?;
        let s = input.ids.len();
        let (cos, sin) = self
            .rope
            .tables(std::slice::from_ref(&row.positions), &self.device)?;
        let hidden = self.text.forward(
            row.embeds,
            &cos,
            &sin,
            &Visibility {
                past: 0,
                lens: None,
            },
            &row.deepstack,
            Some(&mut cache.layers),
            Pass::fast(lora),
        )?;
        cache.len = s;
        cache.rope_delta = row.delta;
        cache.lora = Some(lora);
        let hidden = hidden.squeeze(0)?;
        let hidden = match keep {
            Logits::All => hidden,
            Logits::Last => hidden.narrow(0, s - 1, 1)?,
        };
        self.logits(&hidden)
    }

    /// Fast mode: feeds one token after a prefill and returns its logits `[vocab]`. Unlike an
    /// image prompt's prefill it stays on the caller's thread: one token's work is as short
    /// as the hand-over to the pool and back (the tiny shape's decode fell from 22k to 14k
    /// tokens/s on the pool).
    pub fn decode(&self, cache: &mut KvCache, token: u32, lora: bool) -> Result<Tensor> {
        match cache.lora {
            None => return Err(ModelError::Input("decode before prefill".into())),
            Some(l) if l != lora => {
                return Err(ModelError::Input(format!(
                    "decode with LoRA {} on a cache filled with LoRA {}",
                    if lora { "on" } else { "off" },
                    if l { "on" } else { "off" }
                )));
            }
            Some(_) => {}
        }
        if cache.len + 1 > self.context_limit() {
            return Err(ModelError::ContextOverflow {
                tokens: cache.len + 1,
                limit: self.context_limit(),
            });
        }
        let vocab = self.config.text_config.vocab_size;
        if token as usize >= vocab {
            return Err(ModelError::Input(format!(
                "token id {token} outside the vocabulary of {vocab}"
            )));
        }
        let ids = Tensor::new(&[[token]], &self.device)?;
        let embeds = self.text.embed(&ids)?;
        let pos = Positions::sequential(cache.len as i64 + cache.rope_delta, 1);
        let (cos, sin) = self.rope.tables(&[pos], &self.device)?;
        let hidden = self.text.forward(
            embeds,
            &cos,
            &sin,
            &Visibility {
                past: cache.len,
                lens: None,
            },
            &[],
            Some(&mut cache.layers),
            Pass::fast(lora),
        )?;
        cache.len += 1;
        Ok(self.logits(&hidden.squeeze(0)?)?.squeeze(0)?)
    }

    /// Train mode: final hidden states `[b, longest, hidden]` of right-padded rows, with each
    /// row's real length. Differentiable with respect to the LoRA weights.
    pub fn forward_train(&self, inputs: &[ModelInput], lora: bool) -> Result<(Tensor, Vec<usize>)> {
        if inputs.is_empty() {
            return Err(ModelError::Input("empty batch".into()));
        }
        let rows = inputs
            .iter()
            .map(|input| self.prepare_row(input))
            .collect::<Result<Vec<_>>>()?;
        let lens: Vec<usize> = inputs.iter().map(|i| i.ids.len()).collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        let hidden_size = self.config.text_config.hidden_size;
        let layers = self.config.vision_config.deepstack_visual_indexes.len();
        let mut embeds = Vec::with_capacity(rows.len());
        let mut positions = Vec::with_capacity(rows.len());
        let mut deepstack: Vec<Vec<Tensor>> = vec![Vec::new(); layers];
        let any_images = rows.iter().any(|r| !r.deepstack.is_empty());
        for row in rows {
            let len = row.positions.len();
            let pad = longest - len;
            let mut p = row.positions;
            let next =
                p.t.iter()
                    .chain(&p.h)
                    .chain(&p.w)
                    .copied()
                    .max()
                    .unwrap_or(-1)
                    + 1;
            let filler = Positions::sequential(next, pad);
            p.t.extend(filler.t);
            p.h.extend(filler.h);
            p.w.extend(filler.w);
            positions.push(p);
            embeds.push(pad_seq(&row.embeds, pad)?);
            if any_images {
                for (k, slot) in deepstack.iter_mut().enumerate() {
                    let extra = match row.deepstack.get(k) {
                        Some(t) => pad_seq(t, pad)?,
                        None => Tensor::zeros((1, longest, hidden_size), self.dtype, &self.device)?,
                    };
                    slot.push(extra);
                }
            }
        }
        let embeds = Tensor::cat(&embeds, 0)?;
        let deepstack = if any_images {
            deepstack
                .iter()
                .map(|rows| Tensor::cat(rows, 0))
                .collect::<candle_core::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let (cos, sin) = self.rope.tables(&positions, &self.device)?;
        let hidden = self.text.forward(
            embeds,
            &cos,
            &sin,
            &Visibility {
                past: 0,
                lens: Some(lens.clone()),
            },
            &deepstack,
            None,
            Pass::train(lora),
        )?;
        Ok((hidden, lens))
    }

    /// All logits `[s, vocab]` of one prompt, in either mode (for comparisons with other
    /// implementations).
    pub fn full_logits(&self, input: &ModelInput, mode: Mode, lora: bool) -> Result<Tensor> {
        match mode {
            Mode::Fast => self.prefill(&mut self.new_cache(), input, lora, Logits::All),
            Mode::Train => {
                let (hidden, _) = self.forward_train(std::slice::from_ref(input), lora)?;
                self.logits(&hidden.squeeze(0)?)
            }
        }
    }

    /// Train mode: log-probabilities of each response token given its prompt, computing the
    /// lm_head only at response positions. The forward runs on the compute pool, as an image
    /// prompt's [`Self::prefill`] does.
    ///
    /// On f32 CPU tensors with whole layers on, the head, the log-softmax and the pick are
    /// one node (`head`), which keeps no `[tokens, vocab]` tensor for the backward; the
    /// composed ops stay the reference.
    pub fn score(&self, items: &[ScoreItem], lora: bool) -> Result<Scored> {
        crate::whole::on_the_pool(|| {
            let (rows, targets, spans) = self.response_rows(items, lora)?;
            let whole = self.text.whole_layers()
                && crate::fused::applies(&rows)
                && crate::fused::applies(&self.lm_head);
            let logprobs = if whole {
                crate::head::response_log_probs(&rows, &self.lm_head, &targets)?
            } else {
                let logp = candle_nn::ops::log_softmax(&self.logits(&rows)?, D::Minus1)?;
                let targets = Tensor::new(targets.as_slice(), &self.device)?.unsqueeze(1)?;
                logp.gather(&targets, 1)?.squeeze(1)?
            };
            Ok(Scored { logprobs, spans })
        })
    }

    /// [`Self::score`], and at every response position the `k` likeliest tokens of this model
    /// with their log-probabilities (over the whole vocabulary, not renormalised), and the
    /// log-probabilities at `at` (`[tokens × k]`, row-major) when given: what top-k
    /// distillation needs from the student (its top-k) and the teacher (its values there, and
    /// its own top-k to compare hints by).
    pub fn score_top_k(
        &self,
        items: &[ScoreItem],
        lora: bool,
        k: usize,
        at: Option<&[u32]>,
    ) -> Result<ScoredTopK> {
        let (logp, targets, spans) =
            crate::whole::on_the_pool(|| self.response_log_softmax(items, lora))?;
        let (n, vocab) = logp.dims2()?;
        if k == 0 || k > vocab {
            return Err(ModelError::Input(format!(
                "top-k needs 1 <= k <= {vocab}, not {k}"
            )));
        }
        let picked = Tensor::new(targets.as_slice(), &self.device)?.unsqueeze(1)?;
        let logprobs = logp.gather(&picked, 1)?.squeeze(1)?;
        let rows: Vec<Vec<f32>> = logp.detach().to_vec2()?;
        let mut indices = Vec::with_capacity(n * k);
        for row in &rows {
            indices.extend(top_k_indices(row, k));
        }
        let index = Tensor::from_slice(&indices, (n, k), &self.device)?;
        let top = logp.gather(&index, 1)?;
        let at = match at {
            None => None,
            Some(at) => {
                if at.len() != n * k {
                    return Err(ModelError::Input(format!(
                        "{} indices to read for {n} positions of {k}",
                        at.len()
                    )));
                }
                if let Some(bad) = at.iter().find(|&&t| t as usize >= vocab) {
                    return Err(ModelError::Input(format!(
                        "token {bad} outside the vocabulary of {vocab}"
                    )));
                }
                let index = Tensor::from_slice(at, (n, k), &self.device)?;
                Some(logp.gather(&index, 1)?)
            }
        };
        Ok(ScoredTopK {
            scored: Scored { logprobs, spans },
            indices,
            top,
            at,
        })
    }

    /// The log-softmax `[response tokens, vocab]` at every response position of a batch, the
    /// response tokens, and each item's span.
    fn response_log_softmax(&self, items: &[ScoreItem], lora: bool) -> Result<ResponseRows> {
        let (rows, targets, spans) = self.response_rows(items, lora)?;
        let logp = candle_nn::ops::log_softmax(&self.logits(&rows)?, D::Minus1)?;
        Ok((logp, targets, spans))
    }

    /// The final hidden rows `[response tokens, hidden]` that predict each response token of
    /// a batch, the response tokens, and each item's span.
    fn response_rows(&self, items: &[ScoreItem], lora: bool) -> Result<ResponseRows> {
        let mut inputs = Vec::with_capacity(items.len());
        for item in items {
            if item.response.is_empty() {
                return Err(ModelError::Input("a response to score is empty".into()));
            }
            let mut input = item.prompt.clone();
            input
                .ids
                .extend_from_slice(&item.response[..item.response.len() - 1]);
            inputs.push(input);
        }
        let (hidden, lens) = self.forward_train(&inputs, lora)?;
        let (b, longest, h) = hidden.dims3()?;
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut spans = Vec::with_capacity(b);
        for (i, item) in items.iter().enumerate() {
            let p = item.prompt.ids.len();
            spans.push((targets.len(), item.response.len()));
            for (j, &token) in item.response.iter().enumerate() {
                rows.push((i * longest + p - 1 + j) as u32);
                targets.push(token);
            }
            debug_assert!(p - 1 + item.response.len() <= lens[i]);
        }
        let vocab = self.config.text_config.vocab_size;
        if let Some(bad) = targets.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Input(format!(
                "response token {bad} outside the vocabulary of {vocab}"
            )));
        }
        let rows = Tensor::new(rows.as_slice(), &self.device)?;
        let picked = hidden.reshape((b * longest, h))?.index_select(&rows, 0)?;
        Ok((picked, targets, spans))
    }

    /// Whether Train mode runs each decoder layer as one node with a hand-written backward,
    /// and a prefill each layer as one pass (the default, where it applies: CPU, f32), or as
    /// composed ops, the reference the whole layers are tested against.
    pub fn set_whole_layers(&mut self, on: bool) {
        self.text.set_whole_layers(on);
    }

    /// A second model on the same frozen weights, with no adapter. The policy and the trainer
    /// each attach their own LoRA while the base, the bulk of the memory (on one GPU, the part
    /// that must not be held twice), stays one copy: candle tensors are reference-counted and
    /// never written in place, and merging an adapter replaces a layer's tensor in that model
    /// alone.
    pub fn share_base(&self) -> Self {
        let mut text = self.text.clone();
        for (_, _, linear) in text.linears_mut() {
            linear.set_lora(None);
        }
        Self {
            config: self.config.clone(),
            vision: self.vision.clone(),
            text,
            lm_head: self.lm_head.clone(),
            rope: self.rope.clone(),
            device: self.device.clone(),
            dtype: self.dtype,
            lora: None,
        }
    }

    /// Adds fresh adapters (A random as PEFT's Kaiming-uniform init, B zero) to every target.
    pub fn attach_lora(&mut self, config: LoraConfig, seed: u64) -> Result<()> {
        if config.rank == 0 {
            return Err(ModelError::Input("LoRA rank must be positive".into()));
        }
        let mut rng = SeededRng::new(seed);
        let device = self.device.clone();
        for (_, module, linear) in self.text.linears_mut() {
            if !config.targets(module) {
                continue;
            }
            let (out_f, in_f) = (linear.out_features(), linear.in_features());
            let bound = 1.0 / (in_f as f64).sqrt();
            let a = Tensor::from_vec(
                rng.uniforms(config.rank * in_f, bound),
                (config.rank, in_f),
                &device,
            )?;
            let b = Tensor::zeros((out_f, config.rank), DType::F32, &device)?;
            linear.set_lora(Some(LoraWeights {
                a: Var::from_tensor(&a)?,
                b: Var::from_tensor(&b)?,
                scale: config.scale(),
            }));
        }
        self.lora = Some(config);
        Ok(())
    }

    /// Installs given adapter tensors (module path → (A, B)), replacing any present.
    pub(crate) fn set_lora_weights(
        &mut self,
        config: LoraConfig,
        mut tensors: std::collections::BTreeMap<String, (Tensor, Tensor)>,
    ) -> Result<()> {
        for (path, _, linear) in self.text.linears_mut() {
            linear.set_lora(None);
            if let Some((a, b)) = tensors.remove(&path) {
                let expected_a = [config.rank, linear.in_features()];
                let expected_b = [linear.out_features(), config.rank];
                if a.dims() != expected_a {
                    return Err(ModelError::WrongShape {
                        name: format!("{path}.lora_A.weight"),
                        found: a.dims().to_vec(),
                        expected: expected_a.to_vec(),
                    });
                }
                if b.dims() != expected_b {
                    return Err(ModelError::WrongShape {
                        name: format!("{path}.lora_B.weight"),
                        found: b.dims().to_vec(),
                        expected: expected_b.to_vec(),
                    });
                }
                linear.set_lora(Some(LoraWeights {
                    a: Var::from_tensor(&a.to_dtype(DType::F32)?.to_device(&self.device)?)?,
                    b: Var::from_tensor(&b.to_dtype(DType::F32)?.to_device(&self.device)?)?,
                    scale: config.scale(),
                }));
            }
        }
        if let Some(path) = tensors.keys().next() {
            return Err(ModelError::Input(format!(
                "adapter names module {path}, which this model does not have"
            )));
        }
        self.lora = Some(config);
        Ok(())
    }

    /// The settings of the attached adapters, if any.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Every adapter as (module path, A, B): the trainer's parameters.
    pub fn lora_weights(&self) -> Vec<(String, LoraWeights)> {
        self.text
            .linears()
            .into_iter()
            .filter_map(|(path, lin)| lin.lora().map(|l| (path, l.clone())))
            .collect()
    }

    /// The adapters' trainable variables, in a fixed order.
    pub fn lora_vars(&self) -> Vec<Var> {
        self.lora_weights()
            .into_iter()
            .flat_map(|(_, l)| [l.a, l.b])
            .collect()
    }

    /// Gradients of every adapter variable; fails if any has none, which means the loss was
    /// computed in Fast mode or with LoRA off.
    pub fn lora_gradients(&self, grads: &GradStore) -> Result<Vec<(Var, Tensor)>> {
        let mut out = Vec::new();
        for (path, lora) in self.lora_weights() {
            for (var, which) in [(lora.a, "lora_A"), (lora.b, "lora_B")] {
                let Some(g) = grads.get(var.as_tensor()) else {
                    return Err(ModelError::ModeMismatch(format!(
                        "the gradient of {path}.{which}"
                    )));
                };
                out.push((var.clone(), g.clone()));
            }
        }
        Ok(out)
    }

    /// Makes base weights trainable beside the adapter, the way pretraining trains every
    /// weight: the language model's RMSNorm weights (`norms`; their q/k norms bound how sharp
    /// attention can be) and the token embeddings with the head (`embeddings`: the one tied
    /// matrix, or the embeddings and then an untied `lm_head`). Returns each under its HF
    /// name; the optimiser updates them in place, and [`Self::text_weights`] hands them back
    /// for saving.
    pub fn train_base_weights(
        &mut self,
        norms: bool,
        embeddings: bool,
    ) -> Result<Vec<(String, Var)>> {
        let mut out = Vec::new();
        if norms {
            for (name, weight) in self.text.norms_mut() {
                let var = Var::from_tensor(weight)?;
                *weight = var.as_tensor().clone();
                out.push((name, var));
            }
        }
        if embeddings {
            let tied = self.config.tie_word_embeddings();
            let (name, weight) = self.text.embed_tokens_mut();
            let var = Var::from_tensor(weight)?;
            *weight = var.as_tensor().clone();
            out.push((name, var.clone()));
            if tied {
                self.lm_head = var.as_tensor().clone();
            } else {
                let head = Var::from_tensor(&self.lm_head)?;
                self.lm_head = head.as_tensor().clone();
                out.push((LM_HEAD.to_owned(), head));
            }
        }
        Ok(out)
    }

    /// The language model's weights a warm start can change, under their HF names: the
    /// linears (without adapters; merged after [`Self::merge_lora`]), the norms, the token
    /// embeddings and an untied head.
    pub fn text_weights(&mut self) -> Vec<(String, Tensor)> {
        let mut out = self.text_linear_weights();
        out.extend(
            self.text
                .norms_mut()
                .into_iter()
                .map(|(name, w)| (name, w.clone())),
        );
        let (name, w) = self.text.embed_tokens_mut();
        out.push((name, w.clone()));
        if !self.config.tie_word_embeddings() {
            out.push((LM_HEAD.to_owned(), self.lm_head.clone()));
        }
        out
    }

    /// The language model's linear weights under their HF names (`...q_proj.weight`), without
    /// adapters: after [`Self::merge_lora`], what a merged model's safetensors hold.
    pub fn text_linear_weights(&self) -> Vec<(String, Tensor)> {
        self.text
            .linears()
            .into_iter()
            .map(|(path, linear)| (format!("{path}.weight"), linear.weight().clone()))
            .collect()
    }

    /// Folds every adapter into its base weight (for export of a merged model).
    pub fn merge_lora(&mut self) -> Result<()> {
        for (_, _, linear) in self.text.linears_mut() {
            linear.merge()?;
        }
        self.lora = None;
        Ok(())
    }
}

fn pad_seq(t: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    if pad == 0 {
        return Ok(t.clone());
    }
    t.pad_with_zeros(1, 0, pad)
}

#[cfg(test)]
mod tests {
    use super::top_k_indices;

    #[test]
    fn top_k_is_largest_first_with_ties_to_the_lower_id_and_nan_last() {
        let row = [0.1, 0.5, f32::NAN, 0.5, -1.0, 0.9];
        assert_eq!(top_k_indices(&row, 3), [5, 1, 3]);
        assert_eq!(top_k_indices(&row, 6), [5, 1, 3, 0, 4, 2]);
        assert_eq!(top_k_indices(&row, 10).len(), 6);
        assert_eq!(top_k_indices(&[2.0], 1), [0]);
    }
}
