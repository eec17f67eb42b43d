//! The swarm's SSH key (generated with `ssh-keygen`, uploaded to each project once) and its
//! enrollment token (generated once, kept in the state folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use md5::{Digest, Md5};
use rand::RngCore;

use crate::hcloud::{ErrorCode, Hcloud};
use crate::secret::Secret;

/// A local key pair.
#[derive(Debug, Clone)]
pub struct SwarmKey {
    pub private_key: PathBuf,
    /// The `.pub` line.
    pub public_key: String,
    /// MD5 of the key blob in colon hex, as Hetzner shows it.
    pub fingerprint: String,
}

/// The key at `path`, made with `ssh-keygen -t ed25519` if it does not exist yet.
pub async fn ensure_local(path: &Path, swarm: &str) -> anyhow::Result<SwarmKey> {
    let public_path = path.with_extension("pub");
    if !std::fs::exists(path).unwrap_or(false) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create folder {}", parent.display()))?;
        }
        let status = tokio::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("swarm-ctl-{swarm}"))
            .arg("-f")
            .arg(path)
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .context(
                "cannot run ssh-keygen; install OpenSSH's client tools or set bootstrap.ssh_key",
            )?;
        if !status.success() {
            bail!("ssh-keygen failed ({status}) writing {}", path.display());
        }
        tracing::info!(path = %path.display(), "generated the swarm's ssh key");
    }
    let public_key = std::fs::read_to_string(&public_path)
        .with_context(|| format!("cannot read the public key {}", public_path.display()))?
        .trim()
        .to_owned();
    let fingerprint = md5_fingerprint(&public_key)
        .with_context(|| format!("{} is not an OpenSSH public key", public_path.display()))?;
    Ok(SwarmKey {
        private_key: path.to_owned(),
        public_key,
        fingerprint,
    })
}

/// MD5 of the decoded key blob in colon-separated hex.
pub fn md5_fingerprint(public_key: &str) -> Option<String> {
    let blob = public_key.split_whitespace().nth(1)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&decoded);
    Some(
        digest
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The key's id in the project, uploading it first if the project does not have it.
pub async fn ensure_uploaded(api: &Hcloud, key: &SwarmKey, swarm: &str) -> anyhow::Result<i64> {
    if let Some(existing) = api.ssh_key_by_fingerprint(&key.fingerprint).await? {
        return Ok(existing.id);
    }
    let labels = BTreeMap::from([
        (
            crate::fleet::MANAGED_BY.0.to_owned(),
            crate::fleet::MANAGED_BY.1.to_owned(),
        ),
        (crate::fleet::SWARM_LABEL.to_owned(), swarm.to_owned()),
    ]);
    let name = format!("cah-swarm-{swarm}");
    match api.create_ssh_key(&name, &key.public_key, &labels).await {
        Ok(created) => Ok(created.id),
        Err(error) if error.code() == Some(&ErrorCode::UniquenessError) => {
            // Another key already has our name: keep it, and upload ours under a longer name.
            let suffix: String = key.fingerprint.replace(':', "").chars().take(8).collect();
            let created = api
                .create_ssh_key(&format!("{name}-{suffix}"), &key.public_key, &labels)
                .await
                .context("cannot upload the swarm's ssh key")?;
            Ok(created.id)
        }
        Err(error) => Err(error).context("cannot upload the swarm's ssh key"),
    }
}

/// The swarm's enrollment token from `path`, generated (32 random bytes, hex, mode 0600) if missing.
pub fn ensure_enrollment_token(path: &Path) -> anyhow::Result<Secret> {
    if !std::fs::exists(path).unwrap_or(false) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create folder {}", parent.display()))?;
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        write_private(path, &hex::encode(bytes))?;
    }
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the enrollment token {}", path.display()))?;
    Ok(Secret::new(token.trim()))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_the_fake() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1oQk9yb2RvbGZvMTIzNDU2Nzg5MGFiY2RlZmdo test";
        assert_eq!(md5_fingerprint(key), cah_testkit::hetzner::fingerprint(key));
        assert_eq!(md5_fingerprint("garbage"), None);
    }

    #[test]
    fn enrollment_token_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alpha.enrollment");
        let first = ensure_enrollment_token(&path).expect("created");
        let second = ensure_enrollment_token(&path).expect("read");
        assert_eq!(first, second);
        assert_eq!(first.expose().len(), 64);
    }
}
