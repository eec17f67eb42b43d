//! A scripted tracker on raw TCP (127.0.0.1:0) for the answers a real tracker-d never gives:
//! each request is answered by a closure from its method and path, and recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One answer: a pause, then a status and a JSON (or text) body.
pub(crate) struct Reply {
    pub(crate) delay: Duration,
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) retry_after: Option<u64>,
}

impl Reply {
    pub(crate) fn json(body: serde_json::Value) -> Reply {
        Reply::status(200, &body.to_string())
    }

    pub(crate) fn status(status: u16, body: &str) -> Reply {
        Reply {
            delay: Duration::ZERO,
            status,
            body: body.to_owned(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: seconds`.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Reply {
        self.retry_after = Some(seconds);
        self
    }

    /// The same answer after `delay`.
    pub(crate) fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Script = dyn Fn(&str, &str, &[u8]) -> Reply + Send + Sync;

pub(crate) struct FakeTracker {
    pub(crate) base: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeTracker {
    /// Serves `script(method, path, body)` for every request.
    pub(crate) async fn start(
        script: impl Fn(&str, &str, &[u8]) -> Reply + Send + Sync + 'static,
    ) -> FakeTracker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let script: Arc<Script> = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, script.clone(), log.clone()));
            }
        });
        FakeTracker {
            base: format!("http://{addr}/"),
            requests,
        }
    }

    /// `METHOD /path` of every request so far.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("log").clone()
    }

    /// How many requests went to a path starting with `prefix`.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|line| {
                line.split(' ')
                    .nth(1)
                    .is_some_and(|p| p.starts_with(prefix))
            })
            .count()
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<String>>>,
) {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buffer[..n]),
        }
    }
    let mut words = head.split(' ');
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    log.lock().expect("log").push(format!("{method} {path}"));
    let reply = script(&method, &path, &data[head_end..head_end + length]);
    tokio::time::sleep(reply.delay).await;
    let retry_after = reply
        .retry_after
        .map(|seconds| format!("retry-after: {seconds}\r\n"))
        .unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry_after}connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The answer to a registration.
pub(crate) fn registered(n: usize) -> Reply {
    Reply::json(serde_json::json!({
        "token": format!("token-{n}"),
        "display_name": format!("fake {n}"),
        "upload_address": "",
    }))
}

/// The claim answer for `jobs` as `(number, wat_url, shard)`, each with 1,000 sample IDs.
pub(crate) fn claimed(jobs: &[(u64, &str, u8)]) -> Reply {
    let jobs: Vec<serde_json::Value> = jobs
        .iter()
        .map(|&(number, wat_url, shard)| {
            serde_json::json!({
                "number": number,
                "wat_url": wat_url,
                "shard": shard,
                "start_id": number * 1000,
                "end_id": number * 1000 + 1000,
                "lease_until_ms": 4_000_000_000_000i64,
            })
        })
        .collect();
    Reply::json(serde_json::json!({ "jobs": jobs }))
}

/// A tracker that hands out both halves of `wat_url` (jobs 1 and 2) once and follows the
/// protocol, uploads included (`PUT /put/job-N`), except where `fault(method, path, job)`
/// answers instead (`job` from the body's `number`, or the PUT path).
pub(crate) async fn one_wat_tracker(
    wat_url: String,
    fault: impl Fn(&str, &str, u64) -> Option<Reply> + Send + Sync + 'static,
) -> FakeTracker {
    let state = Mutex::new((false, vec![1u64, 2]));
    FakeTracker::start(move |method, path, body| {
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let job = json["number"].as_u64().unwrap_or_else(|| {
            path.rsplit("job-")
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        });
        if let Some(reply) = fault(method, path, job) {
            return reply;
        }
        let mut state = state.lock().expect("state");
        let far = 4_000_000_000_000i64;
        if path.starts_with("/api/new") {
            registered(0)
        } else if path.starts_with("/api/ext/claim") {
            if std::mem::replace(&mut state.0, true) {
                claimed(&[])
            } else {
                claimed(&[(1, &wat_url, 0), (2, &wat_url, 1)])
            }
        } else if path.starts_with("/api/ext/heartbeat") {
            Reply::json(serde_json::json!({ "jobs": state.1, "lease_until_ms": far }))
        } else if path.starts_with("/api/ext/uploadUrl") {
            Reply::json(serde_json::json!({
                "put_url": format!("/put/job-{job}"),
                "key": format!("job-{job}"),
                "expires_at_ms": far,
                "max_bytes": 0,
            }))
        } else if method == "PUT" {
            Reply::json(serde_json::json!({
                "key": format!("job-{job}"),
                "size": body.len(),
                "sha256": "0".repeat(64),
            }))
        } else if path.starts_with("/api/ext/complete") || path.starts_with("/api/ext/release") {
            state.1.retain(|&held| held != job);
            Reply::json(serde_json::json!({}))
        } else {
            Reply::json(serde_json::json!({}))
        }
    })
    .await
}
