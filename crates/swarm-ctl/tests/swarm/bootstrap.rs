//! The rendered cloud-init user data: accepted by `cloud-init schema`, and structurally what a
//! node needs (service user, checked binary, env file, unit, limits, service enabled).

use std::process::Command;

use swarm_ctl::bootstrap::{self, MAX_USER_DATA, NodeBootstrap};
use swarm_ctl::secret::Secret;

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn rendered() -> String {
    let token = Secret::new("enroll-abcdef0123456789");
    bootstrap::render(&NodeBootstrap {
        node_name: "cah-alpha-12",
        swarm: "alpha",
        nickname: "nick main",
        tracker_url: "https://tracker.example.org/",
        scraper_url: "https://dl.example.org/scraper-d-x86_64",
        scraper_sha256: SHA,
        enrollment_token: &token,
    })
    .expect("renders")
}

#[test]
fn cloud_init_schema_accepts_the_rendered_user_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("user-data.yaml");
    std::fs::write(&path, rendered()).expect("write");
    let output = match Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run `cloud-init` ({error}); install it: apt-get install -y --no-install-recommends cloud-init"
        ),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cloud-init schema refused the user data:\n{stdout}\n{stderr}"
    );
    // "Valid cloud-config: FILE" (cloud-init 22-23) or "Valid schema FILE" (24+).
    assert!(stdout.contains("Valid"), "{stdout}\n{stderr}");
}

#[test]
fn rendered_user_data_has_what_a_node_needs() {
    let text = rendered();
    assert!(text.len() < MAX_USER_DATA, "{} bytes", text.len());
    assert!(text.starts_with("#cloud-config\n"));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid yaml");

    let users = yaml["users"].as_sequence().expect("users");
    assert_eq!(
        users[0],
        serde_yaml::Value::from("default"),
        "the image's default user stays"
    );
    assert_eq!(users[1]["name"], serde_yaml::Value::from("scraper"));
    assert_eq!(users[1]["system"], serde_yaml::Value::from(true));

    let files = yaml["write_files"].as_sequence().expect("write_files");
    let file = |path: &str| {
        files
            .iter()
            .find(|file| file["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("{path} is written"))
    };
    let env = file("/etc/cah/scraper-d.env");
    assert_eq!(env["permissions"].as_str(), Some("0600"));
    let env_text = env["content"].as_str().expect("env content");
    for line in [
        "SCRAPER_TRACKER_URL=https://tracker.example.org/",
        "SCRAPER_NICKNAME=nick main",
        "SCRAPER_NODE_NAME=cah-alpha-12",
        "SCRAPER_SWARM=alpha",
        "SCRAPER_ENROLLMENT_TOKEN=enroll-abcdef0123456789",
    ] {
        assert!(
            env_text.lines().any(|have| have == line),
            "{line} in\n{env_text}"
        );
    }
    for forbidden in ["S3", "AWS_", "SECRET_ACCESS", "HCLOUD", "DATABASE"] {
        assert!(
            !env_text.contains(forbidden),
            "no storage or cloud credentials: {forbidden}"
        );
    }
    let unit = file("/etc/systemd/system/scraper-d.service")["content"]
        .as_str()
        .expect("unit");
    assert_eq!(
        unit,
        bootstrap::SCRAPER_UNIT,
        "the unit is embedded verbatim"
    );
    for directive in [
        "Type=notify",
        "ExecStart=/usr/local/bin/scraper-d run",
        "EnvironmentFile=/etc/cah/scraper-d.env",
        "User=scraper",
        "MemoryMax=1600M",
        "LimitNOFILE=1048576",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateDevices=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|line| line == directive), "{directive}");
    }
    assert!(
        file("/etc/security/limits.d/90-cah.conf")["content"]
            .as_str()
            .is_some_and(|text| text.contains("nofile 1048576"))
    );

    let runcmd: Vec<String> = yaml["runcmd"]
        .as_sequence()
        .expect("runcmd")
        .iter()
        .map(|command| {
            command
                .as_sequence()
                .expect("exec form")
                .iter()
                .filter_map(|part| part.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let install = &runcmd[0];
    assert!(
        install.contains("'https://dl.example.org/scraper-d-x86_64'"),
        "{install}"
    );
    assert!(
        install.contains(&format!("echo \"{SHA}  $tmp\" | sha256sum -c -")),
        "{install}"
    );
    assert!(
        install.find("sha256sum").expect("checked")
            < install.find("install -m 0755").expect("installed")
    );
    assert_eq!(
        runcmd.last().map(String::as_str),
        Some("systemctl enable --now scraper-d.service")
    );
}
