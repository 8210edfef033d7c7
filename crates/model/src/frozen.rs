//! Matrix products against frozen weights whose backward passes compute only what training
//! needs.
//!
//! candle's matmul backward always computes both operands' gradients; for a frozen weight the
//! second is a full-size matrix product thrown away (for the lm_head, a vocabulary-sized one).
//! [`frozen_matmul`] runs the same kernel forward and only `grad · W` backward.
//! [`lora_matmul`] is a whole LoRA linear, `x Wᵀ + s (x Aᵀ) Bᵀ`, as one graph node with a
//! hand-written backward for x, A and B: composed, it is eight nodes per layer, each paying
//! candle's allocate-zeros-then-add gradient accumulation.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Storage, Tensor, op::Add,
};

struct FrozenMatmul {
    /// `[n, k]`
    weight: Tensor,
}

/// Rows and features of a contiguous `[.., k]` input, its 2-D layout, and the output shape.
fn as_rows(layout: &Layout, n: usize) -> Result<(usize, usize, Layout, Shape)> {
    let dims = layout.shape().dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("matmul on a scalar");
    };
    if !layout.is_contiguous() {
        candle_core::bail!("frozen matmul takes a contiguous input");
    }
    let m: usize = lead.iter().product();
    let mut out = lead.to_vec();
    out.push(n);
    Ok((
        m,
        k,
        Layout::contiguous_with_offset((m, k), layout.start_offset()),
        Shape::from(out),
    ))
}

/// A `[.., n]` gradient as `[rows, n]`.
fn rows(t: &Tensor) -> Result<Tensor> {
    let n = t.dims().last().copied().unwrap_or(1);
    t.reshape(((), n))
}

impl FrozenMatmul {
    fn dims(&self, layout: &Layout) -> Result<(usize, usize, usize, Layout, Shape)> {
        let (n, k2) = self.weight.dims2()?;
        let (m, k, rows, out) = as_rows(layout, n)?;
        if k != k2 {
            candle_core::bail!("frozen matmul: input has {k} features, weight takes {k2}");
        }
        Ok((m, n, k, rows, out))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, n, k, rows, shape) = self.dims(layout)?;
        let wt = self.weight.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else {
            candle_core::bail!("frozen matmul: weight and input on different devices");
        };
        let out = storage.matmul(ws, (1, m, n, k), &rows, wl)?;
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (m, n, k, rows, shape) = self.dims(layout)?;
        let wt = self.weight.t()?;
        let (ws, wl) = wt.storage_and_layout();
        let Storage::Cuda(ws) = &*ws else {
            candle_core::bail!("frozen matmul: weight and input on different devices");
        };
        let out = storage.matmul(ws, (1, m, n, k), &rows, wl)?;
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            rows(grad)?.matmul(&self.weight)?.reshape(arg.shape())?,
        ))
    }
}

/// `x Wᵀ` for `x` `[.., k]` and a frozen `W` `[n, k]`, giving `[.., n]`. Untracked inputs take
/// the plain matmul.
pub fn frozen_matmul(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        let k = x.dims().last().copied().unwrap_or(1);
        let mut shape = x.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = weight.dim(0)?;
        }
        return x.reshape(((), k))?.matmul(&weight.t()?)?.reshape(shape);
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

struct LoraMatmul {
    /// `[n, k]`, frozen
    weight: Tensor,
    scale: f64,
}

impl LoraMatmul {
    /// `x Wᵀ + s (x Aᵀ) Bᵀ` on any backend's storage.
    #[allow(clippy::too_many_arguments)]
    fn forward<S: BackendStorage>(
        &self,
        x: &S,
        xl: &Layout,
        w: &S,
        wl: &Layout,
        a: &S,
        al: &Layout,
        b: &S,
        bl: &Layout,
    ) -> Result<(S, Shape)> {
        let (n, _) = wl.shape().dims2()?;
        let (m, k, xl, shape) = as_rows(xl, n)?;
        let (r, _) = al.shape().dims2()?;
        let xl = &xl;
        let y = x.matmul(w, (1, m, n, k), xl, &wl.transpose(0, 1)?)?;
        let xa = x.matmul(a, (1, m, r, k), xl, &al.transpose(0, 1)?)?;
        let delta = xa.matmul(
            b,
            (1, m, n, r),
            &Layout::contiguous((m, r)),
            &bl.transpose(0, 1)?,
        )?;
        let yl = Layout::contiguous((m, n));
        let delta = delta.affine(&yl, self.scale, 0.0)?;
        Ok((y.binary_impl::<Add>(&delta, &yl, &yl)?, shape))
    }
}

impl CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (ws, wl) = self.weight.storage_and_layout();
        let Storage::Cpu(ws) = &*ws else {
            candle_core::bail!("lora matmul: weight and input on different devices");
        };
        self.forward(x, xl, ws, wl, a, al, b, bl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let shape = x.shape().clone();
        let (x, a, b) = (rows(&x.detach())?, a.detach(), b.detach());
        let grad = rows(grad)?;
        let xa = x.matmul(&a.t()?)?; // [m, r]
        let gb = grad.matmul(&b)?; // [m, r]
        let d_b = grad.t()?.matmul(&xa)?.affine(self.scale, 0.0)?; // [n, r]
        let d_a = gb.t()?.matmul(&x)?.affine(self.scale, 0.0)?; // [r, k]
        let d_x = (grad.matmul(&self.weight)? + gb.matmul(&a)?.affine(self.scale, 0.0)?)?;
        Ok((Some(d_x.reshape(shape)?), Some(d_a), Some(d_b)))
    }
}

/// A LoRA linear `x Wᵀ + scale (x Aᵀ) Bᵀ` as one node, for `x` `[.., k]`, frozen `W` `[n, k]`,
/// `A` `[r, k]`, `B` `[n, r]`, all of one dtype on the CPU. Untracked operands (Fast mode) run
/// the same kernels without recording a graph.
pub fn lora_matmul(
    x: &Tensor,
    weight: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let op = LoraMatmul {
        weight: weight.clone(),
        scale,
    };
    let x = if x.is_contiguous() {
        x.clone()
    } else {
        x.contiguous()?
    };
    if x.track_op() || a.track_op() || b.track_op() {
        x.apply_op3(a, b, op)
    } else {
        x.apply_op3_no_bwd(a, b, &op)
    }
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

    #[test]
    fn lora_matmul_matches_the_composed_layer_and_its_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let det = |n: usize, shift: f32| -> Vec<f32> {
            (0..n).map(|i| (i as f32 * 0.37 + shift).sin()).collect()
        };
        let w = Tensor::from_vec(det(12, 0.1), (4, 3), &dev)?;
        let x = Var::from_tensor(&Tensor::from_vec(det(15, 0.2), (5, 3), &dev)?)?;
        let a = Var::from_tensor(&Tensor::from_vec(det(6, 0.3), (2, 3), &dev)?)?;
        let b = Var::from_tensor(&Tensor::from_vec(det(8, 0.4), (4, 2), &dev)?)?;
        let probe = Tensor::from_vec(det(20, 0.5), (5, 4), &dev)?;
        let fused = lora_matmul(x.as_tensor(), &w, a.as_tensor(), b.as_tensor(), 0.75)?;
        let composed = (x.as_tensor().matmul(&w.t()?)?
            + x.as_tensor()
                .matmul(&a.as_tensor().t()?)?
                .matmul(&b.as_tensor().t()?)?
                .affine(0.75, 0.0)?)?;
        let close = |p: &Tensor, q: &Tensor| -> Result<f32> {
            (p - q)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        assert!(close(&fused, &composed)? < 1e-6);
        let g1 = (fused * &probe)?.sum_all()?.backward()?;
        let g2 = (composed * &probe)?.sum_all()?.backward()?;
        for v in [&x, &a, &b] {
            let d = close(
                g1.get(v.as_tensor()).expect("fused grad"),
                g2.get(v.as_tensor()).expect("grad"),
            )?;
            assert!(d < 1e-5, "gradient differs by {d}");
        }
        Ok(())
    }
}
