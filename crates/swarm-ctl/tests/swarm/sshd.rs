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
    child: tokio::process::Child,
}

impl Sshd {
    /// Kills it and waits until it is gone, so its port is free again.
    async fn stop(mut self) {
        self.child.kill().await.expect("sshd stops");
    }
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

/// An sshd with a new host key in `dir`, on `port` or a free one.
async fn start_sshd(dir: &Path, authorized_key: &Path, port: Option<u16>) -> Sshd {
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
    let port = port.unwrap_or_else(|| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    });
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
            return Sshd { port, child };
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
    let sshd = start_sshd(&ssh_dir, &world.state_dir().join("alpha_ed25519.pub"), None).await;
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

/// Whether `ssh-keygen -F host` finds `host` in `known_hosts` (hashed entries included).
fn known(known_hosts: &Path, host: &str) -> bool {
    std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(host)
        .arg("-f")
        .arg(known_hosts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ssh-keygen runs")
        .success()
}

fn node_ips(servers: &[serde_json::Value]) -> Vec<String> {
    servers
        .iter()
        .filter_map(|server| {
            server["public_net"]["ipv4"]["ip"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn recycled_addresses_are_forgotten_on_create_and_delete() {
    let world = World::single().await;
    world.ok(&["up", "1"]).await;
    let first = node_ips(&world.servers(0).await);
    assert_eq!(first.len(), 1);
    // Keys of earlier servers on the fake's addresses, hashed as Debian's ssh_config does.
    let known_hosts = world.state_dir().join("alpha_known_hosts");
    let key = std::fs::read_to_string(world.state_dir().join("alpha_ed25519.pub")).expect("key");
    let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let lines: String = (1..=20).map(|n| format!("203.0.113.{n} {key}\n")).collect();
    std::fs::write(&known_hosts, lines).expect("known hosts");
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ssh-keygen -H");
    assert!(status.success());
    assert!(known(&known_hosts, "203.0.113.20"));

    world.ok(&["up", "2"]).await;
    let second: Vec<String> = node_ips(&world.servers(0).await)
        .into_iter()
        .filter(|ip| !first.contains(ip))
        .collect();
    assert_eq!(second.len(), 1);
    assert!(
        !known(&known_hosts, &second[0]),
        "a new server's address has no old key left"
    );
    assert!(known(&known_hosts, &first[0]), "existing nodes keep theirs");

    world.ok(&["down", "--yes"]).await;
    assert!(
        !known(&known_hosts, &first[0]),
        "a deleted server's address is forgotten"
    );
    assert!(known(&known_hosts, "203.0.113.20"), "other addresses stay");
}

#[tokio::test]
async fn a_changed_host_key_is_reported_with_the_fix() {
    let mut world = World::single().await;
    world.ok(&["up", "1"]).await;
    let authorized = world.state_dir().join("alpha_ed25519.pub");
    let first_dir = world.dir.path().join("sshd-1");
    std::fs::create_dir_all(&first_dir).expect("sshd dir");
    let sshd = start_sshd(&first_dir, &authorized, None).await;
    let port = sshd.port;
    world.extra_args = vec![
        "--ssh-host".into(),
        "127.0.0.1".into(),
        "--ssh-port".into(),
        port.to_string(),
        "--ssh-user".into(),
        current_user(),
    ];
    world.ok(&["restart"]).await;

    // Another machine (with another host key) answers on the same address now.
    sshd.stop().await;
    let second_dir = world.dir.path().join("sshd-2");
    std::fs::create_dir_all(&second_dir).expect("sshd dir");
    let _sshd = start_sshd(&second_dir, &authorized, Some(port)).await;
    let (result, text) = world.run(&["restart"]).await;
    assert!(result.is_err(), "{text}");
    let known_hosts = world.state_dir().join("alpha_known_hosts");
    let fix = format!(
        "ssh-keygen -R '[127.0.0.1]:{port}' -f '{}'",
        known_hosts.display()
    );
    assert!(
        text.contains("the host key of cah-alpha-1 ([127.0.0.1]:") && text.contains(&fix),
        "{text}"
    );

    // The printed fix works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&fix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sh runs");
    assert!(status.success());
    let text = world.ok(&["restart"]).await;
    assert!(text.contains("cah-alpha-1: restarted (active)"), "{text}");
}
