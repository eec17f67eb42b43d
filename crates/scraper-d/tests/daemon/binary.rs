//! The `scraper-d run` binary configured only through `SCRAPER_*` variables, as systemd's
//! `EnvironmentFile=/etc/cah/scraper-d.env` does.

use std::path::Path;
use std::process::Command;

use super::support::TestTracker;

fn scraper(tracker: &str, nickname: &str, work_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scraper-d"));
    command
        .arg("run")
        .env_clear()
        .env("SCRAPER_TRACKER_URL", tracker)
        .env("SCRAPER_NICKNAME", nickname)
        .env("SCRAPER_NODE_NAME", "node-3")
        .env("SCRAPER_SWARM", "test-swarm")
        .env("SCRAPER_ENROLLMENT_TOKEN", "secret-token")
        .env("SCRAPER_NAMESERVERS", "127.0.0.1:9")
        .env("SCRAPER_WORK_DIR", work_dir)
        .env("SCRAPER_EXIT_WHEN_IDLE", "true")
        .env("RUST_LOG", "info");
    command
}

/// Runs `command` to its end off the async threads; its output.
async fn output_of(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_its_environment_and_exits_when_idle() {
    let tracker = TestTracker::start(&[]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let output = output_of(scraper(&tracker.base, "env-test", work.path())).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no job left"), "{stderr}");
    assert!(!stderr.contains("secret-token"), "{stderr}");

    let mut bad = scraper(&tracker.base, " ", work.path());
    let output = tokio::task::spawn_blocking(move || bad.output())
        .await
        .expect("task")
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_downloads_a_url_list_into_one_bundle() {
    let test_web = super::support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    let list = work.path().join("urls.txt");
    let urls = [
        test_web.web.url("img-0001.photos.test", "/ok/a.jpg"),
        test_web
            .web
            .url("img-0002.photos.test", "/status/404/b.jpg"),
        test_web.web.url("img-0003.photos.test", "/ok/c.png"),
        test_web.web.url("private-img.photos.test", "/ok/d.jpg"),
    ];
    // One line that is not UTF-8 is counted, not fatal.
    let mut bytes = format!("# test list\n{}\n\n", urls.join("\n")).into_bytes();
    bytes.extend_from_slice(b"http://img-0004.photos.test/\xff\xfe.jpg\n");
    std::fs::write(&list, bytes).expect("list");
    let output = work.path().join("out.tar");
    let result = output_of(fetch_command(&test_web, &list, &output)).await;
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(stderr.lines().last().expect("summary line")).expect("json");
    assert_eq!(summary["urls"], 5);
    assert_eq!(summary["stored"], 2);
    assert_eq!(summary["outcomes"]["http_4xx"], 1);
    assert_eq!(summary["outcomes"]["private_address"], 1);
    assert_eq!(summary["outcomes"]["bad_url"], 1);
    assert!(output.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_warns_when_the_resolver_fails_a_fifth_of_the_lookups() {
    let test_web = super::support::start_web().await;
    let work = tempfile::tempdir().expect("tempdir");
    // 20 URLs, `failing` of them on hosts whose names the test DNS answers with SERVFAIL.
    let fetch = |failing: usize| {
        let urls: Vec<String> = (0..20)
            .map(|index| {
                let host = if index < failing {
                    format!("servfail-{index}.photos.test")
                } else {
                    format!("img-{index:04}.photos.test")
                };
                test_web.web.url(&host, "/ok/a.jpg")
            })
            .collect();
        let list = work.path().join(format!("urls-{failing}.txt"));
        std::fs::write(&list, urls.join("\n")).expect("list");
        let output = work.path().join(format!("out-{failing}.tar"));
        output_of(fetch_command(&test_web, &list, &output))
    };
    for (failing, warned) in [(4, true), (3, false)] {
        let result = fetch(failing).await;
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "{stderr}");
        let summary: serde_json::Value =
            serde_json::from_str(stderr.lines().last().expect("summary line")).expect("json");
        assert_eq!(summary["outcomes"]["resolver_error"], failing, "{stderr}");
        assert_eq!(
            stderr.contains("failed at the node's resolver"),
            warned,
            "{failing} of 20: {stderr}"
        );
    }
}

/// `scraper-d fetch` of the URLs in `list` into `output` through the test web's DNS, with a
/// JSON summary and no inherited environment.
fn fetch_command(test_web: &super::support::TestWeb, list: &Path, output: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scraper-d"));
    command
        .args(["fetch", "--summary-json", "--allow-cidr", "127.0.0.1/32"])
        .arg("--nameserver")
        .arg(test_web.dns.addr().to_string())
        .arg("--urls")
        .arg(list)
        .arg("--output")
        .arg(output)
        .env_clear();
    command
}

/// Every datagram the daemon sent to `socket` until one contains `wanted` (at most 15 s).
async fn notifications_until(socket: &tokio::net::UnixDatagram, wanted: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !messages
        .iter()
        .any(|message: &String| message.contains(wanted))
    {
        let received = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await;
        let Ok(received) = received else {
            panic!("no {wanted} from the daemon; it sent {messages:?}");
        };
        let length = received.expect("recv");
        messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_and_watchdog_pings_while_the_tracker_is_down() {
    // A tracker port nobody listens on.
    let tracker = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let tracker = format!("http://{tracker}/");
    let work = tempfile::tempdir().expect("tempdir");
    let notify_dir = tempfile::tempdir().expect("tempdir");
    let notify_path = notify_dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    // systemd names the pid the watchdog is for, known only once the process runs: a shell
    // that execs the daemon keeps its own.
    let daemon = scraper(&tracker, "notify-test", work.path());
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run"])
        .arg(daemon.get_program())
        .env_clear()
        .envs(
            daemon
                .get_envs()
                .filter_map(|(name, value)| Some((name, value?))),
        )
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("starts");

    let messages = notifications_until(&socket, "WATCHDOG=1").await;
    let ready = messages
        .iter()
        .find(|message| message.contains("READY=1"))
        .unwrap_or_else(|| panic!("READY=1 before the first watchdog ping: {messages:?}"));
    assert!(
        ready.contains(&format!(
            "STATUS=node-3: waiting for the tracker at {tracker}"
        )),
        "{ready}"
    );

    // A stop while waiting: STOPPING=1, and a clean exit.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    notifications_until(&socket, "STOPPING=1").await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("task")
        .expect("waits");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_dir_must_be_a_folder_and_only_its_last_component_is_created() {
    let tracker = TestTracker::start(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let afile = dir.path().join("afile");
    std::fs::write(&afile, b"not a folder").expect("write");
    let nested = dir.path().join("missing").join("dir");
    for (work_dir, refusal) in [(&afile, "is not a folder"), (&nested, "does not exist")] {
        let output = output_of(scraper(&tracker.base, "work-dir-test", work_dir)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{stderr}");
        let named = format!(
            "--work-dir (SCRAPER_WORK_DIR) {} {refusal}",
            work_dir.display()
        );
        assert!(stderr.contains(&named), "{stderr}");
    }
    assert!(
        std::fs::metadata(dir.path().join("missing")).is_err(),
        "no folder tree grown"
    );

    let fresh = dir.path().join("fresh");
    let output = output_of(scraper(&tracker.base, "work-dir-test", &fresh)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("created the work folder"), "{stderr}");
    assert!(std::fs::metadata(&fresh).expect("created").is_dir());
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boolean_variables_take_the_usual_spellings() {
    let tracker = TestTracker::start(&[]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut command = scraper(&tracker.base, "bool-test", work.path());
    command
        .env("SCRAPER_EXIT_WHEN_IDLE", "1")
        .env("SCRAPER_ALLOW_PRIVATE_ADDRESSES", "yes")
        .env("SCRAPER_TRACKER_DEDUP", "Off")
        .env("SCRAPER_IGNORE_ROBOTS", "");
    let output = output_of(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // SCRAPER_EXIT_WHEN_IDLE=1 was read as true.
    assert!(stderr.contains("no job left"), "{stderr}");

    let mut command = scraper(&tracker.base, "bool-test", work.path());
    command.env("SCRAPER_ALLOW_PRIVATE_ADDRESSES", "maybe");
    let output = output_of(command).await;
    assert_eq!(output.status.code(), Some(64));
    tracker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_name_variable_means_the_nickname() {
    let tracker = TestTracker::start(&[]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let mut command = scraper(&tracker.base, "blank-node", work.path());
    command
        .env("SCRAPER_NODE_NAME", "")
        .env("SCRAPER_SWARM", "")
        .env("SCRAPER_CONTACT_URL", "");
    let output = output_of(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("node=blank-node"), "{stderr}");
    assert!(!stderr.contains("swarm member"), "{stderr}");
    tracker.stop().await;
}
