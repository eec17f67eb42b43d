//! The three kinds of tracker client, matched on the first letter as the 2021 library did.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A tracker client's role.
///
/// Decoding matches on the first letter, case-insensitively (`h`, `c`, `g`), as the 2021
/// client library's `init` did; encoding writes the upper-case name the 2021 server stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientType {
    /// Scrapes and scores in one process (2021 G0/G1).
    Hybrid,
    /// Scrapes a WAT into a bundle of images.
    Cpu,
    /// Scores bundles with CLIP.
    Gpu,
}

impl ClientType {
    /// The upper-case wire name (`HYBRID`, `CPU`, `GPU`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Hybrid => "HYBRID",
            ClientType::Cpu => "CPU",
            ClientType::Gpu => "GPU",
        }
    }

    /// Parses a wire name by its first letter; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
            Some('h') => Some(ClientType::Hybrid),
            Some('c') => Some(ClientType::Cpu),
            Some('g') => Some(ClientType::Gpu),
            _ => None,
        }
    }
}

impl Default for ClientType {
    /// The 2021 server defaulted a missing `type` to HYBRID, which kept pre-1.4 clients working.
    fn default() -> Self {
        ClientType::Hybrid
    }
}

impl std::fmt::Display for ClientType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ClientType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ClientType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ClientType::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown client type {text:?}: expected HYBRID, CPU or GPU"
            ))
        })
    }
}
