//! The pair hash the tracker's dedup sets store, identical to scraper-d's `dedup::pair_hash`.
//!
//! Daemons do not depend on each other, so the function is reimplemented here and pinned by
//! the same test vector as scraper-d's (moving it into `cah-protocol` would need `sha2` there).

use sha2::{Digest, Sha256};

/// First 8 bytes of `SHA-256(url + "\n" + alt)`, read as a little-endian `u64`.
pub fn pair_hash(url: &str, alt: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(url.as_bytes());
    hasher.update(b"\n");
    hasher.update(alt.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_scraper_test_vector() {
        assert_eq!(
            pair_hash("http://a.test/x.jpg", "a cat"),
            0x328e_0952_43f7_2415
        );
        assert_ne!(
            pair_hash("http://a.test/x.jpg", "a cat"),
            pair_hash("http://a.test/x.jpg", "a dog")
        );
    }
}
