//! The text tower (`text_model.*` and `text_projection`), Hugging Face `CLIPTextTransformer`.

use tch::{Kind, Tensor};

use super::ModelError;
use super::encoder::{Encoder, EncoderShape, LayerNorm};
use super::weights::Weights;
use crate::config::ClipConfig;

/// Legacy configs (the released ViT-B/32 one) say `eos_token_id: 2`; then the end token is
/// found as the largest id, as OpenAI does (`text.argmax(dim=-1)`).
const LEGACY_EOS_TOKEN_ID: i64 = 2;

#[derive(Debug)]
pub(super) struct TextTower {
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    projection: Tensor,
    hidden: i64,
    eps: f64,
    eos_token_id: i64,
}

impl TextTower {
    /// `weights` is `text_model.*`; `root` holds `text_projection`.
    pub(super) fn load(
        weights: &Weights,
        root: &Weights,
        config: &ClipConfig,
    ) -> Result<Self, ModelError> {
        let text = &config.text_config;
        let hidden = text.hidden_size;
        let embeddings = weights.sub("embeddings");
        let shape = EncoderShape {
            hidden,
            intermediate: text.intermediate_size,
            layers: text.num_hidden_layers,
            heads: text.num_attention_heads,
            eps: text.layer_norm_eps,
            activation: &text.hidden_act,
        };
        Ok(Self {
            token_embedding: embeddings
                .get("token_embedding.weight", &[text.vocab_size, hidden])?,
            position_embedding: embeddings.get(
                "position_embedding.weight",
                &[text.max_position_embeddings, hidden],
            )?,
            encoder: Encoder::load(&weights.sub("encoder"), &shape)?,
            final_layer_norm: LayerNorm::load(&weights.sub("final_layer_norm"), hidden)?,
            projection: root.get("text_projection.weight", &[config.projection_dim, hidden])?,
            hidden,
            eps: text.layer_norm_eps,
            eos_token_id: text.eos_token_id,
        })
    }

    /// Token ids `[batch, context]` (int64) to projected features `[batch, projection_dim]`.
    pub(super) fn forward(&self, token_ids: &Tensor) -> Result<Tensor, ModelError> {
        let (batch, context) = token_ids.size2()?;
        let embedded = Tensor::f_embedding(&self.token_embedding, token_ids, -1, false, false)?;
        let positions = self
            .position_embedding
            .f_narrow(0, 0, context)?
            .f_unsqueeze(0)?;
        let hidden_states = self.encoder.forward(&embedded.f_add(&positions)?, true)?;

        let end_positions = if self.eos_token_id == LEGACY_EOS_TOKEN_ID {
            token_ids.f_argmax(-1, false)?
        } else {
            token_ids
                .f_eq(self.eos_token_id)?
                .f_to_kind(Kind::Int)?
                .f_argmax(-1, false)?
        };
        let row_starts =
            Tensor::f_arange(batch, (Kind::Int64, token_ids.device()))?.f_mul_scalar(context)?;
        let flat = hidden_states.f_reshape([batch * context, self.hidden])?;
        let pooled = flat.f_index_select(0, &row_starts.f_add(&end_positions)?)?;
        // LayerNorm works per token, so normalising only the pooled rows is the same.
        let pooled = self
            .final_layer_norm
            .forward(&pooled, self.hidden, self.eps)?;
        Ok(pooled.f_linear(&self.projection, None::<Tensor>)?)
    }
}
