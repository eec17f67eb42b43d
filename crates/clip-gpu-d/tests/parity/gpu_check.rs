//! scripts/gpu-check.sh runs its whole GPU-machine path on the CPU (`--cpu-dry-run`).

use std::process::Command;

use crate::support;

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
}
