//! Integration tests of the tracker client against scripted trackers on `127.0.0.1:0`.

mod tracker_client {
    pub(crate) mod mapping;
    pub(crate) mod retries;
    pub(crate) mod scripted;
    pub(crate) mod session;
    pub(crate) mod upload;
}
