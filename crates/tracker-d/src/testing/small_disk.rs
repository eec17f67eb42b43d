//! A small tmpfs mounted on a test's folder: a disk that really fills up (`ENOSPC`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tmpfs of a fixed size mounted on a folder, unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` (rounded up to whole pages) on `path`, creating the folder;
    /// `None` where this process may not mount (not root, or a container without
    /// `CAP_SYS_ADMIN`), so the caller can fall back to something else and say so.
    pub fn mount(path: &Path, bytes: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).expect("create the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0700")])
            .arg("cah-test-small-disk")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then(|| SmallDisk {
            path: path.to_owned(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a server that still holds a file open must not keep the mount around.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
