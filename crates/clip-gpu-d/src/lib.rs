//! `clip-gpu-d`: OpenAI CLIP on libtorch (through `tch`) that scores image–caption pairs.
//!
//! Layout:
//! - [`config`]: the model's `config.json` (Hugging Face `CLIPConfig`), so every CLIP size loads.
//! - [`model`]: the vision and text towers in tch, loading the Hugging Face safetensors layout.
//! - [`tokenizer`]: OpenAI's CLIP tokenizer (text cleanup, byte-level BPE, 77-token context).
//! - [`preprocess`]: OpenAI's image `_transform` (PIL bicubic resize, center crop) on a CPU pool.
//! - [`backend`]: the `Backend` trait, the tch backend and the OS thread that owns the model.
//! - [`embed`]: the `embed` command (images and texts to `.npy` embeddings and similarities).
//! - [`npy`]: a writer of NumPy `.npy` files.
//! - [`flags`]: checks shared by the commands' flags, and the usage error that exits 64.
//! - [`daemon`]: the `run` command, a GPU daemon that turns tracker bundles into a dataset, over
//!   [`bundle`] (hostile bundle reader), [`tags`] (NSFW/underage/animal tags), [`dedup`] (pair
//!   hash), [`shard`] (dataset shards, TFRecord included), [`output`] (local folder or S3
//!   upload from a spool), [`shutdown`] (signals) and [`systemd`] (readiness and the watchdog).

pub mod backend;
pub mod bundle;
pub mod config;
pub mod daemon;
pub mod dedup;
pub mod embed;
pub mod flags;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod output;
pub mod preprocess;
pub mod shard;
pub mod shutdown;
pub mod systemd;
pub mod tags;
pub mod telemetry;
pub mod tokenizer;

pub use backend::{Backend, BackendError, Embeddings, ImageBatch, TextBatch};
pub use config::ClipConfig;
pub use embed::{Args, Command, EmbedArgs};
pub use model::{ClipModel, DeviceSpec, ModelError, Precision};
pub use tokenizer::Tokenizer;
