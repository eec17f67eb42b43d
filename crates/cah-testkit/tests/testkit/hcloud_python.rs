//! The fake Hetzner API checked by the official `hcloud` Python library (pinned, from PyPI).
//!
//! The library is installed once with `pip install --target` into `target/hcloud-py`. If `pip` itself
//! is missing the test says so on stderr and passes; any other failure fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cah_testkit::hetzner::{HetznerConfig, HetznerServer, fingerprint};

const HCLOUD_VERSION: &str = "2.27.0";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGvI9LwvvQ8Xj5z3Qk3c8i9DZg+fM3nq9m0gkJ0sCk2M ops@laptop";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Installs `hcloud` into `target/hcloud-py` unless already there; `None` when pip is unavailable.
fn install_hcloud() -> Option<PathBuf> {
    // Canonical, because pip resolves `..` lexically while the kernel follows symlinks.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let target = workspace.join("target/hcloud-py");
    let marker = target.join(format!(".ready-hcloud-{HCLOUD_VERSION}"));
    if marker.is_file() {
        return Some(target);
    }
    let pip_works = Command::new(python())
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !pip_works {
        return None;
    }
    let staging = target.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let status = Command::new(python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&staging)
        .arg(format!("hcloud=={HCLOUD_VERSION}"))
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "pip install hcloud=={HCLOUD_VERSION} failed"
    );
    std::fs::write(staging.join(format!(".ready-hcloud-{HCLOUD_VERSION}")), b"").expect("marker");
    // Another test run may have won the race; its copy is as good as ours.
    if std::fs::rename(&staging, &target).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        marker.is_file(),
        "hcloud was not installed into {}",
        target.display()
    );
    Some(target)
}

#[allow(
    clippy::print_stderr,
    reason = "the skip notice must reach whoever runs the tests"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_accepts_the_fake() {
    let Some(site_packages) = tokio::task::spawn_blocking(install_hcloud)
        .await
        .expect("installer")
    else {
        eprintln!(
            "SKIPPED official_python_client_accepts_the_fake: `{} -m pip` is not available",
            python()
        );
        return;
    };
    let server = HetznerServer::start_local(HetznerConfig {
        action_delay: Duration::from_millis(30),
        ..HetznerConfig::quick(&["py"])
    })
    .await
    .expect("fake");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/hcloud_roundtrip.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .env("PYTHONPATH", &site_packages)
        .env("HCLOUD_ENDPOINT", server.base_url())
        .env("HCLOUD_TOKEN", "py")
        .env("HCLOUD_KEY", KEY)
        .env("HCLOUD_FINGERPRINT", fingerprint(KEY).expect("fingerprint"))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("hcloud-python ok"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .filter(|request| request.method == "POST" && request.path == "/v1/servers")
            .count()
            >= 4
    );
    assert!(
        requests
            .iter()
            .any(|request| request.path.starts_with("/v1/actions/")),
        "the library polled actions"
    );
    assert!(
        server.server_ids("py").is_empty(),
        "the script deleted every server"
    );
}
