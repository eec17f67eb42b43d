//! `/v1/servers`: create, list, get, update, delete, and their actions.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::catalog;
use super::routes::{Query, Reply, paginate, parse_labels};
use super::selector;
use super::state::{ApiError, ServerRecord, World, timestamp};

/// Hetzner answers `resource_limit_exceeded` with 403 (its error table); clients should key on the code.
const RESOURCE_LIMIT_STATUS: u16 = 403;
const MAX_USER_DATA: usize = 32 * 1024;

pub(super) fn create(world: &mut World, token: &str, body: &Value) -> Result<Reply, ApiError> {
    let name = body["name"]
        .as_str()
        .ok_or_else(|| ApiError::invalid_field("name", "Missing data for required field."))?;
    if !valid_hostname(name) {
        return Err(ApiError::invalid_field(
            "name",
            "Name must be a valid hostname.",
        ));
    }
    let server_type_ref = id_or_name(&body["server_type"]).ok_or_else(|| {
        ApiError::invalid_field("server_type", "Missing data for required field.")
    })?;
    let server_type = catalog::server_type(&server_type_ref)
        .ok_or_else(|| ApiError::invalid_field("server_type", "server type not found"))?;
    let architecture = server_type["architecture"]
        .as_str()
        .unwrap_or("x86")
        .to_owned();
    let image_ref = id_or_name(&body["image"])
        .ok_or_else(|| ApiError::invalid_field("image", "Missing data for required field."))?;
    let image = catalog::image(&image_ref, &architecture)
        .ok_or_else(|| ApiError::invalid_field("image", "image not found"))?;
    let location = match id_or_name(&body["location"]) {
        Some(location) => catalog::location(&location)
            .ok_or_else(|| ApiError::invalid_field("location", "location not found"))?,
        None => catalog::location("fsn1").expect("fsn1 is in the catalogue"),
    };
    let location_name = location["name"].as_str().unwrap_or_default().to_owned();
    let offered = server_type["locations"].as_array().is_some_and(|list| {
        list.iter()
            .any(|entry| entry["name"] == location_name.as_str())
    });
    if !offered {
        return Err(ApiError::new(
            412,
            "resource_unavailable",
            format!("server type {server_type_ref} is unavailable in {location_name}"),
        ));
    }
    let user_data = body["user_data"].as_str().map(str::to_owned);
    if user_data
        .as_ref()
        .is_some_and(|data| data.len() > MAX_USER_DATA)
    {
        return Err(ApiError::invalid_field(
            "user_data",
            "user_data must not exceed 32 KiB",
        ));
    }
    let labels = parse_labels(&body["labels"])?;
    let start_after_create = body["start_after_create"].as_bool().unwrap_or(true);
    let ipv4_enabled = body["public_net"]["enable_ipv4"].as_bool().unwrap_or(true);
    let ipv6_enabled = body["public_net"]["enable_ipv6"].as_bool().unwrap_or(true);

    let project = world
        .projects
        .get(token)
        .expect("the token was authenticated");
    let mut has_ssh_keys = false;
    if let Some(keys) = body["ssh_keys"].as_array() {
        for key in keys {
            let reference = id_or_name(key).unwrap_or_default();
            let known = project
                .ssh_keys
                .values()
                .any(|record| record.name == reference || record.id.to_string() == reference);
            if !known {
                return Err(ApiError::invalid_field(
                    "ssh_keys",
                    &format!("ssh key {reference} not found"),
                ));
            }
            has_ssh_keys = true;
        }
    }
    if project.servers.values().any(|server| server.name == name) {
        let mut error = ApiError::new(409, "uniqueness_error", "server name is already used");
        error.details = json!({ "fields": [{ "name": "name" }] });
        return Err(error);
    }
    if project.servers.len() >= project.server_limit {
        let mut error = ApiError::new(
            RESOURCE_LIMIT_STATUS,
            "resource_limit_exceeded",
            "server limit exceeded",
        );
        error.details = json!({ "limits": [{ "name": "server_limit" }] });
        return Err(error);
    }

    let id = world.next_id();
    let (ipv4, ipv6) = world.next_addresses();
    let delay = world.config.action_delay;
    let record = ServerRecord {
        id,
        name: name.to_owned(),
        labels,
        created_at: Instant::now(),
        created: timestamp(SystemTime::now()),
        server_type,
        location,
        image,
        start_after_create,
        user_data,
        ipv4: ipv4_enabled.then_some(ipv4),
        ipv6: ipv6_enabled.then_some(ipv6),
        delete_started: None,
        delete_protected: false,
    };
    let server_json = record.to_json(delay);
    world
        .projects
        .get_mut(token)
        .expect("the token was authenticated")
        .servers
        .insert(id, record);
    let create_action = world.new_action(token, "create_server", Duration::ZERO, (id, "server"));
    let mut next_actions = Vec::new();
    if start_after_create {
        let start_action = world.new_action(token, "start_server", delay, (id, "server"));
        next_actions.push(world.action_json(start_action));
    }
    let root_password = if has_ssh_keys {
        Value::Null
    } else {
        Value::String(format!("pw-{id:x}-not-a-secret"))
    };
    tracing::debug!(server_id = id, %name, "fake hetzner server created");
    Ok(Reply::new(
        201,
        json!({
            "server": server_json,
            "action": world.action_json(create_action),
            "next_actions": next_actions,
            "root_password": root_password,
        }),
    ))
}

pub(super) fn list(world: &World, token: &str, query: &Query) -> Result<Reply, ApiError> {
    let project = world
        .projects
        .get(token)
        .expect("the token was authenticated");
    let requirements = match query.first("label_selector") {
        Some(selector) => selector::parse(selector)
            .map_err(|message| ApiError::invalid_field("label_selector", &message))?,
        None => Vec::new(),
    };
    let statuses = query.all("status");
    let delay = world.config.action_delay;
    let mut servers: Vec<&ServerRecord> = project
        .servers
        .values()
        .filter(|server| query.first("name").is_none_or(|name| server.name == name))
        .filter(|server| selector::matches(&requirements, &server.labels))
        .filter(|server| statuses.is_empty() || statuses.contains(&server.status(delay)))
        .collect();
    let sort = query.first("sort").unwrap_or("id");
    let (field, descending) = match sort.split_once(':') {
        Some((field, order)) => (field, order == "desc"),
        None => (sort, false),
    };
    match field {
        "id" => servers.sort_by_key(|server| server.id),
        "name" => servers.sort_by(|a, b| a.name.cmp(&b.name)),
        "created" => servers.sort_by_key(|server| server.created_at),
        _ => {
            return Err(ApiError::invalid_field(
                "sort",
                "sort must be id, name or created",
            ));
        }
    }
    if descending {
        servers.reverse();
    }
    let items: Vec<Value> = servers.iter().map(|server| server.to_json(delay)).collect();
    paginate(items, query, "servers", "/v1/servers")
}

pub(super) fn get(world: &World, token: &str, id: i64) -> Result<Reply, ApiError> {
    let server = find(world, token, id)?;
    Ok(Reply::new(
        200,
        json!({ "server": server.to_json(world.config.action_delay) }),
    ))
}

pub(super) fn update(
    world: &mut World,
    token: &str,
    id: i64,
    body: &Value,
) -> Result<Reply, ApiError> {
    find(world, token, id)?;
    let labels = if body.get("labels").is_some() {
        Some(parse_labels(&body["labels"])?)
    } else {
        None
    };
    let name = body["name"].as_str();
    if name.is_some_and(|name| !valid_hostname(name)) {
        return Err(ApiError::invalid_field(
            "name",
            "Name must be a valid hostname.",
        ));
    }
    let delay = world.config.action_delay;
    let project = world
        .projects
        .get_mut(token)
        .expect("the token was authenticated");
    if let Some(name) = name
        && project
            .servers
            .values()
            .any(|server| server.name == name && server.id != id)
    {
        let mut error = ApiError::new(409, "uniqueness_error", "server name is already used");
        error.details = json!({ "fields": [{ "name": "name" }] });
        return Err(error);
    }
    let server = project.servers.get_mut(&id).expect("found above");
    if let Some(labels) = labels {
        server.labels = labels;
    }
    if let Some(name) = name {
        server.name = name.to_owned();
    }
    Ok(Reply::new(200, json!({ "server": server.to_json(delay) })))
}

pub(super) fn delete(world: &mut World, token: &str, id: i64) -> Result<Reply, ApiError> {
    let server = find(world, token, id)?;
    if server.delete_protected {
        return Err(ApiError::new(
            403,
            "protected",
            "server deletion is protected (protection.delete)",
        ));
    }
    if server.delete_started.is_some() {
        return Err(ApiError::new(
            423,
            "locked",
            "server is already being deleted",
        ));
    }
    // An injected failure: the action ends in error and the server stays as it was.
    let fails = world.failing_deletes > 0;
    if fails {
        world.failing_deletes -= 1;
    } else {
        find_mut(world, token, id)?.delete_started = Some(Instant::now());
    }
    let action = world.new_action(token, "delete_server", Duration::ZERO, (id, "server"));
    if let Some(record) = world.actions.get_mut(&action) {
        record.fails = fails;
    }
    tracing::debug!(server_id = id, "fake hetzner server deleted");
    Ok(Reply::new(
        200,
        json!({ "action": world.action_json(action) }),
    ))
}

/// `POST /servers/{id}/actions/change_protection` with `{"delete": bool, "rebuild": bool}`
/// (Hetzner ties rebuild protection to delete protection; only `delete` matters here).
pub(super) fn change_protection(
    world: &mut World,
    token: &str,
    id: i64,
    body: &Value,
) -> Result<Reply, ApiError> {
    let server = find_mut(world, token, id)?;
    let Some(delete) = body.get("delete").and_then(Value::as_bool) else {
        return Err(ApiError::invalid_field(
            "delete",
            "delete must be a boolean",
        ));
    };
    server.delete_protected = delete;
    let action = world.new_action(token, "change_protection", Duration::ZERO, (id, "server"));
    Ok(Reply::new(
        201,
        json!({ "action": world.action_json(action) }),
    ))
}

pub(super) fn actions(
    world: &World,
    token: &str,
    id: i64,
    query: &Query,
) -> Result<Reply, ApiError> {
    find(world, token, id)?;
    let items: Vec<Value> = world
        .actions
        .values()
        .filter(|action| {
            action.token == token && action.resources.iter().any(|(resource, _)| *resource == id)
        })
        .map(|action| action.to_json())
        .collect();
    paginate(
        items,
        query,
        "actions",
        &format!("/v1/servers/{id}/actions"),
    )
}

/// The user data a server was created with (tests read it back).
pub(super) fn user_data(world: &World, token: &str, id: i64) -> Option<String> {
    world
        .projects
        .get(token)?
        .servers
        .get(&id)?
        .user_data
        .clone()
}

pub(super) fn labels_of(world: &World, token: &str, id: i64) -> Option<BTreeMap<String, String>> {
    Some(world.projects.get(token)?.servers.get(&id)?.labels.clone())
}

fn find<'a>(world: &'a World, token: &str, id: i64) -> Result<&'a ServerRecord, ApiError> {
    world
        .projects
        .get(token)
        .and_then(|project| project.servers.get(&id))
        .ok_or_else(|| ApiError::not_found("server"))
}

fn find_mut<'a>(
    world: &'a mut World,
    token: &str,
    id: i64,
) -> Result<&'a mut ServerRecord, ApiError> {
    world
        .projects
        .get_mut(token)
        .and_then(|project| project.servers.get_mut(&id))
        .ok_or_else(|| ApiError::not_found("server"))
}

/// A name or id given as a JSON string or number.
fn id_or_name(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// RFC 1123 host name: labels of 1 to 63 alphanumerics and inner hyphens, 253 bytes at most.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
