//! The vision tower (`vision_model.*` and `visual_projection`), Hugging Face `CLIPVisionTransformer`.

use tch::Tensor;

use super::ModelError;
use super::encoder::{Encoder, EncoderShape, LayerNorm};
use super::weights::Weights;
use crate::config::ClipConfig;

#[derive(Debug)]
pub(super) struct VisionTower {
    patch_weight: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layernorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    projection: Tensor,
    hidden: i64,
    patch: i64,
    eps: f64,
}

impl VisionTower {
    /// `weights` is `vision_model.*`; `root` holds `visual_projection`.
    pub(super) fn load(
        weights: &Weights,
        root: &Weights,
        config: &ClipConfig,
    ) -> Result<Self, ModelError> {
        let vision = &config.vision_config;
        let hidden = vision.hidden_size;
        let patch = vision.patch_size;
        let embeddings = weights.sub("embeddings");
        let shape = EncoderShape {
            hidden,
            intermediate: vision.intermediate_size,
            layers: vision.num_hidden_layers,
            heads: vision.num_attention_heads,
            eps: vision.layer_norm_eps,
            activation: &vision.hidden_act,
        };
        Ok(Self {
            patch_weight: embeddings.get(
                "patch_embedding.weight",
                &[hidden, vision.num_channels, patch, patch],
            )?,
            class_embedding: embeddings
                .get("class_embedding", &[hidden])?
                .f_view([1, 1, hidden])?,
            position_embedding: embeddings
                .get("position_embedding.weight", &[vision.n_positions(), hidden])?
                .f_unsqueeze(0)?,
            // The "layrnorm" spelling is the checkpoint's own.
            pre_layernorm: LayerNorm::load(&weights.sub("pre_layrnorm"), hidden)?,
            encoder: Encoder::load(&weights.sub("encoder"), &shape)?,
            post_layernorm: LayerNorm::load(&weights.sub("post_layernorm"), hidden)?,
            projection: root.get("visual_projection.weight", &[config.projection_dim, hidden])?,
            hidden,
            patch,
            eps: vision.layer_norm_eps,
        })
    }

    /// Normalised pixels `[batch, channels, side, side]` to projected features `[batch, projection_dim]`.
    pub(super) fn forward(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        let batch = pixels.size()[0];
        let patches = pixels.f_conv2d(
            &self.patch_weight,
            None::<Tensor>,
            [self.patch, self.patch],
            [0, 0],
            [1, 1],
            1,
        )?;
        let patches = patches.f_flatten(2, -1)?.f_transpose(1, 2)?;
        let class_token = self
            .class_embedding
            .f_expand([batch, 1, self.hidden], false)?;
        let tokens = Tensor::f_cat(&[class_token, patches], 1)?.f_add(&self.position_embedding)?;
        let tokens = self.pre_layernorm.forward(&tokens, self.hidden, self.eps)?;
        let hidden_states = self.encoder.forward(&tokens, false)?;
        let pooled =
            self.post_layernorm
                .forward(&hidden_states.f_select(1, 0)?, self.hidden, self.eps)?;
        Ok(pooled.f_linear(&self.projection, None::<Tensor>)?)
    }
}
