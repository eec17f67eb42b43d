//! The fake's fixed catalogue: locations, server types and system images, in the API's JSON shapes.

use serde_json::{Value, json};

/// `(id, name, description, city, country, latitude, longitude, network_zone)`.
type LocationRow = (
    i64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    f64,
    f64,
    &'static str,
);

const LOCATIONS: &[LocationRow] = &[
    (
        1,
        "fsn1",
        "Falkenstein DC Park 1",
        "Falkenstein",
        "DE",
        50.47612,
        12.370071,
        "eu-central",
    ),
    (
        2,
        "nbg1",
        "Nuremberg DC Park 1",
        "Nuremberg",
        "DE",
        49.452102,
        11.076665,
        "eu-central",
    ),
    (
        3,
        "hel1",
        "Helsinki DC Park 1",
        "Helsinki",
        "FI",
        60.169855,
        24.938379,
        "eu-central",
    ),
    (
        4,
        "ash",
        "Ashburn, VA",
        "Ashburn, VA",
        "US",
        39.045821,
        -77.487073,
        "us-east",
    ),
    (
        5,
        "hil",
        "Hillsboro, OR",
        "Hillsboro, OR",
        "US",
        45.54222,
        -122.951924,
        "us-west",
    ),
    (
        6,
        "sin",
        "Singapore",
        "Singapore",
        "SG",
        1.283333,
        103.833333,
        "ap-southeast",
    ),
];

/// `(id, name, cores, memory GB, disk GB, cpu_type, architecture, category, hourly net EUR, locations)`.
type ServerTypeRow = (
    i64,
    &'static str,
    u32,
    f64,
    u32,
    &'static str,
    &'static str,
    &'static str,
    f64,
    &'static [&'static str],
);

const EU: &[&str] = &["fsn1", "nbg1", "hel1"];
const EVERYWHERE: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];

const SERVER_TYPES: &[ServerTypeRow] = &[
    (
        104,
        "cx22",
        2,
        4.0,
        40,
        "shared",
        "x86",
        "cost_optimized",
        0.006,
        EU,
    ),
    (
        105,
        "cx32",
        4,
        8.0,
        80,
        "shared",
        "x86",
        "cost_optimized",
        0.0113,
        EU,
    ),
    (
        106,
        "cx42",
        8,
        16.0,
        160,
        "shared",
        "x86",
        "cost_optimized",
        0.0273,
        EU,
    ),
    (
        107,
        "cx52",
        16,
        32.0,
        320,
        "shared",
        "x86",
        "cost_optimized",
        0.0537,
        EU,
    ),
    (
        22,
        "cpx11",
        2,
        2.0,
        40,
        "shared",
        "x86",
        "regular_purpose",
        0.0074,
        EVERYWHERE,
    ),
    (
        23,
        "cpx21",
        3,
        4.0,
        80,
        "shared",
        "x86",
        "regular_purpose",
        0.0135,
        EVERYWHERE,
    ),
    (
        24,
        "cpx31",
        4,
        8.0,
        160,
        "shared",
        "x86",
        "regular_purpose",
        0.0251,
        EVERYWHERE,
    ),
    (
        45,
        "cax11",
        2,
        4.0,
        40,
        "shared",
        "arm",
        "cost_optimized",
        0.0063,
        EU,
    ),
    (
        93,
        "cax21",
        4,
        8.0,
        80,
        "shared",
        "arm",
        "cost_optimized",
        0.0113,
        EU,
    ),
    (
        96,
        "ccx13",
        2,
        8.0,
        80,
        "dedicated",
        "x86",
        "general_purpose",
        0.0208,
        EVERYWHERE,
    ),
];

/// `(id, name, description, os_flavor, os_version)`; each exists for x86 and for arm (id + 1).
const IMAGES: &[(i64, &str, &str, &str, &str)] = &[
    (
        161_547_269,
        "ubuntu-24.04",
        "Ubuntu 24.04",
        "ubuntu",
        "24.04",
    ),
    (
        67_794_396,
        "ubuntu-22.04",
        "Ubuntu 22.04",
        "ubuntu",
        "22.04",
    ),
    (114_690_387, "debian-12", "Debian 12", "debian", "12"),
    (222_222_101, "debian-13", "Debian 13", "debian", "13"),
];

pub(super) fn locations() -> Vec<Value> {
    LOCATIONS.iter().map(location_json).collect()
}

/// A location by name or numeric id.
pub(super) fn location(id_or_name: &str) -> Option<Value> {
    LOCATIONS
        .iter()
        .find(|row| row.1 == id_or_name || row.0.to_string() == id_or_name)
        .map(location_json)
}

pub(super) fn server_types() -> Vec<Value> {
    SERVER_TYPES.iter().map(server_type_json).collect()
}

/// A server type by name or numeric id.
pub(super) fn server_type(id_or_name: &str) -> Option<Value> {
    SERVER_TYPES
        .iter()
        .find(|row| row.1 == id_or_name || row.0.to_string() == id_or_name)
        .map(server_type_json)
}

/// A system image by name or id, in the variant for `architecture` (`x86` or `arm`).
pub(super) fn image(id_or_name: &str, architecture: &str) -> Option<Value> {
    IMAGES.iter().find_map(|row| {
        let arm_id = row.0 + 1;
        let matches_name = row.1 == id_or_name;
        if matches_name || row.0.to_string() == id_or_name {
            Some(image_json(
                row,
                if matches_name { architecture } else { "x86" },
            ))
        } else if arm_id.to_string() == id_or_name {
            Some(image_json(row, "arm"))
        } else {
            None
        }
    })
}

pub(super) fn images() -> Vec<Value> {
    IMAGES
        .iter()
        .flat_map(|row| [image_json(row, "x86"), image_json(row, "arm")])
        .collect()
}

/// The datacenter object of a location (`{location}-dc14`).
pub(super) fn datacenter(location: &Value) -> Value {
    let name = location["name"].as_str().unwrap_or("fsn1");
    let id = location["id"].as_i64().unwrap_or(1);
    let ids: Vec<i64> = SERVER_TYPES
        .iter()
        .filter(|row| row.9.contains(&name))
        .map(|row| row.0)
        .collect();
    json!({
        "id": id,
        "name": format!("{name}-dc14"),
        "description": format!("{} virtual DC 14", location["city"].as_str().unwrap_or_default()),
        "location": location,
        "server_types": { "supported": ids, "available": ids, "available_for_migration": ids },
    })
}

fn location_json(row: &LocationRow) -> Value {
    let (id, name, description, city, country, latitude, longitude, network_zone) = *row;
    json!({
        "id": id, "name": name, "description": description, "country": country, "city": city,
        "latitude": latitude, "longitude": longitude, "network_zone": network_zone,
    })
}

fn server_type_json(row: &ServerTypeRow) -> Value {
    let (id, name, cores, memory, disk, cpu_type, architecture, category, hourly, type_locations) =
        *row;
    let price =
        |net: f64| json!({ "net": format!("{net:.4}"), "gross": format!("{:.4}", net * 1.19) });
    let prices: Vec<Value> = type_locations
        .iter()
        .map(|location| {
            let traffic_tb: u64 = if EU.contains(location) { 20 } else { 1 };
            json!({
                "location": location,
                "price_hourly": price(hourly),
                "price_monthly": price((hourly * 730.0 * 100.0).round() / 100.0),
                "included_traffic": traffic_tb * 1_099_511_627_776,
                "price_per_tb_traffic": price(1.0),
            })
        })
        .collect();
    let server_type_locations: Vec<Value> = type_locations
        .iter()
        .filter_map(|name| LOCATIONS.iter().find(|row| row.1 == *name))
        .map(|row| json!({ "id": row.0, "name": row.1, "deprecation": null, "available": true, "recommended": true }))
        .collect();
    json!({
        "id": id, "name": name, "description": name.to_uppercase(), "cores": cores, "memory": memory, "disk": disk,
        "deprecated": false, "deprecation": null, "prices": prices, "storage_type": "local", "cpu_type": cpu_type,
        "category": category, "architecture": architecture, "included_traffic": 21_990_232_555_520u64,
        "locations": server_type_locations,
    })
}

fn image_json(row: &(i64, &str, &str, &str, &str), architecture: &str) -> Value {
    let (id, name, description, os_flavor, os_version) = *row;
    let id = if architecture == "arm" { id + 1 } else { id };
    json!({
        "id": id, "type": "system", "status": "available", "name": name, "description": description,
        "image_size": null, "disk_size": 5, "created": "2024-04-25T12:00:00+00:00", "created_from": null,
        "bound_to": null, "os_flavor": os_flavor, "os_version": os_version, "rapid_deploy": true,
        "protection": { "delete": false }, "deprecated": null, "deleted": null, "labels": {},
        "architecture": architecture,
    })
}
