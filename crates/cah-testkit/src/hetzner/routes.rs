//! Request handling of the fake Hetzner API: auth, rate limits, injected errors, dispatch.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Value, json};

use super::state::{ApiError, Fault, SshKeyRecord, World, timestamp};
use super::{RecordedRequest, Shared, catalog, selector, servers};

/// The parsed query string (keys may repeat).
pub(super) struct Query(Vec<(String, String)>);

/// A successful answer.
pub(super) struct Reply {
    status: u16,
    body: Option<Value>,
    link: Option<String>,
}

impl Query {
    pub(super) fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

impl Reply {
    pub(super) fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            link: None,
        }
    }
}

/// The single handler behind every path.
pub(super) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body_text = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = Query(
        parts
            .uri
            .query()
            .map(|raw| {
                url::form_urlencoded::parse(raw.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default(),
    );
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();

    let mut world = shared.world.lock().expect("hetzner world lock poisoned");
    world.sweep();
    let mut lose_answer = false;
    let (result, rate) = match token
        .as_deref()
        .filter(|token| world.projects.contains_key(*token))
    {
        None => (
            Err(ApiError::new(401, "unauthorized", "unable to authenticate")),
            None,
        ),
        Some(token) => {
            let rate = world.rate_limit(token);
            let result = if !rate.allowed {
                Err(ApiError::new(
                    429,
                    "rate_limit_exceeded",
                    "limit of requests per hour reached",
                ))
            } else {
                let fault = world.take_targeted(method.as_str(), &path).or_else(|| {
                    let (status, code) = world.injected.pop_front()?;
                    Some(Fault::Error(status, code))
                });
                match fault {
                    Some(Fault::Error(status, code)) => {
                        Err(ApiError::new(status, &code, format!("injected {code}")))
                    }
                    fault => {
                        lose_answer = fault == Some(Fault::LoseAnswer);
                        dispatch(
                            &mut world,
                            token,
                            &method,
                            &path,
                            &query,
                            body_text.as_deref(),
                        )
                    }
                }
            };
            (result, Some(rate))
        }
    };
    let status = match &result {
        Ok(reply) => reply.status,
        Err(error) => error.status,
    };
    world.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        body: body_text,
        token: token.clone(),
        status,
    });
    drop(world);
    tracing::debug!(%method, %path, status, "fake hetzner request");

    let (body, link) = match result {
        Ok(reply) => (reply.body, reply.link),
        Err(error) => (
            Some(
                json!({ "error": { "code": error.code, "message": error.message, "details": error.details } }),
            ),
            None,
        ),
    };
    let mut response = match body {
        Some(_) if lose_answer => {
            Response::new(Body::from_stream(futures_util::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("injected lost answer"))
            })))
        }
        Some(body) => {
            let mut response = Response::new(Body::from(
                serde_json::to_vec(&body).expect("json values serialize"),
            ));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Some(rate) = rate {
        let remaining = if status == 429 { 0 } else { rate.remaining };
        headers.insert("ratelimit-limit", HeaderValue::from(rate.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(rate.reset_unix));
    }
    if let Some(link) = link.and_then(|link| HeaderValue::from_str(&link).ok()) {
        headers.insert(header::LINK, link);
    }
    response
}

fn dispatch(
    world: &mut World,
    token: &str,
    method: &Method,
    path: &str,
    query: &Query,
    body: Option<&str>,
) -> Result<Reply, ApiError> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(ApiError::not_found("resource"));
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let id = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| ApiError::invalid_field("id", "id must be an integer"))
    };
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_str(body.unwrap_or_default())
            .map_err(|error| ApiError::new(400, "json_error", format!("invalid JSON: {error}")))
    };
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["servers"]) => servers::list(world, token, query),
        ("POST", ["servers"]) => servers::create(world, token, &json_body()?),
        ("GET", ["servers", server]) => servers::get(world, token, id(server)?),
        ("PUT", ["servers", server]) => servers::update(world, token, id(server)?, &json_body()?),
        ("DELETE", ["servers", server]) => servers::delete(world, token, id(server)?),
        ("POST", ["servers", server, "actions", "change_protection"]) => {
            servers::change_protection(world, token, id(server)?, &json_body()?)
        }
        ("GET", ["servers", server, "actions"]) => {
            servers::actions(world, token, id(server)?, query)
        }
        ("GET", ["actions"]) => actions_by_id(world, token, query),
        ("GET", ["actions", action]) => {
            let action = world
                .actions
                .get(&id(action)?)
                .filter(|action| action.token == token);
            let action = action.ok_or_else(|| ApiError::not_found("action"))?;
            Ok(Reply::new(200, json!({ "action": action.to_json() })))
        }
        ("GET", ["ssh_keys"]) => list_ssh_keys(world, token, query),
        ("POST", ["ssh_keys"]) => create_ssh_key(world, token, &json_body()?),
        ("GET", ["ssh_keys", key]) => {
            let key_id = id(key)?;
            let record = world.projects[token]
                .ssh_keys
                .get(&key_id)
                .ok_or_else(|| ApiError::not_found("ssh key"))?;
            Ok(Reply::new(200, json!({ "ssh_key": record.to_json() })))
        }
        ("DELETE", ["ssh_keys", key]) => {
            let key_id = id(key)?;
            let project = world
                .projects
                .get_mut(token)
                .expect("the token was authenticated");
            project
                .ssh_keys
                .remove(&key_id)
                .ok_or_else(|| ApiError::not_found("ssh key"))?;
            Ok(Reply {
                status: 204,
                body: None,
                link: None,
            })
        }
        ("GET", ["server_types"]) => catalog_list(catalog::server_types(), query, "server_types"),
        ("GET", ["server_types", item]) => catalog_one(catalog::server_type(item), "server_type"),
        ("GET", ["locations"]) => catalog_list(catalog::locations(), query, "locations"),
        ("GET", ["locations", item]) => catalog_one(catalog::location(item), "location"),
        ("GET", ["images"]) => catalog_list(catalog::images(), query, "images"),
        ("GET", ["images", item]) => catalog_one(catalog::image(item, "x86"), "image"),
        (
            _,
            [
                "servers" | "actions" | "ssh_keys" | "server_types" | "locations" | "images",
                ..,
            ],
        ) => Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("method {method} is not allowed here"),
        )),
        _ => Err(ApiError::not_found("resource")),
    }
}

/// Slices `items` by `page` / `per_page` (default 25, at most 50) and adds `meta.pagination`.
pub(super) fn paginate(
    items: Vec<Value>,
    query: &Query,
    root: &str,
    path: &str,
) -> Result<Reply, ApiError> {
    let parse = |key: &str, default: usize| -> Result<usize, ApiError> {
        match query.first(key) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|value| *value >= 1)
                .ok_or_else(|| ApiError::invalid_field(key, "must be a positive integer")),
        }
    };
    let page = parse("page", 1)?;
    let per_page = parse("per_page", 25)?.min(50);
    let total = items.len();
    let last_page = total.div_ceil(per_page).max(1);
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let previous_page = (page > 1).then(|| (page - 1).min(last_page));
    let next_page = (page < last_page).then_some(page + 1);
    let link_to = |target: usize, rel: &str| {
        format!("<{path}?page={target}&per_page={per_page}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if let Some(previous) = previous_page {
        links.push(link_to(previous, "prev"));
    }
    if let Some(next) = next_page {
        links.push(link_to(next, "next"));
    }
    links.push(link_to(last_page, "last"));
    let mut body = serde_json::Map::new();
    body.insert(root.into(), Value::Array(page_items));
    body.insert(
        "meta".into(),
        json!({ "pagination": {
            "page": page, "per_page": per_page, "previous_page": previous_page, "next_page": next_page,
            "last_page": last_page, "total_entries": total,
        } }),
    );
    Ok(Reply {
        status: 200,
        body: Some(Value::Object(body)),
        link: Some(links.join(", ")),
    })
}

/// Labels from a JSON object of strings, checked against the label charset.
pub(super) fn parse_labels(value: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(object) = value.as_object() else {
        return if value.is_null() {
            Ok(BTreeMap::new())
        } else {
            Err(ApiError::invalid_field(
                "labels",
                "labels must be an object",
            ))
        };
    };
    let mut labels = BTreeMap::new();
    for (key, value) in object {
        let value = value
            .as_str()
            .ok_or_else(|| ApiError::invalid_field("labels", "label values must be strings"))?;
        if !selector::valid_label(key, value) {
            return Err(ApiError::invalid_field(
                "labels",
                &format!("invalid label {key}={value}"),
            ));
        }
        labels.insert(key.clone(), value.to_owned());
    }
    Ok(labels)
}

fn actions_by_id(world: &World, token: &str, query: &Query) -> Result<Reply, ApiError> {
    let ids = query.all("id");
    if ids.is_empty() {
        return Err(ApiError::invalid_field(
            "id",
            "the id parameter is required",
        ));
    }
    let mut items = Vec::new();
    for id in ids {
        let id: i64 = id
            .parse()
            .map_err(|_| ApiError::invalid_field("id", "id must be an integer"))?;
        if let Some(action) = world
            .actions
            .get(&id)
            .filter(|action| action.token == token)
        {
            items.push(action.to_json());
        }
    }
    paginate(items, query, "actions", "/v1/actions")
}

fn list_ssh_keys(world: &World, token: &str, query: &Query) -> Result<Reply, ApiError> {
    let requirements = match query.first("label_selector") {
        Some(selector) => selector::parse(selector)
            .map_err(|message| ApiError::invalid_field("label_selector", &message))?,
        None => Vec::new(),
    };
    let items: Vec<Value> = world.projects[token]
        .ssh_keys
        .values()
        .filter(|key| query.first("name").is_none_or(|name| key.name == name))
        .filter(|key| {
            query
                .first("fingerprint")
                .is_none_or(|fingerprint| key.fingerprint == fingerprint)
        })
        .filter(|key| selector::matches(&requirements, &key.labels))
        .map(SshKeyRecord::to_json)
        .collect();
    paginate(items, query, "ssh_keys", "/v1/ssh_keys")
}

fn create_ssh_key(world: &mut World, token: &str, body: &Value) -> Result<Reply, ApiError> {
    let name = body["name"]
        .as_str()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid_field("name", "Missing data for required field."))?;
    let public_key = body["public_key"]
        .as_str()
        .ok_or_else(|| ApiError::invalid_field("public_key", "Missing data for required field."))?;
    let fingerprint = fingerprint(public_key)
        .ok_or_else(|| ApiError::invalid_field("public_key", "invalid public key"))?;
    let labels = parse_labels(&body["labels"])?;
    let project = &world.projects[token];
    for (taken, field, message) in [
        (
            project
                .ssh_keys
                .values()
                .any(|key| key.fingerprint == fingerprint),
            "public_key",
            "SSH key with the same fingerprint already exists",
        ),
        (
            project.ssh_keys.values().any(|key| key.name == name),
            "name",
            "SSH key with the same name already exists",
        ),
    ] {
        if taken {
            let mut error = ApiError::new(409, "uniqueness_error", message);
            error.details = json!({ "fields": [{ "name": field }] });
            return Err(error);
        }
    }
    let id = world.next_id();
    let record = SshKeyRecord {
        id,
        name: name.to_owned(),
        fingerprint,
        public_key: public_key.trim().to_owned(),
        labels,
        created: timestamp(std::time::SystemTime::now()),
    };
    let json = record.to_json();
    world
        .projects
        .get_mut(token)
        .expect("the token was authenticated")
        .ssh_keys
        .insert(id, record);
    Ok(Reply::new(201, json!({ "ssh_key": json })))
}

/// MD5 of the decoded key blob in colon-separated hex, as Hetzner shows it.
pub fn fingerprint(public_key: &str) -> Option<String> {
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

fn catalog_list(items: Vec<Value>, query: &Query, root: &str) -> Result<Reply, ApiError> {
    let items: Vec<Value> = items
        .into_iter()
        .filter(|item| query.first("name").is_none_or(|name| item["name"] == name))
        .collect();
    paginate(items, query, root, &format!("/v1/{root}"))
}

fn catalog_one(item: Option<Value>, root: &str) -> Result<Reply, ApiError> {
    let item = item.ok_or_else(|| ApiError::not_found(root))?;
    let mut body = serde_json::Map::new();
    body.insert(root.into(), item);
    Ok(Reply::new(200, Value::Object(body)))
}
