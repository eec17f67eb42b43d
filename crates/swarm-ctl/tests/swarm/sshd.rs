//! `logs` and `restart` against a real OpenSSH server on 127.0.0.1, started by the test with its
//! own host key and the swarm's key authorized; fake `journalctl`/`systemctl` on its PATH record
//! the exact remote commands.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::support::World;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed on drop.
struct Sshd {
    port: u16,
    _child: tokio::process::Child,
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn current_user() -> String {
    let output = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn start_sshd(dir: &Path, authorized_key: &Path) -> Sshd {
    assert!(
        std::fs::exists(SSHD).unwrap_or(false),
        "{SSHD} is missing; install it: apt-get install -y --no-install-recommends openssh-server"
    );
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("host_key"))
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    std::fs::copy(authorized_key, dir.join("authorized_keys")).expect("authorized key");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let log = dir.join("remote.log");
    script(
        &bin.join("journalctl"),
        &format!(
            "echo \"journalctl $*\" >> '{}'\necho '2026-11-26T07:00:00+0000 node scraper-d[42]: claimed job 7'\necho '2026-11-26T07:00:01+0000 node scraper-d[42]: 1234 images'\n",
            log.display()
        ),
    );
    script(
        &bin.join("systemctl"),
        &format!(
            "echo \"systemctl $*\" >> '{}'\nif [ \"$1\" = is-active ]; then echo active; fi\n",
            log.display()
        ),
    );
    // Root's sshd needs its privilege separation folder; a non-root sshd ignores it.
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {pid}\nAuthorizedKeysFile {keys}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nSetEnv PATH={bin}:/usr/bin:/bin\n",
            host_key = dir.join("host_key").display(),
            pid = dir.join("sshd.pid").display(),
            keys = dir.join("authorized_keys").display(),
            user = current_user(),
            bin = bin.display(),
        ),
    )
    .expect("sshd_config");
    let child = tokio::process::Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("sshd.log")).expect("sshd log"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("sshd starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Sshd {
                port,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
    panic!("sshd did not listen on 127.0.0.1:{port}:\n{log}");
}

#[tokio::test]
async fn logs_and_restart_over_real_ssh() {
    let mut world = World::single().await;
    world.ok(&["up", "2"]).await;
    let ssh_dir = world.dir.path().join("sshd");
    std::fs::create_dir_all(&ssh_dir).expect("sshd dir");
    let sshd = start_sshd(&ssh_dir, &world.state_dir().join("alpha_ed25519.pub")).await;
    world.extra_args = vec![
        "--ssh-host".into(),
        "127.0.0.1".into(),
        "--ssh-port".into(),
        sshd.port.to_string(),
        "--ssh-user".into(),
        current_user(),
    ];
    let remote_log = ssh_dir.join("remote.log");
    let (result, text) = world.run(&["logs", "cah-alpha-1", "--lines", "5"]).await;
    if let Err(error) = result {
        let log = std::fs::read_to_string(ssh_dir.join("sshd.log")).unwrap_or_default();
        panic!("logs failed: {error:#}\nsshd log:\n{log}");
    }
    assert!(text.contains("scraper-d[42]: claimed job 7"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&remote_log).expect("remote log"),
        "journalctl -u scraper-d --no-pager --output=short-iso -n 5\n"
    );

    let text = world.ok(&["logs", "--all"]).await;
    assert!(
        text.contains("cah-alpha-1 | 2026-11-26T07:00:01+0000 node scraper-d[42]: 1234 images"),
        "{text}"
    );
    assert!(
        text.contains("cah-alpha-2 | 2026-11-26T07:00:00+0000"),
        "{text}"
    );

    std::fs::remove_file(&remote_log).expect("reset log");
    let text = world.ok(&["restart"]).await;
    assert!(
        text.contains("cah-alpha-1: restarted (active)")
            && text.contains("restarted scraper-d on 2 nodes"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&remote_log).expect("remote log"),
        "systemctl restart scraper-d\nsystemctl is-active scraper-d\n".repeat(2)
    );
}
