//! Sample-ID bounds that the 2021 server stored as strings but some clients sent as numbers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sample ID bound, encoded as a decimal string (as the 2021 v3 `Job` model stored it)
/// and decoded from either a string or a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdString(pub u64);

impl Serialize for IdString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IdString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sample id as a decimal string or a non-negative integer")
            }
            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<IdString, E> {
                Ok(IdString(value))
            }
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<IdString, E> {
                u64::try_from(value)
                    .map(IdString)
                    .map_err(|_| E::custom("sample id must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<IdString, E> {
                value
                    .trim()
                    .parse()
                    .map(IdString)
                    .map_err(|_| E::custom(format!("sample id {value:?} is not a number")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
