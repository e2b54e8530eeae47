//! The pre-norm transformer block shared by the decoder models.
use super::{dropout, ForwardCtx, LayerCache, LayerNorm, Mlp, SelfAttention};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::Tensor;

/// One pre-norm transformer block: `x ← x + dropout(attn(LN₁ x))`, `x ← x + mlp(LN₂ x)`
/// (the MLP applies its own output dropout).
#[derive(Debug, Clone)]
pub struct Block<B: Backend> {
    /// Norm before attention.
    pub ln1: LayerNorm<B>,
    /// Causal self-attention.
    pub attn: SelfAttention<B>,
    /// Norm before the MLP.
    pub ln2: LayerNorm<B>,
    /// MLP.
    pub mlp: Mlp<B>,
    /// Dropout on the attention output before the residual add.
    pub resid_dropout: f32,
}

impl<B: Backend> Block<B> {
    /// `x + attn(LN₁ x)`, then `+ mlp(LN₂ x)`.
    pub fn forward(&self, x: &Tensor<B>, ctx: &mut ForwardCtx) -> Result<Tensor<B>> {
        let a = dropout(&self.attn.forward(&self.ln1.forward(x)?, ctx)?, self.resid_dropout, ctx)?;
        let x = x.add(&a)?;
        let m = self.mlp.forward(&self.ln2.forward(&x)?, ctx)?;
        x.add(&m)
    }

    /// Incremental [`Block::forward`] in evaluation mode (see
    /// [`SelfAttention::forward_cached`]).
    pub fn forward_cached(&self, x: &Tensor<B>, cache: &mut LayerCache<B>) -> Result<Tensor<B>> {
        let x = x.add(&self.attn.forward_cached(&self.ln1.forward(x)?, cache)?)?;
        let m = self.mlp.forward(&self.ln2.forward(&x)?, &mut ForwardCtx::eval())?;
        x.add(&m)
    }
}

crate::module!(Block { ln1, attn, ln2, mlp });
