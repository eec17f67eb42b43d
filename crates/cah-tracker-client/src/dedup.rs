//! Dedup queries against the tracker's sets of already-seen pairs.

use cah_protocol::ext::{DedupRequest, DedupResponse, DedupSet};

use crate::endpoint;
use crate::error::TrackerError;
use crate::session::Session;

impl Session {
    /// `POST /api/ext/dedup`: one flag per hash, in order, `true` where the hash was not in
    /// `set` before this request. With `add`, the new hashes join the set atomically with
    /// the check.
    ///
    /// With `add`, a failure that the tracker may have applied (5xx, lost answer) is not
    /// retried: a repeat would report every hash as already seen, and the caller would drop
    /// candidates that were never downloaded. The caller gets the error and decides.
    pub async fn dedup(
        &self,
        set: DedupSet,
        hashes: &[u64],
        add: bool,
    ) -> Result<Vec<bool>, TrackerError> {
        let endpoint = if add {
            &endpoint::EXT_DEDUP_ADD
        } else {
            &endpoint::EXT_DEDUP
        };
        let request = DedupRequest {
            token: self.token().to_owned(),
            set,
            hashes: hashes.to_vec(),
            add,
        };
        let response: DedupResponse = self.client().post_json(endpoint, &request).await?;
        if response.new.len() != hashes.len() {
            return Err(TrackerError::Decode {
                call: endpoint.name,
                detail: format!("{} flags for {} hashes", response.new.len(), hashes.len()),
            });
        }
        Ok(response.new)
    }
}
