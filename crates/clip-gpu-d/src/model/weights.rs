//! Named tensors of a safetensors checkpoint, handed out by Hugging Face path with shape checks.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};

use super::ModelError;

/// All tensors of the checkpoint, kept on the CPU in f32 until a tower takes them.
#[derive(Debug, Clone)]
pub(super) struct Weights {
    tensors: Rc<HashMap<String, Tensor>>,
    prefix: String,
    device: Device,
    kind: Kind,
}

impl Weights {
    pub(super) fn read(path: &Path, device: Device, kind: Kind) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such checkpoint file",
                ),
            });
        }
        let tensors = Tensor::read_safetensors(path)?.into_iter().collect();
        Ok(Self {
            tensors: Rc::new(tensors),
            prefix: String::new(),
            device,
            kind,
        })
    }

    /// The same store below `name` (`weights.sub("vision_model")`).
    pub(super) fn sub(&self, name: &str) -> Self {
        Self {
            prefix: self.path(name),
            ..self.clone()
        }
    }

    /// The tensor `name` in f32 on the CPU, for load-time arithmetic, after a shape check.
    pub(super) fn raw(&self, name: &str, shape: &[i64]) -> Result<Tensor, ModelError> {
        let full_name = self.path(name);
        let tensor = self
            .tensors
            .get(&full_name)
            .ok_or_else(|| ModelError::MissingTensor(full_name.clone()))?;
        let actual = tensor.size();
        if actual != shape {
            return Err(ModelError::Shape {
                name: full_name,
                expected: shape.to_vec(),
                actual,
            });
        }
        Ok(tensor.f_to_kind(Kind::Float)?)
    }

    /// The tensor `name` in the model's precision on the model's device.
    pub(super) fn get(&self, name: &str, shape: &[i64]) -> Result<Tensor, ModelError> {
        self.place(&self.raw(name, shape)?)
    }

    /// Moves a load-time result to the model's device and precision.
    pub(super) fn place(&self, tensor: &Tensor) -> Result<Tensor, ModelError> {
        Ok(tensor
            .f_to_kind(self.kind)?
            .f_to_device(self.device)?
            .f_contiguous()?)
    }

    fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}
