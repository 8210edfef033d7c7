//! AdamW on the LoRA parameters, with global gradient-norm clipping and a learning-rate
//! schedule; its moments and step count are plain tensors so a checkpoint can hold them and a
//! resumed run takes the very update an uninterrupted one would.

use candle_core::{DType, Tensor, Var};

use crate::error::{Result, TrainerError};

/// AdamW's settings, PyTorch's meaning (decoupled weight decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// The decay rate of the first moment (the gradient's running mean).
    pub beta1: f64,
    /// The decay rate of the second moment (the squared gradient's running mean).
    pub beta2: f64,
    /// Added to the second moment's square root, so a near-zero one cannot blow the step up.
    pub eps: f64,
    /// Decoupled weight decay: each update shrinks a weight by `lr · weight_decay` of itself.
    pub weight_decay: f64,
    /// Gradients are scaled down so their global L2 norm is at most this; `None` leaves them.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    /// OpenClaw-RL's settings: β = (0.9, 0.98), weight decay 0.1; clipping at 1.0.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.1,
            max_grad_norm: Some(1.0),
        }
    }
}

/// The learning rate over updates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The same rate on every update.
    Constant {
        /// The learning rate.
        lr: f64,
    },
    /// Linear warm-up from 0 over `warmup` updates, then cosine decay to `lr·min_ratio` at `total`.
    WarmupCosine {
        /// The peak learning rate, reached at the end of the warm-up.
        lr: f64,
        /// Updates of linear warm-up.
        warmup: u64,
        /// The update at which the decay ends; the rate stays at its floor after it.
        total: u64,
        /// The floor as a share of `lr` (1 keeps the peak rate after the warm-up).
        min_ratio: f64,
    },
}

impl Schedule {
    /// The rate for update number `step` (from 1).
    pub fn lr(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant { lr } => lr,
            Schedule::WarmupCosine {
                lr,
                warmup,
                total,
                min_ratio,
            } => {
                if step <= warmup {
                    return lr * step as f64 / warmup.max(1) as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                lr * (min_ratio + (1.0 - min_ratio) * cosine)
            }
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateReport {
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the gradients were scaled down to the maximum norm.
    pub clipped: bool,
    /// The learning rate the update was given (each parameter group takes its share of it).
    pub lr: f64,
}

/// One parameter with its moments.
struct Slot {
    var: Var,
    m: Tensor,
    v: Tensor,
    /// This parameter's rate as a share of the update's.
    lr_scale: f64,
}

/// The optimiser.
pub struct AdamW {
    config: AdamWConfig,
    steps: u64,
    slots: Vec<Slot>,
}

impl AdamW {
    /// An optimiser over `vars`, all at the update's full rate.
    pub fn new(vars: Vec<Var>, config: AdamWConfig) -> Result<Self> {
        Self::grouped(vec![(vars, 1.0)], config)
    }

    /// An optimiser over groups of parameters, each at its own share of the update's rate
    /// (for base weights that must move more slowly than the adapter beside them).
    pub fn grouped(groups: Vec<(Vec<Var>, f64)>, config: AdamWConfig) -> Result<Self> {
        if let Some((_, bad)) = groups
            .iter()
            .find(|(_, scale)| !(scale.is_finite() && *scale >= 0.0))
        {
            return Err(TrainerError::Input(format!(
                "a learning-rate share must be a finite non-negative number, not {bad}"
            )));
        }
        if !(0.0..1.0).contains(&config.beta1) || !(0.0..1.0).contains(&config.beta2) {
            return Err(TrainerError::Input(format!(
                "betas ({}, {}) must lie in [0, 1)",
                config.beta1, config.beta2
            )));
        }
        let slots = groups
            .into_iter()
            .flat_map(|(vars, lr_scale)| vars.into_iter().map(move |var| (var, lr_scale)))
            .map(|(var, lr_scale)| {
                let zeros = var.as_tensor().zeros_like()?.to_dtype(DType::F32)?;
                Ok(Slot {
                    m: zeros.clone(),
                    v: zeros,
                    var,
                    lr_scale,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            steps: 0,
            slots,
        })
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update with `grads` (one per parameter, in the order given to [`AdamW::new`]).
    /// A non-finite gradient changes nothing and is an error, so a bad batch cannot corrupt
    /// the adapter.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<UpdateReport> {
        if grads.len() != self.slots.len() {
            return Err(TrainerError::Input(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.slots.len()
            )));
        }
        let mut sum_sq = 0f64;
        for g in grads {
            sum_sq += f64::from(
                g.to_dtype(DType::F32)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f32>()?,
            );
        }
        let grad_norm = sum_sq.sqrt();
        if !grad_norm.is_finite() {
            return Err(TrainerError::NonFinite {
                what: "gradient",
                detail: format!("global norm {grad_norm}"),
            });
        }
        let scale = match self.config.max_grad_norm {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-6),
            _ => 1.0,
        };
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.config;
        let t = self.steps + 1;
        let (c1, c2) = (1.0 - beta1.powi(t as i32), 1.0 - beta2.powi(t as i32));
        let mut updated = Vec::with_capacity(self.slots.len());
        for (slot, g) in self.slots.iter().zip(grads) {
            let g = (g.to_dtype(DType::F32)? * scale)?;
            let m = ((&slot.m * beta1)? + (&g * (1.0 - beta1))?)?;
            let v = ((&slot.v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let step = ((&m / c1)? / ((&v / c2)?.sqrt()? + eps)?)?;
            let theta = slot.var.as_tensor().to_dtype(DType::F32)?;
            let lr = lr * slot.lr_scale;
            let theta = ((theta * (1.0 - lr * weight_decay))? - (step * lr)?)?;
            updated.push((m, v, theta));
        }
        // Everything computed; only now is anything changed.
        for (slot, (m, v, theta)) in self.slots.iter_mut().zip(updated) {
            slot.var.set(&theta.to_dtype(slot.var.dtype())?)?;
            slot.m = m;
            slot.v = v;
        }
        self.steps = t;
        Ok(UpdateReport {
            grad_norm,
            clipped: scale < 1.0,
            lr,
        })
    }

    /// The moments, in parameter order, for a checkpoint.
    pub fn moments(&self) -> Vec<(Tensor, Tensor)> {
        self.slots
            .iter()
            .map(|s| (s.m.clone(), s.v.clone()))
            .collect()
    }

    /// Restores moments and the step count from a checkpoint.
    pub fn restore(&mut self, steps: u64, moments: Vec<(Tensor, Tensor)>) -> Result<()> {
        if moments.len() != self.slots.len() {
            return Err(TrainerError::Input(format!(
                "the checkpoint has moments for {} parameters, the adapter {}",
                moments.len(),
                self.slots.len()
            )));
        }
        for (slot, (m, v)) in self.slots.iter().zip(&moments) {
            if m.dims() != slot.var.dims() || v.dims() != slot.var.dims() {
                return Err(TrainerError::Input(format!(
                    "moment shape {:?} does not fit parameter {:?}",
                    m.dims(),
                    slot.var.dims()
                )));
            }
        }
        for (slot, (m, v)) in self.slots.iter_mut().zip(moments) {
            slot.m = m.to_dtype(DType::F32)?;
            slot.v = v.to_dtype(DType::F32)?;
        }
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::Optimizer;

    use super::*;

    fn vars(seed: f32) -> Vec<Var> {
        let d = Device::Cpu;
        vec![
            Var::from_slice(&[0.5f32 * seed, -1.0, 2.0, 0.25], (2, 2), &d).unwrap(),
            Var::from_slice(&[1.5f32, -0.5 * seed, 0.75], 3, &d).unwrap(),
        ]
    }

    fn loss(vars: &[Var]) -> Tensor {
        // A quadratic with different curvature per parameter.
        let a = (vars[0].as_tensor().sqr().unwrap() * 3.0)
            .unwrap()
            .sum_all()
            .unwrap();
        let b = (vars[1].as_tensor() - 0.3)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        (a + b).unwrap()
    }

    #[test]
    fn matches_candle_nn_adamw_step_for_step() {
        let ours = vars(1.0);
        let theirs = vars(1.0);
        let lr = 0.05;
        let config = AdamWConfig {
            max_grad_norm: None,
            ..AdamWConfig::default()
        };
        let mut a = AdamW::new(ours.clone(), config).unwrap();
        let mut b = candle_nn::AdamW::new(
            theirs.clone(),
            candle_nn::ParamsAdamW {
                lr,
                beta1: config.beta1,
                beta2: config.beta2,
                eps: config.eps,
                weight_decay: config.weight_decay,
            },
        )
        .unwrap();
        for _ in 0..6 {
            let grads = loss(&ours).backward().unwrap();
            let g: Vec<Tensor> = ours
                .iter()
                .map(|v| grads.get(v.as_tensor()).unwrap().clone())
                .collect();
            a.step(&g, lr).unwrap();
            b.backward_step(&loss(&theirs)).unwrap();
        }
        for (x, y) in ours.iter().zip(&theirs) {
            let x = x
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let y = y
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (x, y) in x.iter().zip(&y) {
                assert!((x - y).abs() < 1e-6, "{x} vs {y}");
            }
        }
        assert_eq!(a.steps(), 6);
    }

    #[test]
    fn a_group_at_a_share_of_the_rate_moves_by_that_share() {
        // AdamW's first step moves each weight by lr·sign(g) (plus decay), so a group at a
        // tenth of the rate moves a tenth as far; a group at zero stays put.
        let d = Device::Cpu;
        let full = Var::from_slice(&[1f32, -1.0], 2, &d).unwrap();
        let tenth = Var::from_slice(&[1f32, -1.0], 2, &d).unwrap();
        let frozen = Var::from_slice(&[1f32, -1.0], 2, &d).unwrap();
        let config = AdamWConfig {
            max_grad_norm: None,
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::grouped(
            vec![
                (vec![full.clone()], 1.0),
                (vec![tenth.clone()], 0.1),
                (vec![frozen.clone()], 0.0),
            ],
            config,
        )
        .unwrap();
        let g = Tensor::new(&[2f32, -3.0], &d).unwrap();
        opt.step(&[g.clone(), g.clone(), g], 0.5).unwrap();
        let read = |v: &Var| v.as_tensor().to_vec1::<f32>().unwrap();
        let near = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(near(&read(&full), &[0.5, -0.5]), "{:?}", read(&full));
        assert!(near(&read(&tenth), &[0.95, -0.95]), "{:?}", read(&tenth));
        assert!(near(&read(&frozen), &[1.0, -1.0]), "{:?}", read(&frozen));
        assert!(
            AdamW::grouped(vec![(vec![full], f64::NAN)], config).is_err(),
            "a NaN share is refused"
        );
    }

    #[test]
    fn zero_gradients_from_a_fresh_state_hold_a_weight_still_until_real_ones_arrive() {
        // The probe's `base_from_step` holds the base weights this way while the adapter
        // trains; without weight decay nothing moves them.
        let d = Device::Cpu;
        let held = Var::from_slice(&[1f32, -1.0], 2, &d).unwrap();
        let config = AdamWConfig {
            max_grad_norm: Some(1.0),
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vec![held.clone()], config).unwrap();
        let zero = Tensor::zeros(2, DType::F32, &d).unwrap();
        for _ in 0..5 {
            opt.step(std::slice::from_ref(&zero), 0.5).unwrap();
        }
        assert_eq!(held.as_tensor().to_vec1::<f32>().unwrap(), [1.0, -1.0]);
        let g = Tensor::new(&[1f32, -1.0], &d).unwrap();
        opt.step(&[g], 0.5).unwrap();
        let moved = held.as_tensor().to_vec1::<f32>().unwrap();
        assert!(moved[0] < 1.0 && moved[1] > -1.0, "{moved:?}");
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let v = vec![Var::from_slice(&[0f32, 0.0], 2, &Device::Cpu).unwrap()];
        let config = AdamWConfig {
            max_grad_norm: Some(1.0),
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(v, config).unwrap();
        let g = Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap();
        let report = opt.step(&[g], 0.1).unwrap();
        assert!((report.grad_norm - 5.0).abs() < 1e-9);
        assert!(report.clipped);
        // The first moment holds the clipped gradient: (1-β1)·g/5.
        let m = opt.moments()[0].0.to_vec1::<f32>().unwrap();
        assert!(
            (m[0] - 0.1 * 0.6).abs() < 1e-6 && (m[1] - 0.1 * 0.8).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn a_nan_gradient_changes_nothing() {
        let v = vars(1.0);
        let before: Vec<Vec<f32>> = v
            .iter()
            .map(|x| x.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let mut opt = AdamW::new(v.clone(), AdamWConfig::default()).unwrap();
        let good = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let bad = Tensor::new(&[1f32, f32::NAN, 0.0], &Device::Cpu).unwrap();
        assert!(matches!(
            opt.step(&[good, bad], 0.1),
            Err(TrainerError::NonFinite { .. })
        ));
        let after: Vec<Vec<f32>> = v
            .iter()
            .map(|x| x.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(opt.steps(), 0);
    }

    #[test]
    fn restored_state_takes_the_same_next_update() {
        let run = |restore_after: Option<u64>| {
            let v = vars(2.0);
            let mut opt = AdamW::new(v.clone(), AdamWConfig::default()).unwrap();
            for i in 0..5u64 {
                if restore_after == Some(i) {
                    // A new optimiser over the same weights, from the saved state.
                    let (steps, moments) = (opt.steps(), opt.moments());
                    opt = AdamW::new(v.clone(), AdamWConfig::default()).unwrap();
                    opt.restore(steps, moments).unwrap();
                }
                let grads = loss(&v).backward().unwrap();
                let g: Vec<Tensor> = v
                    .iter()
                    .map(|x| grads.get(x.as_tensor()).unwrap().clone())
                    .collect();
                opt.step(&g, 0.01).unwrap();
            }
            v[0].as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(run(None), run(Some(3)));
        let mut opt = AdamW::new(vars(1.0), AdamWConfig::default()).unwrap();
        let wrong = vec![
            (
                Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
                Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()
            );
            2
        ];
        assert!(opt.restore(1, wrong).is_err());
    }

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule::WarmupCosine {
            lr: 1.0,
            warmup: 4,
            total: 14,
            min_ratio: 0.1,
        };
        assert_eq!(s.lr(1), 0.25);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.55).abs() < 1e-12);
        assert!((s.lr(14) - 0.1).abs() < 1e-12);
        assert!((s.lr(100) - 0.1).abs() < 1e-12);
        assert_eq!(Schedule::Constant { lr: 0.3 }.lr(7), 0.3);
    }
}
