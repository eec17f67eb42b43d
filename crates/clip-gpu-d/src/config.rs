//! The Hugging Face `CLIPConfig` (`config.json`) fields that shape the towers.
//!
//! Missing fields take the defaults of `transformers`' `CLIPTextConfig` and `CLIPVisionConfig`
//! (which are the ViT-B/32 values), as `transformers` itself does.
//! Reference: <https://huggingface.co/openai/clip-vit-base-patch32/blob/main/config.json>.

use std::path::Path;

use serde::Deserialize;

use crate::model::ModelError;

/// A whole CLIP model: both towers and the shared embedding width.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    #[serde(default = "default_projection_dim")]
    pub projection_dim: i64,
    #[serde(default)]
    pub text_config: TextConfig,
    #[serde(default)]
    pub vision_config: VisionConfig,
}

/// The text tower (`text_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    /// `2` in legacy configs (the released ViT-B/32 one): pool at `argmax(input_ids)`.
    pub eos_token_id: i64,
}

/// The vision tower (`vision_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_channels: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

impl ClipConfig {
    /// OpenAI CLIP ViT-B/32, <https://huggingface.co/openai/clip-vit-base-patch32>.
    pub fn vit_base_patch32() -> Self {
        Self {
            projection_dim: 512,
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
        }
    }

    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|source| ModelError::Config {
            path: path.to_owned(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let text = &self.text_config;
        let vision = &self.vision_config;
        let checks = [
            (
                text.hidden_size % text.num_attention_heads == 0,
                "text hidden_size is not a multiple of num_attention_heads",
            ),
            (
                vision.hidden_size % vision.num_attention_heads == 0,
                "vision hidden_size is not a multiple of num_attention_heads",
            ),
            (
                vision.image_size % vision.patch_size == 0,
                "vision image_size is not a multiple of patch_size",
            ),
            (
                self.projection_dim > 0
                    && text.num_hidden_layers > 0
                    && vision.num_hidden_layers > 0,
                "sizes must be positive",
            ),
        ];
        for (ok, message) in checks {
            if !ok {
                return Err(ModelError::InvalidConfig(message.to_owned()));
            }
        }
        Ok(())
    }
}

impl VisionConfig {
    /// Patches plus the class token.
    pub fn n_positions(&self) -> i64 {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".to_owned(),
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".to_owned(),
            layer_norm_eps: 1e-5,
        }
    }
}

fn default_projection_dim() -> i64 {
    512
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_takes_transformers_defaults() {
        let config: ClipConfig = serde_json::from_str(
            r#"{"projection_dim": 768, "text_config": {"hidden_size": 768, "num_attention_heads": 12, "eos_token_id": 2},
                "vision_config": {"hidden_size": 1024, "patch_size": 14, "num_hidden_layers": 24, "num_attention_heads": 16}}"#,
        )
        .expect("parse");
        assert_eq!(config.text_config.vocab_size, 49408);
        assert_eq!(config.text_config.eos_token_id, 2);
        assert_eq!(config.vision_config.n_positions(), 257);
        assert!(config.validate().is_ok());
        assert_eq!(
            ClipConfig::vit_base_patch32().vision_config.n_positions(),
            50
        );
    }
}
