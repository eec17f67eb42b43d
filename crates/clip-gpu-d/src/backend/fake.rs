//! Deterministic stand-in vectors, for unit tests of queueing and batching only.

use super::{Backend, BackendError, Embeddings, ImageBatch, TextBatch};

/// Embeds each input as a unit vector derived from its bytes.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    pub dim: usize,
    pub image_bytes: usize,
    pub context: usize,
}

impl FakeBackend {
    fn embed_rows<T: Copy + Into<i64>>(
        &self,
        rows: usize,
        values: &[T],
        per_row: usize,
    ) -> Result<Embeddings, BackendError> {
        if per_row == 0 || values.len() != rows * per_row {
            return Err(BackendError::BadBatch(format!(
                "{} values for {rows} rows",
                values.len()
            )));
        }
        let mut out = Vec::with_capacity(rows * self.dim);
        for row in values.chunks(per_row) {
            let seed = row.iter().fold(17i64, |hash, value| {
                hash.wrapping_mul(31).wrapping_add((*value).into())
            });
            let vector: Vec<f32> = (0..self.dim)
                .map(|index| ((seed.wrapping_add(index as i64) % 97) as f32) + 1.0)
                .collect();
            let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
            out.extend(vector.iter().map(|value| value / norm));
        }
        Ok(Embeddings {
            rows,
            dim: self.dim,
            values: out,
        })
    }
}

impl Backend for FakeBackend {
    fn embed_images(&self, batch: &ImageBatch) -> Result<Embeddings, BackendError> {
        self.embed_rows(batch.n_images, &batch.pixels, self.image_bytes)
    }

    fn embed_texts(&self, batch: &TextBatch) -> Result<Embeddings, BackendError> {
        self.embed_rows(batch.n_texts, &batch.token_ids, self.context)
    }

    fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
