//! Wire types of the Crawling@Home tracker protocol: the 2021 v3 API and our additive extensions.
//!
//! The 2021 types live in [`legacy`] and are shaped exactly as the 2021 server and client sent them,
//! so that old clients keep working. Everything new lives in [`ext`], under the `/api/ext/` prefix.
//! The bundle format between scraper and GPU daemon lives in [`bundle`].
//! This crate depends on `serde` only: no IO, no HTTP, no logic beyond (de)serialisation and
//! the few rules both ends must apply alike (which addresses a bundle URL may not name).

pub mod bundle;
pub mod ext;
pub mod legacy;
pub mod paths;

mod client_type;
mod id_string;

pub use client_type::ClientType;
pub use id_string::IdString;

/// Version of the extension API, reported by `GET /api/ext/info`.
pub const API_VERSION: u32 = 1;

/// Header that carries the admin secret. Never sent in a query string.
pub const ADMIN_SECRET_HEADER: &str = "x-cah-admin-secret";
