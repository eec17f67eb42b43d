//! A miniature Internet, Common Crawl and Hetzner Cloud on loopback, for tests, benchmarks and demos.
//!
//! Layout:
//! - [`names`]: the naming scheme of the test web (zones, host prefixes and what they mean).
//! - [`dns`]: an authoritative hickory DNS server for those zones, and resolvers pointed at it.
//! - [`web`]: one axum server playing every image host, behaviour chosen by URL ([`web::scheme`]).
//! - [`images`] and [`photos`]: the pictures it serves (real photos when prepared, else generated).
//! - [`wat`]: a Common Crawl WAT writer that also returns the candidates a scraper should find.
//! - [`commoncrawl`]: crawl folders with `wat.paths.gz`, served over HTTP with Range support.
//! - [`hetzner`]: a fake Hetzner Cloud API with projects, actions, rate limits and errors.
//! - [`world`]: all of the above at once; [`cli`]: the `cah-testkit serve` binary's flags.
//!
//! Every server takes an already bound listener (or binds `127.0.0.1:0` itself) and nothing ever
//! connects beyond loopback.

pub mod cli;
pub mod commoncrawl;
pub mod dns;
pub mod error;
pub mod hetzner;
pub mod images;
pub mod names;
pub mod photos;
pub mod rng;
mod serving;
pub mod wat;
pub mod web;
pub mod world;

pub use error::TestkitError;
