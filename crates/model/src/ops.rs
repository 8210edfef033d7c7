//! The few operations whose implementation depends on the execution mode.
//!
//! Fast mode uses candle's fused kernels, which carry no backward pass; Train mode composes
//! differentiable primitives. Every layer calls these with the mode of its pass, so one model
//! definition serves generation and training and the two cannot drift apart.

use candle_core::{D, DType, Result, Tensor};

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fused kernels, KV cache, LoRA detached: for generation. Gradients do not flow.
    Fast,
    /// Differentiable ops only, whole sequences with a causal and padding mask: for
    /// log-probabilities under gradient.
    Train,
}

/// One forward pass's switches, handed down to every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Fast or Train: which kernels run and whether gradients can flow.
    pub mode: Mode,
    /// Whether LoRA adapters apply; off gives the frozen base model (the OPD teacher and the
    /// KL reference).
    pub lora: bool,
}

impl Pass {
    /// A Fast-mode pass, with or without the adapters.
    pub fn fast(lora: bool) -> Self {
        Self {
            mode: Mode::Fast,
            lora,
        }
    }
    /// A Train-mode pass, with or without the adapters.
    pub fn train(lora: bool) -> Self {
        Self {
            mode: Mode::Train,
            lora,
        }
    }
}

/// RMSNorm over the last dimension, computed in f32 as HF does.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    let dtype = x.dtype();
    match mode {
        Mode::Fast => {
            let x32 = x.to_dtype(DType::F32)?.contiguous()?;
            let w32 = weight.to_dtype(DType::F32)?;
            candle_nn::ops::rms_norm(&x32, &w32, eps as f32)?.to_dtype(dtype)
        }
        // A weight being trained needs its own gradient, which the fused kernel (weight
        // folded in) does not give: normalise there with unit weight, then scale.
        Mode::Train if crate::fused::applies(x) && weight.is_variable() => {
            let ones = Tensor::ones(weight.dims(), DType::F32, weight.device())?;
            crate::fused::rms_norm(x, &ones, eps)?.broadcast_mul(&weight.to_dtype(dtype)?)
        }
        Mode::Train if crate::fused::applies(x) => crate::fused::rms_norm(x, weight, eps),
        Mode::Train => composed::rms_normalize(&x.to_dtype(DType::F32)?, eps)?
            .to_dtype(dtype)?
            .broadcast_mul(&weight.to_dtype(dtype)?),
    }
}

/// LayerNorm over the last dimension (the vision tower's norm).
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    mode: Mode,
) -> Result<Tensor> {
    let dtype = x.dtype();
    match mode {
        Mode::Fast => {
            let x32 = x.to_dtype(DType::F32)?.contiguous()?;
            candle_nn::ops::layer_norm(
                &x32,
                &weight.to_dtype(DType::F32)?,
                &bias.to_dtype(DType::F32)?,
                eps as f32,
            )?
            .to_dtype(dtype)
        }
        Mode::Train => {
            let x32 = x.to_dtype(DType::F32)?;
            let mean = x32.mean_keepdim(D::Minus1)?;
            let centred = x32.broadcast_sub(&mean)?;
            let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
            centred
                .broadcast_div(&(variance + eps)?.sqrt()?)?
                .broadcast_mul(&weight.to_dtype(DType::F32)?)?
                .broadcast_add(&bias.to_dtype(DType::F32)?)?
                .to_dtype(dtype)
        }
    }
}

/// Softmax over the last dimension, in f32.
pub fn softmax_last(x: &Tensor, mode: Mode) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let out = match mode {
        // The own kernel where it applies: its exp vectorises (candle's calls expf per value,
        // a third of a screenshot's vision tower).
        Mode::Fast if crate::fused::applies(&x32) => crate::fused::softmax_last_fast(&x32)?,
        Mode::Fast => candle_nn::ops::softmax_last_dim(&x32.contiguous()?)?,
        Mode::Train if crate::fused::applies(&x32) => crate::fused::softmax_last(&x32)?,
        Mode::Train => composed::softmax_last(&x32)?,
    };
    out.to_dtype(dtype)
}

/// Rotary embedding in the rotate-half layout. `x` is `[b, heads, seq, dim]`; `cos` and `sin`
/// are `[b, seq, dim/2]` (the half that HF duplicates).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, mode: Mode) -> Result<Tensor> {
    match mode {
        Mode::Fast => {
            let dtype = x.dtype();
            candle_nn::rotary_emb::rope(
                &x.contiguous()?,
                &cos.to_dtype(dtype)?.contiguous()?,
                &sin.to_dtype(dtype)?.contiguous()?,
            )
        }
        Mode::Train if crate::fused::applies(x) => crate::fused::rope(x, cos, sin),
        Mode::Train => {
            let dtype = x.dtype();
            composed::rope(x, &cos.to_dtype(dtype)?, &sin.to_dtype(dtype)?)
        }
    }
}

/// Train mode's differentiable compositions, for devices and dtypes the fused kernels do not
/// cover; tests hold the fused kernels to them.
pub(crate) mod composed {
    use super::*;

    /// `x / sqrt(mean(x²) + eps)` over the last dimension.
    pub fn rms_normalize(x: &Tensor, eps: f64) -> Result<Tensor> {
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_mul(&(variance + eps)?.sqrt()?.recip()?)
    }

    pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let exp = x.broadcast_sub(&max)?.exp()?;
        exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
    }

    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
        let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff")
    }

    #[test]
    fn modes_agree() {
        let x = random(&[2, 3, 5, 8], 1);
        let w = random(&[8], 2);
        let b = random(&[8], 3);
        let fast = rms_norm(&x, &w, 1e-6, Mode::Fast).expect("fast");
        let train = rms_norm(&x, &w, 1e-6, Mode::Train).expect("train");
        assert!(max_diff(&fast, &train) < 1e-5);
        let fast = layer_norm(&x, &w, &b, 1e-6, Mode::Fast).expect("fast");
        let train = layer_norm(&x, &w, &b, 1e-6, Mode::Train).expect("train");
        assert!(max_diff(&fast, &train) < 1e-5);
        let fast = softmax_last(&x, Mode::Fast).expect("fast");
        let train = softmax_last(&x, Mode::Train).expect("train");
        assert!(max_diff(&fast, &train) < 1e-6);
        let cos = random(&[2, 5, 4], 4);
        let sin = random(&[2, 5, 4], 5);
        let fast = rope(&x, &cos, &sin, Mode::Fast).expect("fast");
        let train = rope(&x, &cos, &sin, Mode::Train).expect("train");
        assert!(max_diff(&fast, &train) < 1e-6);
    }

    /// The fused Train kernels give the composed forms' values and input gradients.
    #[test]
    fn fused_backward_matches_composed() {
        use candle_core::Var;
        let x = Var::from_tensor(&random(&[2, 3, 5, 8], 11)).expect("var");
        let w = random(&[8], 12);
        let cos = random(&[2, 5, 4], 13);
        let sin = random(&[2, 5, 4], 14);
        let probe = random(&[2, 3, 5, 8], 15);
        type F = Box<dyn Fn(&Tensor) -> Result<Tensor>>;
        let pairs: Vec<(&str, F, F)> = vec![
            (
                "rms_norm",
                Box::new({
                    let w = w.clone();
                    move |t| crate::fused::rms_norm(t, &w, 1e-6)
                }),
                Box::new({
                    let w = w.clone();
                    move |t| composed::rms_normalize(t, 1e-6)?.broadcast_mul(&w)
                }),
            ),
            (
                "softmax",
                Box::new(crate::fused::softmax_last),
                Box::new(composed::softmax_last),
            ),
            (
                "rope",
                Box::new({
                    let (c, s) = (cos.clone(), sin.clone());
                    move |t| crate::fused::rope(t, &c, &s)
                }),
                Box::new({
                    let (c, s) = (cos.clone(), sin.clone());
                    move |t| composed::rope(t, &c, &s)
                }),
            ),
        ];
        for (name, fused, composed) in pairs {
            let a = fused(x.as_tensor()).expect("fused");
            let b = composed(x.as_tensor()).expect("composed");
            assert!(max_diff(&a, &b) < 1e-5, "{name} forward");
            let ga = (a * &probe)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("bwd");
            let gb = (b * &probe)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.backward())
                .expect("bwd");
            let (ga, gb) = (
                ga.get(x.as_tensor()).expect("grad"),
                gb.get(x.as_tensor()).expect("grad"),
            );
            assert!(
                max_diff(ga, gb) < 1e-5,
                "{name} backward: {}",
                max_diff(ga, gb)
            );
        }
    }
}
