//! `x Wᵀ` for a frozen weight W whose backward pass computes only the input's gradient.
//!
//! candle's matmul backward always computes both operands' gradients; for a frozen weight the
//! second is a full-size matrix product thrown away (for the lm_head, a vocabulary-sized one).
//! This custom op runs the same matmul kernel forward and `grad · W` backward, nothing else.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

struct FrozenMatmul {
    /// `[n, k]`
    weight: Tensor,
}

impl FrozenMatmul {
    fn dims(&self, layout: &Layout) -> Result<(usize, usize, usize)> {
        let (m, k) = layout.shape().dims2()?;
        let (n, k2) = self.weight.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen matmul: input has {k} features, weight takes {k2}");
        }
        Ok((m, n, k))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, n, k) = self.dims(layout)?;
        let wt = self.weight.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else {
            candle_core::bail!("frozen matmul: weight and input on different devices");
        };
        let out = storage.matmul(ws, (1, m, n, k), layout, wl)?;
        Ok((out, Shape::from((m, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (m, n, k) = self.dims(layout)?;
        let wt = self.weight.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let Storage::Cuda(ws) = &*ws else {
            candle_core::bail!("frozen matmul: weight and input on different devices");
        };
        let out = storage.matmul(ws, (1, m, n, k), layout, wl)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.weight)?))
    }
}

/// `x Wᵀ` for `x` `[m, k]` and a frozen `W` `[n, k]`. Untracked inputs take the plain matmul.
pub fn frozen_matmul(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return x.matmul(&weight.t()?);
    }
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.contiguous()?
    };
    x.apply_op1(FrozenMatmul {
        weight: weight.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn same_values_and_input_gradient_as_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2., 3.], [0., -1., 4.]], &dev)?;
        let x = Var::new(&[[0.5f32, 1., -2.], [3., 0., 1.]], &dev)?;
        let ours = frozen_matmul(x.as_tensor(), &w)?;
        let plain = x.as_tensor().matmul(&w.t()?)?;
        assert_eq!(ours.to_vec2::<f32>()?, plain.to_vec2::<f32>()?);
        let g1 = ours.sqr()?.sum_all()?.backward()?;
        let g2 = plain.sqr()?.sum_all()?.backward()?;
        let a = g1.get(x.as_tensor()).expect("grad").to_vec2::<f32>()?;
        let b = g2.get(x.as_tensor()).expect("grad").to_vec2::<f32>()?;
        assert_eq!(a, b);
        // The weight gets no gradient (and costs none).
        assert!(g1.get(&w).is_none());
        Ok(())
    }
}
