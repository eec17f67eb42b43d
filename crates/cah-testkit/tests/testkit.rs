//! Integration tests of cah-testkit's servers over real sockets on loopback; one test binary
//! so the suite links once.

mod testkit {
    mod cli;
    mod commoncrawl;
    mod dns;
    mod hcloud_python;
    mod hetzner;
    mod hetzner_api;
    mod hetzner_errors;
    mod wat;
    mod web;
    mod web_harness;
    mod web_observed;
}
