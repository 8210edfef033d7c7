//! Linear layers with an optional LoRA adapter in PEFT's layout.
//!
//! PEFT stores `lora_A` as `[r, in]` and `lora_B` as `[out, r]` and adds
//! `scale * x Aᵀ Bᵀ` (scale = alpha / r) to the frozen layer's output. `A` starts random and `B`
//! zero, so a fresh adapter leaves the model unchanged. The adapter's tensors are candle `Var`s
//! in f32 whatever the base dtype, so the optimiser updates them in place and a bf16 base keeps
//! full-precision adapter weights.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Result, Tensor, Var};

use crate::ops::{Mode, Pass};

/// Which linear layers carry adapters, and how large.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of each adapter: the inner width of `B A`.
    pub rank: usize,
    /// LoRA's alpha; the update is scaled by alpha/r (or alpha/√r with rsLoRA).
    pub alpha: f64,
    /// Module names as PEFT spells them (`q_proj`, `down_proj`, ...), matched within the
    /// language model.
    pub target_modules: Vec<String>,
    /// rsLoRA scales by alpha/√r instead of alpha/r.
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The seven linears of every decoder layer, the usual choice for GUI-agent RL.
    pub const DEFAULT_TARGETS: [&'static str; 7] = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];

    /// Rank `rank` and `alpha` on [`Self::DEFAULT_TARGETS`], without rsLoRA.
    pub fn new(rank: usize, alpha: f64) -> Self {
        Self {
            rank,
            alpha,
            target_modules: Self::DEFAULT_TARGETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            use_rslora: false,
        }
    }

    /// The factor the adapter's output is multiplied by: alpha/r, or alpha/√r with rsLoRA.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Whether linears named `module` (e.g. `q_proj`) carry an adapter.
    pub fn targets(&self, module: &str) -> bool {
        self.target_modules.iter().any(|t| t == module)
    }
}

/// One adapter's trainable pair.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    /// `[r, in]`
    pub a: Var,
    /// `[out, r]`
    pub b: Var,
    /// The factor `x Aᵀ Bᵀ` is multiplied by, from [`LoraConfig::scale`].
    pub scale: f64,
}

/// A frozen linear layer, `y = x Wᵀ + b`, with an optional adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`
    weight: Tensor,
    bias: Option<Tensor>,
    lora: Option<LoraWeights>,
    /// The weight as `[in, out]`, made on first use (see [`Self::weight_transposed`]) and
    /// shared by clones until [`Self::merge`] changes the weight.
    transposed: Arc<OnceLock<Tensor>>,
}

impl Linear {
    /// A frozen layer from `weight` `[out, in]` and an optional bias `[out]`; no adapter yet.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
            transposed: Arc::default(),
        }
    }

    /// The frozen weight as a contiguous `[in, out]`: a second copy, made on the first call.
    /// The forward's product `x Wᵀ` packs a row-major `[out, in]` weight by reading it one
    /// value at a time, on every call (15% of the small bench shape's prefill); packed from
    /// this copy, it reads whole vectors.
    pub fn weight_transposed(&self) -> Result<Tensor> {
        if let Some(t) = self.transposed.get() {
            return Ok(t.clone());
        }
        let t = self.weight.t()?.contiguous()?;
        Ok(self.transposed.get_or_init(|| t).clone())
    }

    /// The frozen weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The frozen bias, `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Width of the input.
    pub fn in_features(&self) -> usize {
        self.weight.dims().get(1).copied().unwrap_or(0)
    }

    /// Width of the output.
    pub fn out_features(&self) -> usize {
        self.weight.dims().first().copied().unwrap_or(0)
    }

    /// The adapter, if one is attached.
    pub fn lora(&self) -> Option<&LoraWeights> {
        self.lora.as_ref()
    }

    /// Attaches an adapter, replacing any there was; `None` removes it.
    pub fn set_lora(&mut self, lora: Option<LoraWeights>) {
        self.lora = lora;
    }

    /// Applies the layer to `[..., in]`.
    pub fn forward(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.contiguous()?
        };
        let lora = self.lora.as_ref().filter(|_| pass.lora);
        let detach = |l: &LoraWeights| match pass.mode {
            Mode::Fast => (l.a.as_tensor().detach(), l.b.as_tensor().detach()),
            Mode::Train => (l.a.as_tensor().clone(), l.b.as_tensor().clone()),
        };
        match lora {
            // One fused node when every operand shares the CPU f32 kernels.
            Some(lora)
                if crate::fused::applies(&x)
                    && self.weight.dtype() == x.dtype()
                    && self.bias.is_none() =>
            {
                let (a, b) = detach(lora);
                crate::frozen::lora_matmul(&x, &self.weight, &a, &b, lora.scale)
            }
            _ => {
                let mut y = crate::frozen::frozen_matmul(&x, &self.weight)?;
                if let Some(bias) = &self.bias {
                    y = y.broadcast_add(bias)?;
                }
                if let Some(lora) = lora {
                    let (a, b) = detach(lora);
                    let dims = x.dims();
                    let rows: usize = dims[..dims.len() - 1].iter().product();
                    let delta = x
                        .reshape((rows, self.in_features()))?
                        .to_dtype(DType::F32)?
                        .matmul(&a.t()?)?
                        .matmul(&b.t()?)?
                        .affine(lora.scale, 0.0)?
                        .reshape(y.shape())?;
                    let dtype = y.dtype();
                    y = (y + delta.to_dtype(dtype)?)?;
                }
                Ok(y)
            }
        }
    }

    /// Folds the adapter into the frozen weight and drops it.
    pub fn merge(&mut self) -> Result<()> {
        if let Some(lora) = self.lora.take() {
            let delta = lora
                .b
                .as_tensor()
                .matmul(lora.a.as_tensor())?
                .affine(lora.scale, 0.0)?;
            self.weight =
                (self.weight.to_dtype(DType::F32)? + delta)?.to_dtype(self.weight.dtype())?;
            self.transposed = Arc::default();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adapter_adds_scaled_low_rank_update() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev)?;
        let mut lin = Linear::new(w, None);
        let a = Var::from_tensor(&Tensor::new(&[[1f32, 2.]], &dev)?)?;
        let b = Var::from_tensor(&Tensor::new(&[[1f32], [0.], [-1.]], &dev)?)?;
        lin.set_lora(Some(LoraWeights { a, b, scale: 0.5 }));
        let x = Tensor::new(&[[3f32, 4.]], &dev)?;
        let on = lin.forward(&x, Pass::train(true))?.to_vec2::<f32>()?;
        let off = lin.forward(&x, Pass::train(false))?.to_vec2::<f32>()?;
        assert_eq!(off, vec![vec![3., 4., 7.]]);
        // x·Aᵀ = 11; B·11·0.5 = [5.5, 0, -5.5]
        assert_eq!(on, vec![vec![8.5, 4., 1.5]]);
        let before = lin.clone();
        assert_eq!(
            lin.weight_transposed()?.to_vec2::<f32>()?,
            vec![vec![1., 0., 1.], vec![0., 1., 1.]]
        );
        lin.merge()?;
        assert!(lin.lora().is_none());
        assert_eq!(lin.forward(&x, Pass::fast(true))?.to_vec2::<f32>()?, on);
        // The transposed copy follows the merged weight; a clone made before keeps the old one.
        // B·A·0.5 = [[0.5, 1], [0, 0], [-0.5, -1]]
        assert_eq!(
            lin.weight_transposed()?.to_vec2::<f32>()?,
            vec![vec![1.5, 0., 0.5], vec![1., 1., 0.]]
        );
        assert_eq!(
            before.weight_transposed()?.to_vec2::<f32>()?,
            vec![vec![1., 0., 1.], vec![0., 1., 1.]]
        );
        Ok(())
    }

    #[test]
    fn fast_mode_gives_no_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let mut lin = Linear::new(Tensor::ones((2, 2), DType::F32, &dev)?, None);
        let a = Var::ones((1, 2), DType::F32, &dev)?;
        let b = Var::ones((2, 1), DType::F32, &dev)?;
        lin.set_lora(Some(LoraWeights {
            a: a.clone(),
            b,
            scale: 1.0,
        }));
        let x = Tensor::ones((1, 2), DType::F32, &dev)?;
        let grads = lin.forward(&x, Pass::fast(true))?.sum_all()?.backward()?;
        assert!(grads.get(a.as_tensor()).is_none());
        let grads = lin.forward(&x, Pass::train(true))?.sum_all()?.backward()?;
        assert!(grads.get(a.as_tensor()).is_some());
        Ok(())
    }
}
