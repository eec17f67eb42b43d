//! End to end tests of `clip-gpu-d run` on the CPU with the tiny random checkpoint: bundles
//! built from real photos go through a real in-process tracker-d, and the dataset is read
//! back by Python's webdataset, pyarrow, numpy and tfrecord (tests/python/check_dataset.py);
//! the S3 output goes to a real S3 server, s3s-fs.

#![allow(clippy::print_stderr)]

#[path = "daemon/bad_range.rs"]
mod bad_range;
#[path = "daemon/dataset.rs"]
mod dataset;
#[path = "daemon/drain.rs"]
mod drain;
#[path = "daemon/fetch.rs"]
mod fetch;
#[path = "daemon/forgotten.rs"]
mod forgotten;
#[path = "daemon/image_size.rs"]
mod image_size;
#[path = "daemon/invalid_report.rs"]
mod invalid_report;
#[path = "daemon/lost_claim.rs"]
mod lost_claim;
#[path = "daemon/main_refusal.rs"]
mod main_refusal;
#[path = "daemon/open_shard.rs"]
mod open_shard;
#[allow(dead_code)]
#[path = "parity/support.rs"]
mod parity_support;
#[path = "daemon/partition.rs"]
mod partition;
#[path = "daemon/relay.rs"]
mod relay;
#[path = "daemon/restart.rs"]
mod restart;
#[path = "daemon/s3.rs"]
mod s3;
#[path = "daemon/s3_outage.rs"]
mod s3_outage;
#[path = "daemon/s3_start.rs"]
mod s3_start;
#[path = "daemon/s3_writer.rs"]
mod s3_writer;
#[path = "daemon/s3s.rs"]
mod s3s;
#[path = "daemon/signals.rs"]
mod signals;
#[path = "daemon/start_wait.rs"]
mod start_wait;
#[path = "daemon/support.rs"]
mod support;
#[path = "daemon/usage.rs"]
mod usage;
#[path = "daemon/write_failure.rs"]
mod write_failure;
