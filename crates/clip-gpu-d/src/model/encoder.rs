//! The pre-norm transformer shared by both towers (`{tower}.encoder.layers.{i}`).
//!
//! Each block is `x += out_proj(attn(ln1(x))); x += fc2(act(fc1(ln2(x))))` as in Hugging Face
//! `CLIPEncoderLayer`, with q/k/v fused into one linear and `scaled_dot_product_attention`.

use tch::Tensor;

use super::ModelError;
use super::weights::Weights;

/// quick_gelu(x) = x·σ(1.702x) = silu(1.702x) / 1.702 (OpenAI `clip/model.py`).
const QUICK_GELU_ALPHA: f64 = 1.702;

/// Sizes of one tower's encoder.
#[derive(Debug, Clone)]
pub(super) struct EncoderShape<'a> {
    pub(super) hidden: i64,
    pub(super) intermediate: i64,
    pub(super) layers: i64,
    pub(super) heads: i64,
    pub(super) eps: f64,
    pub(super) activation: &'a str,
}

#[derive(Debug)]
pub(super) struct Encoder {
    blocks: Vec<Block>,
    hidden: i64,
    heads: i64,
    eps: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    /// quick_gelu with the 1.702 folded into fc1 and fc2: one `silu` kernel.
    FoldedQuickGelu,
    Gelu,
    GeluTanh,
}

#[derive(Debug)]
struct Block {
    ln1: LayerNorm,
    qkv_weight: Tensor,
    qkv_bias: Tensor,
    out_weight: Tensor,
    out_bias: Tensor,
    ln2: LayerNorm,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    activation: Activation,
}

/// A LayerNorm's affine parameters.
#[derive(Debug)]
pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl Encoder {
    pub(super) fn load(weights: &Weights, shape: &EncoderShape<'_>) -> Result<Self, ModelError> {
        let activation = match shape.activation {
            "quick_gelu" => Activation::FoldedQuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => {
                return Err(ModelError::InvalidConfig(format!(
                    "unsupported hidden_act {other:?}"
                )));
            }
        };
        let mut blocks = Vec::new();
        for index in 0..shape.layers {
            blocks.push(Block::load(
                &weights.sub("layers").sub(&index.to_string()),
                shape,
                activation,
            )?);
        }
        Ok(Self {
            blocks,
            hidden: shape.hidden,
            heads: shape.heads,
            eps: shape.eps,
        })
    }

    /// `[batch, tokens, hidden]` in, same shape out; `causal` masks future tokens (text tower).
    pub(super) fn forward(&self, input: &Tensor, causal: bool) -> Result<Tensor, ModelError> {
        let mut hidden_states = input.shallow_clone();
        for block in &self.blocks {
            hidden_states =
                block.forward(&hidden_states, self.hidden, self.heads, self.eps, causal)?;
        }
        Ok(hidden_states)
    }
}

impl Block {
    fn load(
        weights: &Weights,
        shape: &EncoderShape<'_>,
        activation: Activation,
    ) -> Result<Self, ModelError> {
        let (hidden, intermediate) = (shape.hidden, shape.intermediate);
        let attention = weights.sub("self_attn");
        let projection = |name: &str| -> Result<(Tensor, Tensor), ModelError> {
            let sub = attention.sub(name);
            Ok((
                sub.raw("weight", &[hidden, hidden])?,
                sub.raw("bias", &[hidden])?,
            ))
        };
        let (q_weight, q_bias) = projection("q_proj")?;
        let (k_weight, k_bias) = projection("k_proj")?;
        let (v_weight, v_bias) = projection("v_proj")?;
        let qkv_weight = weights.place(&Tensor::f_cat(&[q_weight, k_weight, v_weight], 0)?)?;
        let qkv_bias = weights.place(&Tensor::f_cat(&[q_bias, k_bias, v_bias], 0)?)?;

        let mlp = weights.sub("mlp");
        let mut fc1_weight = mlp.raw("fc1.weight", &[intermediate, hidden])?;
        let mut fc1_bias = mlp.raw("fc1.bias", &[intermediate])?;
        let mut fc2_weight = mlp.raw("fc2.weight", &[hidden, intermediate])?;
        if activation == Activation::FoldedQuickGelu {
            fc1_weight = fc1_weight.f_mul_scalar(QUICK_GELU_ALPHA)?;
            fc1_bias = fc1_bias.f_mul_scalar(QUICK_GELU_ALPHA)?;
            fc2_weight = fc2_weight.f_div_scalar(QUICK_GELU_ALPHA)?;
        }
        Ok(Self {
            ln1: LayerNorm::load(&weights.sub("layer_norm1"), hidden)?,
            qkv_weight,
            qkv_bias,
            out_weight: attention.get("out_proj.weight", &[hidden, hidden])?,
            out_bias: attention.get("out_proj.bias", &[hidden])?,
            ln2: LayerNorm::load(&weights.sub("layer_norm2"), hidden)?,
            fc1_weight: weights.place(&fc1_weight)?,
            fc1_bias: weights.place(&fc1_bias)?,
            fc2_weight: weights.place(&fc2_weight)?,
            fc2_bias: mlp.get("fc2.bias", &[hidden])?,
            activation,
        })
    }

    fn forward(
        &self,
        input: &Tensor,
        hidden: i64,
        heads: i64,
        eps: f64,
        causal: bool,
    ) -> Result<Tensor, ModelError> {
        let (batch, tokens, _) = input.size3()?;
        let head_dim = hidden / heads;
        let normed = self.ln1.forward(input, hidden, eps)?;
        let qkv = normed.f_linear(&self.qkv_weight, Some(&self.qkv_bias))?;
        // [batch, tokens, 3, heads, head_dim] -> [3, batch, heads, tokens, head_dim].
        let qkv = qkv
            .f_view([batch, tokens, 3, heads, head_dim])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (query, key, value) = (
            qkv.f_select(0, 0)?,
            qkv.f_select(0, 1)?,
            qkv.f_select(0, 2)?,
        );
        // The default scale is 1/sqrt(head_dim), as in CLIP.
        let attended = Tensor::f_scaled_dot_product_attention(
            &query,
            &key,
            &value,
            None::<Tensor>,
            0.0,
            causal,
            None,
            false,
        )?;
        let attended = attended
            .f_transpose(1, 2)?
            .f_reshape([batch, tokens, hidden])?;
        let residual = input.f_add(&attended.f_linear(&self.out_weight, Some(&self.out_bias))?)?;

        let normed = self.ln2.forward(&residual, hidden, eps)?;
        let inner = normed.f_linear(&self.fc1_weight, Some(&self.fc1_bias))?;
        let inner = match self.activation {
            Activation::FoldedQuickGelu => inner.f_silu()?,
            Activation::Gelu => inner.f_gelu("none")?,
            Activation::GeluTanh => inner.f_gelu("tanh")?,
        };
        Ok(residual.f_add(&inner.f_linear(&self.fc2_weight, Some(&self.fc2_bias))?)?)
    }
}

impl LayerNorm {
    pub(super) fn load(weights: &Weights, hidden: i64) -> Result<Self, ModelError> {
        Ok(Self {
            weight: weights.get("weight", &[hidden])?,
            bias: weights.get("bias", &[hidden])?,
        })
    }

    pub(super) fn forward(
        &self,
        input: &Tensor,
        hidden: i64,
        eps: f64,
    ) -> Result<Tensor, ModelError> {
        Ok(input.f_layer_norm([hidden], Some(&self.weight), Some(&self.bias), eps, true)?)
    }
}
