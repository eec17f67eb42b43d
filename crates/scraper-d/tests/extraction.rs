//! Integration tests: WAT files from cah-testkit's builder, read from disk, memory and HTTP.

mod extraction {
    pub(crate) mod support;

    mod cli;
    mod edge_cases;
    mod generated;
    mod hostile;
    mod http_stream;
    mod limits;
    mod tracker_dedup;
}
