//! Training a model's own weights (norms, embeddings, an untied head) beside its LoRA adapter:
//! the optimiser over both and the gradients in its order. The practice base's warm start uses
//! it, and so does the research probe ([`crate::probe`]); neither imports the other.

use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::optim::{AdamW, AdamWConfig};

/// Makes the chosen base weights (norms, embeddings) trainable beside the attached adapter
/// and builds the AdamW (no weight decay) over both, adapter first: the optimiser of the warm
/// start and of the probe. The base variables come back for [`gradients_in_order`].
pub fn adapter_and_base_optimizer(
    model: &mut clawdesk_model::Qwen3Vl,
    norms: bool,
    embeddings: bool,
    embeddings_lr_share: f64,
) -> Result<(Vec<Var>, AdamW)> {
    let vars = |named: Vec<(String, Var)>| named.into_iter().map(|(_, var)| var).collect();
    let norm_vars: Vec<Var> = vars(model.train_base_weights(norms, false)?);
    // The input embeddings, then an untied head (which moves at the full rate).
    let (embedding_vars, head_vars): (Vec<_>, Vec<_>) = model
        .train_base_weights(false, embeddings)?
        .into_iter()
        .partition(|(name, _)| name != clawdesk_model::LM_HEAD);
    let (embedding_vars, head_vars): (Vec<Var>, Vec<Var>) = (vars(embedding_vars), vars(head_vars));
    let base: Vec<Var> = norm_vars
        .iter()
        .chain(&embedding_vars)
        .chain(&head_vars)
        .cloned()
        .collect();
    let optimizer = AdamW::grouped(
        vec![
            (model.lora_vars(), 1.0),
            (norm_vars, 1.0),
            (embedding_vars, embeddings_lr_share),
            (head_vars, 1.0),
        ],
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
    )?;
    Ok((base, optimizer))
}

/// The gradients in the optimiser's order: the adapter's, then `base`'s (the base weights made
/// trainable beside it). Every text batch reaches the norms and embeddings; a zero keeps the
/// order if one ever does not.
pub fn gradients_in_order(
    model: &clawdesk_model::Qwen3Vl,
    grads: &candle_core::backprop::GradStore,
    base: &[Var],
) -> Result<Vec<Tensor>> {
    let mut in_order: Vec<Tensor> = model
        .lora_gradients(grads)?
        .into_iter()
        .map(|(_, g)| g)
        .collect();
    for var in base {
        in_order.push(match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        });
    }
    Ok(in_order)
}

/// Zeroes the gradients after the adapter's (those of the base weights trained beside it), so
/// that AdamW, from a fresh state and without weight decay, leaves those weights where they are.
pub fn hold_still(in_order: &mut [Tensor], base: usize) -> Result<()> {
    let adapter = in_order.len().saturating_sub(base);
    for g in &mut in_order[adapter..] {
        *g = g.zeros_like()?;
    }
    Ok(())
}
