//! The real model: [`ClipModel`] on a libtorch device.

use std::path::Path;

use tch::Device;
use tracing::info;

use super::{Backend, BackendError, Embeddings, ImageBatch, TextBatch};
use crate::model::{ClipModel, DeviceSpec, Precision, l2_normalize};

/// CLIP on libtorch. Not `Send`-shared: the backend thread creates and owns it.
#[derive(Debug)]
pub struct TorchBackend {
    model: ClipModel,
}

/// Versions of libtorch and its CUDA stack, as seen at run time.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub cuda_built: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_version: i64,
    pub cudart_version: i64,
    pub cpu_threads: i32,
}

impl RuntimeInfo {
    pub fn detect() -> Self {
        let cuda_built = tch::utils::has_cuda();
        let cuda_available = tch::Cuda::is_available();
        Self {
            cuda_built,
            cuda_available,
            cuda_devices: if cuda_available {
                tch::Cuda::device_count()
            } else {
                0
            },
            cudnn_version: if cuda_available {
                tch::utils::version_cudnn()
            } else {
                0
            },
            cudart_version: if cuda_available {
                tch::utils::version_cudart()
            } else {
                0
            },
            cpu_threads: tch::get_num_threads(),
        }
    }

    pub fn log(&self) {
        info!(
            libtorch = TORCH_VERSION,
            cuda_built = self.cuda_built,
            cuda_available = self.cuda_available,
            cuda_devices = self.cuda_devices,
            cudart = self.cudart_version,
            cudnn = self.cudnn_version,
            cpu_threads = self.cpu_threads,
            "libtorch runtime"
        );
    }
}

/// The libtorch release that tch 0.24 is built for (torch-sys checks it at build time).
pub const TORCH_VERSION: &str = "2.11.0";

/// The tch device for `spec`, or an error naming why CUDA cannot be used. Never falls back.
pub fn resolve_device(spec: DeviceSpec) -> Result<Device, BackendError> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(index) => {
            let runtime = RuntimeInfo::detect();
            let unavailable =
                |reason: String| BackendError::DeviceUnavailable(spec.to_string(), reason);
            if !runtime.cuda_available {
                let reason = if runtime.cuda_built {
                    "CUDA is not available (no GPU, or no driver); to run on the CPU, choose the cpu device (run: --devices cpu, CLIP_DEVICES; embed and bench: --device cpu)"
                } else {
                    "libtorch sees no CUDA (no GPU or driver here, or libtorch_cuda.so not linked: see build.rs); to run on the CPU, choose the cpu device (run: --devices cpu, CLIP_DEVICES; embed and bench: --device cpu)"
                };
                return Err(unavailable(reason.to_owned()));
            }
            if i64::try_from(index).map_or(true, |index| index >= runtime.cuda_devices) {
                return Err(unavailable(format!(
                    "only {} CUDA devices",
                    runtime.cuda_devices
                )));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// Sets libtorch's CPU thread count; a positive type, since libtorch aborts on 0 or less
/// ("Expected positive number of threads").
pub fn set_cpu_threads(threads: std::num::NonZeroU16) {
    tch::set_num_threads(i32::from(threads.get()));
}

impl TorchBackend {
    /// Loads the checkpoint folder onto `spec`; call this on the thread that will own it.
    pub fn load(
        model_dir: &Path,
        spec: DeviceSpec,
        precision: Precision,
    ) -> Result<Self, BackendError> {
        let device = resolve_device(spec)?;
        if let Device::Cuda(_) = device {
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let model = ClipModel::load(model_dir, device, precision).map_err(BackendError::Load)?;
        info!(model = %model_dir.display(), device = %spec, ?precision, "model loaded");
        Ok(Self { model })
    }

    pub fn model(&self) -> &ClipModel {
        &self.model
    }
}

impl Backend for TorchBackend {
    fn embed_images(&self, batch: &ImageBatch) -> Result<Embeddings, BackendError> {
        if batch.n_images == 0 {
            return Ok(Embeddings::empty(self.dim()));
        }
        let features = self
            .model
            .image_features(&batch.pixels, batch.n_images)
            .map_err(BackendError::Inference)?;
        to_embeddings(&features)
    }

    fn embed_texts(&self, batch: &TextBatch) -> Result<Embeddings, BackendError> {
        if batch.n_texts == 0 {
            return Ok(Embeddings::empty(self.dim()));
        }
        let features = self
            .model
            .text_features(&batch.token_ids, batch.n_texts)
            .map_err(BackendError::Inference)?;
        to_embeddings(&features)
    }

    fn health(&self) -> Result<(), BackendError> {
        let context =
            usize::try_from(self.model.config().text_config.max_position_embeddings).unwrap_or(0);
        self.embed_texts(&TextBatch {
            n_texts: 1,
            token_ids: vec![0; context],
        })
        .map(|_| ())
    }
}

impl TorchBackend {
    fn dim(&self) -> usize {
        usize::try_from(self.model.config().projection_dim).unwrap_or(0)
    }
}

fn to_embeddings(features: &tch::Tensor) -> Result<Embeddings, BackendError> {
    let inference = |error: tch::TchError| BackendError::Inference(error.into());
    let normalized = l2_normalize(features).map_err(inference)?;
    let (rows, dim) = normalized.size2().map_err(inference)?;
    let values = Vec::<f32>::try_from(&normalized.f_flatten(0, -1).map_err(inference)?)
        .map_err(inference)?;
    Ok(Embeddings {
        rows: rows as usize,
        dim: dim as usize,
        values,
    })
}
