//! Reading one signed metadata file and checking its signatures against a
//! role's keys and threshold: the step every role goes through before any of
//! its content is believed.
//!
//! Only `ed25519` keys are checked (what `attune index init` writes and what
//! python-tuf and tuftool make by default); a signature by a key of another
//! type never counts toward a threshold. A threshold counts distinct public
//! keys, so one key listed under two ids cannot sign twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use crate::schema::{Key, Signature, canonical};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{role} metadata: not valid JSON of a signed TUF document ({reason}); the server sent something else")]
    Parse { role: String, reason: String },
    #[error("{role} metadata: its _type is {found:?}; the server sent another role's file in its place")]
    Type { role: String, found: String },
    #[error("{role} metadata: spec_version {found:?} is not 1.x; this client reads TUF 1.x only")]
    SpecVersion { role: String, found: String },
    #[error(
        "{role} metadata: signature threshold not met: {valid} of the required {threshold} trusted keys signed it \
         validly; it was not signed by the keys this client trusts (tampered, or another repository's metadata)"
    )]
    Threshold { role: String, valid: usize, threshold: u64 },
    #[error("{role} metadata: threshold is 0; a role must require at least one signature, fix the delegating metadata")]
    ZeroThreshold { role: String },
    #[error("{role} metadata: {reason}")]
    Canonical { role: String, reason: String },
}

/// A signed file split into its `signed` value, signatures and raw bytes.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub role: String,
    pub signed: serde_json::Value,
    pub signatures: Vec<Signature>,
}

/// Parses the envelope only; nothing in it is trusted yet.
pub fn parse(role: &str, bytes: &[u8]) -> Result<Parsed, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        signed: serde_json::Value,
        signatures: Vec<Signature>,
    }
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| VerifyError::Parse { role: role.to_owned(), reason: e.to_string() })?;
    Ok(Parsed { role: role.to_owned(), signed: raw.signed, signatures: raw.signatures })
}

impl Parsed {
    /// Checks that `threshold` distinct keys among `keyids` (looked up in
    /// `keys`) signed the canonical `signed` value; returns their key ids.
    pub fn verify(
        &self,
        keys: &BTreeMap<String, Key>,
        keyids: &[String],
        threshold: u64,
    ) -> Result<Vec<String>, VerifyError> {
        if threshold == 0 {
            return Err(VerifyError::ZeroThreshold { role: self.role.clone() });
        }
        let message = canonical(&self.signed)
            .map_err(|e| VerifyError::Canonical { role: self.role.clone(), reason: e.to_string() })?;
        let mut signers = Vec::new();
        let mut seen_public = BTreeSet::new();
        let wanted: BTreeSet<&String> = keyids.iter().collect();
        for keyid in wanted {
            let Some(key) = keys.get(keyid) else { continue };
            if key.keytype != "ed25519" || key.scheme != "ed25519" {
                continue;
            }
            let Ok(public) = hex::decode(&key.keyval.public) else { continue };
            if seen_public.contains(&public) {
                continue;
            }
            let good = self.signatures.iter().filter(|s| &s.keyid == keyid).any(|s| {
                hex::decode(&s.sig).is_ok_and(|sig| {
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                        .verify(&message, &sig)
                        .is_ok()
                })
            });
            if good {
                seen_public.insert(public);
                signers.push(keyid.clone());
            }
        }
        if (signers.len() as u64) < threshold {
            return Err(VerifyError::Threshold { role: self.role.clone(), valid: signers.len(), threshold });
        }
        Ok(signers)
    }

    /// Reads the `signed` value as `T`, checking `_type` and `spec_version`.
    pub fn read<T: DeserializeOwned>(&self, kind: &str) -> Result<T, VerifyError> {
        let found = self.signed.get("_type").and_then(|t| t.as_str()).unwrap_or("");
        if found != kind {
            return Err(VerifyError::Type { role: self.role.clone(), found: found.to_owned() });
        }
        let spec = self.signed.get("spec_version").and_then(|t| t.as_str()).unwrap_or("");
        if spec.split('.').next() != Some("1") {
            return Err(VerifyError::SpecVersion { role: self.role.clone(), found: spec.to_owned() });
        }
        T::deserialize(&self.signed).map_err(|e| VerifyError::Parse { role: self.role.clone(), reason: e.to_string() })
    }
}
