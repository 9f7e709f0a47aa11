//! The TUF 1.0 metadata formats (root, timestamp, snapshot, targets with
//! delegations) as serde types, plus the canonical JSON their signatures cover.
//!
//! Signatures are checked over the canonical form of the `signed` value as it
//! was received (a `serde_json::Value`, so fields this crate does not know are
//! still covered); only then is it read into these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The spec version this crate writes; it reads any `1.x`.
pub const SPEC_VERSION: &str = "1.0.31";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("canonical JSON: {reason}; the value holds something canonical JSON cannot encode (a float?)")]
    Canonical { reason: String },
    #[error("date {value}: not an RFC 3339 UTC time; metadata dates look like 2030-01-01T00:00:00Z")]
    Date { value: String },
}

/// The canonical JSON bytes of a value: what a signature signs.
pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SchemaError> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser).map_err(|e| SchemaError::Canonical { reason: e.to_string() })?;
    Ok(buf)
}

/// A signed envelope as it is stored: `{"signed": …, "signatures": […]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub signed: T,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// A public key as root and delegations list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
    /// Kept so the key id computed over the key stays what its writer computed.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    pub public: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Key {
    /// An ed25519 key the way TUF writes it (hex of the 32 raw bytes).
    pub fn ed25519(public: &[u8]) -> Key {
        Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal { public: hex::encode(public), extra: BTreeMap::new() },
            extra: BTreeMap::new(),
        }
    }

    /// The spec's key id: hex SHA-256 of the key's canonical JSON.
    pub fn key_id(&self) -> Result<String, SchemaError> {
        let bytes = canonical(self)?;
        Ok(hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes)))
    }
}

/// The keys and threshold of one top-level role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Root {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "tuf_date")]
    pub expires: OffsetDateTime,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, Key>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// What timestamp says of snapshot, and snapshot of each targets role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "tuf_date")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "tuf_date")]
    pub expires: OffsetDateTime,
    pub meta: BTreeMap<String, MetaFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Targets {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    #[serde(with = "tuf_date")]
    pub expires: OffsetDateTime,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Key>,
    pub roles: Vec<DelegatedRole>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

impl DelegatedRole {
    /// Whether this delegation covers `target` (spec §5.6.7.2: `paths` match
    /// segment by segment, `*` never crossing a `/`; or a hash prefix).
    pub fn covers(&self, target: &str) -> bool {
        if let Some(patterns) = &self.paths {
            return patterns.iter().any(|p| path_matches(p, target));
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, target.as_bytes()));
            return prefixes.iter().any(|p| digest.starts_with(p.as_str()));
        }
        false
    }
}

/// `fnmatch` per `/`-separated segment, as python-tuf matches delegation paths.
fn path_matches(pattern: &str, target: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = target.split('/').collect();
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| glob(p.as_bytes(), t.as_bytes()))
}

/// `*` (any run) and `?` (one byte) within one segment; iterative, so a
/// hostile pattern costs O(pattern × name) at worst.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// TUF dates: RFC 3339 in UTC; written without fractions (`2030-01-01T00:00:00Z`).
pub mod tuf_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn format(at: OffsetDateTime) -> String {
        let at = at.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    }

    pub fn parse(value: &str) -> Result<OffsetDateTime, super::SchemaError> {
        OffsetDateTime::parse(value, &Rfc3339).map_err(|_| super::SchemaError::Date { value: value.to_owned() })
    }

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegation_paths_match_per_segment() {
        assert!(path_matches("*.json", "index.json"));
        assert!(path_matches("v1/*", "v1/index.json"));
        assert!(!path_matches("*", "v1/index.json"), "* must not cross a /");
        assert!(path_matches("v?/ind*x.json", "v1/index.json"));
        assert!(!path_matches("v1/*.yaml", "v1/index.json"));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn delegation_hash_prefixes_match_the_sha256_of_the_path() {
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"index.json"));
        let role = |prefix: &str| DelegatedRole {
            name: "bin".into(),
            keyids: vec![],
            threshold: 1,
            terminating: false,
            paths: None,
            path_hash_prefixes: Some(vec![prefix.to_owned()]),
        };
        assert!(role(&digest[..2]).covers("index.json"));
        let other = if digest.starts_with('0') { "1" } else { "0" };
        assert!(!role(other).covers("index.json"));
        let neither = DelegatedRole { path_hash_prefixes: None, ..role("") };
        assert!(!neither.covers("index.json"), "a role with neither paths nor prefixes covers nothing");
    }

    #[test]
    fn canonical_sorts_keys_and_drops_spaces() {
        let v: serde_json::Value = serde_json::from_str(r#"{ "b": 1, "a": [ "x" ] }"#).unwrap();
        assert_eq!(canonical(&v).unwrap(), br#"{"a":["x"],"b":1}"#);
    }
}
