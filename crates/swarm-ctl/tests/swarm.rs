//! Integration tests of swarm-ctl against cah-testkit's fake Hetzner Cloud API, a real tracker-d
//! in-process, a real OpenSSH server on 127.0.0.1, and `cloud-init schema`.

mod swarm {
    pub(crate) mod bootstrap;
    pub(crate) mod errors;
    pub(crate) mod fleet;
    pub(crate) mod fleet_states;
    pub(crate) mod heal;
    pub(crate) mod heal_states;
    pub(crate) mod sshd;
    pub(crate) mod support;
    pub(crate) mod tracker_down;
}
