//! End to end tests of `clip-gpu-d run` on the CPU with the tiny random checkpoint: bundles
//! built from real photos go through a real in-process tracker-d, and the dataset is read
//! back by Python's webdataset, pyarrow and numpy (tests/python/check_dataset.py).

#![allow(clippy::print_stderr)]

#[path = "daemon/dataset.rs"]
mod dataset;
#[allow(dead_code)]
#[path = "parity/support.rs"]
mod parity_support;
#[path = "daemon/restart.rs"]
mod restart;
#[path = "daemon/signals.rs"]
mod signals;
#[path = "daemon/support.rs"]
mod support;
