//! scripts/gpu-check.sh runs its whole GPU-machine path on the CPU (`--cpu-dry-run`), the
//! daemon end to end with tracker-d included.

use std::path::PathBuf;
use std::process::Command;

use crate::support;

/// tracker-d's binary, built by cargo (another package's binary is not built for these tests).
fn tracker_d_binary() -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .current_dir(support::repo_root())
        .args(["build", "-p", "tracker-d", "--bin", "tracker-d"])
        .args(["--message-format", "json-render-diagnostics"])
        .output()
        .expect("run cargo build -p tracker-d");
    assert!(
        output.status.success(),
        "cargo build -p tracker-d failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|message| {
            let target_is_tracker = message["target"]["name"] == "tracker-d";
            let executable = message["executable"].as_str()?;
            target_is_tracker.then(|| PathBuf::from(executable))
        })
        .expect("cargo reported the tracker-d executable")
}

#[test]
fn gpu_check_script_passes_its_cpu_dry_run() {
    // Built once here, so the script's own preparation finds them ready.
    support::tiny_model();
    support::photos();
    let kit = tempfile::tempdir().expect("tempdir");
    let output = Command::new("bash")
        .arg(support::repo_root().join("scripts/gpu-check.sh"))
        .arg("--cpu-dry-run")
        .env("CLIP_GPU_D_BIN", env!("CARGO_BIN_EXE_clip-gpu-d"))
        .env("TRACKER_D_BIN", tracker_d_binary())
        .env("CLIP_GPU_CHECK_KIT", kit.path())
        .env("CAH_TORCH_PYTHON", support::python())
        .output()
        .expect("run gpu-check.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "gpu-check.sh --cpu-dry-run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parity_ok = stdout
        .lines()
        .filter(|line| line.contains("\"check\": \"parity-") && line.contains("\"ok\": true"))
        .count();
    assert_eq!(
        parity_ok, 3,
        "expected f32, f16 and bf16 parity lines:\n{stdout}"
    );
    assert!(
        stdout.contains("\"check\": \"throughput-ours\""),
        "no throughput result:\n{stdout}"
    );
    // The daemon check, twice: 4 bundles of 24 thumbnails through tracker-d and `clip-gpu-d
    // run`, at batch 8 with 8 jobs held and at batch 16 with 2.
    let daemons: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| line.contains("\"check\": \"daemon-end-to-end\""))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let runs: Vec<_> = daemons
        .iter()
        .map(|daemon| (daemon["batch_size"].as_u64(), daemon["max_jobs"].as_u64()))
        .collect();
    assert_eq!(runs, [(Some(8), Some(8)), (Some(16), Some(2))], "{stdout}");
    for daemon in &daemons {
        assert_eq!(daemon["ok"], true, "{daemon}");
        assert_eq!(
            (daemon["pairs"].as_u64(), daemon["rows"].as_u64()),
            (Some(96), Some(96))
        );
        let pairs_per_second = daemon["pairs_per_second"].as_f64().unwrap_or_default();
        let busy = daemon["busy_fraction"].as_f64().unwrap_or(-1.0);
        assert!(pairs_per_second > 0.0, "{daemon}");
        assert!((0.0..=1.0).contains(&busy), "{daemon}");
        assert_eq!(daemon["device"], "cpu");
    }
}
