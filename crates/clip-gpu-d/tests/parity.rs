//! Parity of clip-gpu-d with OpenAI's tokenizer and preprocessing and with Hugging Face's
//! `CLIPModel`, on the CPU, with a tiny random-weight checkpoint in the real layout.
//! Python references run from the torch venv (scripts/setup-torch.sh); missing Python fails.
//! The measured figures go to stderr (`cargo test -- --nocapture` shows them).

#![allow(clippy::print_stderr)]

#[path = "parity/cli.rs"]
mod cli;
#[path = "parity/gpu_check.rs"]
mod gpu_check;
#[path = "parity/model.rs"]
mod model;
#[path = "parity/preprocess.rs"]
mod preprocess;
#[path = "parity/support.rs"]
mod support;
#[path = "parity/tokenizer.rs"]
mod tokenizer;
