//! A scripted tracker: an axum app on `127.0.0.1:0` that answers each path from a queue of steps.
//!
//! It tests the client's retry and status mapping, not the tracker: each test says exactly
//! which statuses, headers, bodies and delays the "tracker" answers, and checks what it received.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cah_protocol::ClientType;
use cah_tracker_client::{ClientConfig, RetryPolicy, Session, TrackerClient};
use url::Url;

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    status: u16,
    body: String,
    content_type: &'static str,
    retry_after: Option<String>,
    delay: Duration,
}

impl Step {
    /// 200 with a text body.
    pub(crate) fn text(body: &str) -> Step {
        Step::status(200, body)
    }

    /// 200 with a JSON body.
    pub(crate) fn json(body: serde_json::Value) -> Step {
        Step {
            content_type: "application/json",
            ..Step::status(200, &body.to_string())
        }
    }

    /// Any status with a text detail.
    pub(crate) fn status(status: u16, body: &str) -> Step {
        Step {
            status,
            body: body.to_owned(),
            content_type: "text/plain; charset=utf-8",
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    /// Adds a `Retry-After` header.
    pub(crate) fn retry_after(mut self, value: &str) -> Step {
        self.retry_after = Some(value.to_owned());
        self
    }

    /// Answers only after `delay`.
    pub(crate) fn delay(mut self, delay: Duration) -> Step {
        self.delay = delay;
        self
    }
}

/// One request the scripted tracker received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct Script {
    steps: Mutex<HashMap<String, VecDeque<Step>>>,
    received: Mutex<Vec<Received>>,
}

/// A running scripted tracker.
pub(crate) struct ScriptedTracker {
    pub(crate) url: Url,
    script: Arc<Script>,
}

impl ScriptedTracker {
    /// Binds `127.0.0.1:0` and serves the script in the background.
    pub(crate) async fn start() -> ScriptedTracker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let script = Arc::new(Script::default());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("scripted tracker serves");
        });
        let url = Url::parse(&format!("http://{addr}/")).expect("valid url");
        ScriptedTracker { url, script }
    }

    /// Queues answers for `path`, served in order.
    pub(crate) fn script(&self, path: &str, steps: impl IntoIterator<Item = Step>) -> &Self {
        let mut all = self.script.steps.lock().expect("not poisoned");
        all.entry(path.to_owned()).or_default().extend(steps);
        self
    }

    /// Everything received so far, in order.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.script.received.lock().expect("not poisoned").clone()
    }

    /// Requests received for `path`.
    pub(crate) fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|received| received.path == path)
            .collect()
    }

    /// A CPU session of nickname `alice` with token `tok`, its registration scripted.
    pub(crate) async fn session(&self, retry: RetryPolicy) -> Session {
        self.script(
            "/api/new",
            [Step::json(serde_json::json!({
                "token": "tok",
                "display_name": "quiet-otter-512",
                "upload_address": "cah@staging::gpujobs",
            }))],
        );
        self.client(retry)
            .register("alice", ClientType::Cpu)
            .await
            .expect("registers")
    }

    /// A client with tiny backoffs, so tests with real time stay fast.
    pub(crate) fn client(&self, retry: RetryPolicy) -> TrackerClient {
        client_for(self.url.clone(), retry)
    }
}

/// A client of `url` with a 2 s request timeout and the given policy.
pub(crate) fn client_for(url: Url, retry: RetryPolicy) -> TrackerClient {
    let mut config = ClientConfig::new(url);
    config.retry = retry;
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    TrackerClient::new(config).expect("client builds")
}

/// Up to `max_attempts` attempts, backoffs of a few milliseconds.
pub(crate) fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_elapsed: Duration::from_secs(30),
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    script
        .received
        .lock()
        .expect("not poisoned")
        .push(Received {
            method,
            path: path.clone(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
        });
    let step = script
        .steps
        .lock()
        .expect("not poisoned")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let Some(step) = step else {
        return (
            StatusCode::IM_A_TEAPOT,
            format!("script exhausted for {path}"),
        )
            .into_response();
    };
    tokio::time::sleep(step.delay).await;
    let status = StatusCode::from_u16(step.status).expect("valid scripted status");
    let mut response = (status, step.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        step.content_type.parse().expect("valid header"),
    );
    if let Some(retry_after) = step.retry_after {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            retry_after.parse().expect("valid header"),
        );
    }
    response
}
