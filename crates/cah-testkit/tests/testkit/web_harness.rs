//! Shared by the web tests: a DNS server, the image hosts (drips at 16 bytes per 100 ms) and a client.

use std::time::Duration;

use cah_testkit::dns::{DnsConfig, DnsServer};
use cah_testkit::photos::PhotoCorpus;
use cah_testkit::web::{WebConfig, WebServer};

/// DNS plus image hosts, and a client that resolves through that DNS.
pub(crate) struct Harness {
    pub(crate) dns: DnsServer,
    pub(crate) web: WebServer,
    pub(crate) client: reqwest::Client,
}

pub(crate) async fn harness() -> Harness {
    let corpus = PhotoCorpus::shared().expect("corpus");
    let dns = DnsServer::start_local(DnsConfig::quick())
        .await
        .expect("dns");
    let config = WebConfig {
        drip_chunk: 16,
        drip_interval: Duration::from_millis(100),
    };
    let web = WebServer::start_local(config, corpus).await.expect("web");
    let client = cah_testkit::world::http_client_for(&dns, Duration::from_secs(5));
    Harness { dns, web, client }
}
