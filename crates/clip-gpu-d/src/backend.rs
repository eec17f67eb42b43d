//! The model behind a small trait, and the one OS thread that owns it (TEI's `BackendThread`).
//!
//! `torch` is the real CLIP on libtorch; `fake` gives deterministic vectors for tests of
//! queueing, never instead of the real model.

pub mod fake;
pub mod thread;
pub mod torch;

pub use thread::BackendThread;

/// Preprocessed images: `n_images × side × side × 3` RGB bytes.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    pub n_images: usize,
    pub pixels: Vec<u8>,
}

/// Token rows: `n_texts × context` ids.
#[derive(Debug, Clone)]
pub struct TextBatch {
    pub n_texts: usize,
    pub token_ids: Vec<i64>,
}

/// L2-normalised embeddings, `rows × dim`, row-major f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f32>,
}

impl Embeddings {
    /// No rows, for an empty batch.
    pub fn empty(dim: usize) -> Embeddings {
        Embeddings {
            rows: 0,
            dim,
            values: Vec::new(),
        }
    }
}

/// What a backend reports.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("device {0} is unavailable: {1}")]
    DeviceUnavailable(String, String),
    #[error("failed to load the model")]
    Load(#[source] crate::model::ModelError),
    #[error("inference failed")]
    Inference(#[source] crate::model::ModelError),
    #[error("bad batch: {0}")]
    BadBatch(String),
    #[error("the backend thread has stopped")]
    Stopped,
}

/// A CLIP model that embeds batches. Implementations may block for a long time: only the
/// backend thread calls them.
pub trait Backend {
    fn embed_images(&self, batch: &ImageBatch) -> Result<Embeddings, BackendError>;
    fn embed_texts(&self, batch: &TextBatch) -> Result<Embeddings, BackendError>;
    /// A tiny forward pass that proves the device still works.
    fn health(&self) -> Result<(), BackendError>;
}

impl Embeddings {
    pub fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.dim..(index + 1) * self.dim]
    }

    /// Cosine similarities `self.rows × other.rows` (rows are unit vectors).
    pub fn similarities(&self, other: &Embeddings) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * other.rows);
        for left in 0..self.rows {
            for right in 0..other.rows {
                out.push(
                    self.row(left)
                        .iter()
                        .zip(other.row(right))
                        .map(|(a, b)| a * b)
                        .sum(),
                );
            }
        }
        out
    }
}
