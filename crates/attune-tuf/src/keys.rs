//! Signing keys for publishing: ed25519 in PKCS#8 PEM files (`openssl genpkey
//! -algorithm ed25519` writes them; so does [`SigningKey::generate_pem`]).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::schema::{Key, Signature};

/// A key file is a few hundred bytes; anything much larger is not one.
const MAX_KEY_FILE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: larger than {MAX_KEY_FILE} bytes; give the PEM file of one ed25519 private key")]
    TooLarge { path: PathBuf },
    #[error("key {what}: not a PEM block ({reason}); give an ed25519 private key in PKCS#8 PEM (BEGIN PRIVATE KEY)")]
    Pem { what: String, reason: String },
    #[error(
        "key {what}: PEM block is {tag:?}, not \"PRIVATE KEY\"; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)"
    )]
    Tag { what: String, tag: String },
    #[error("key {what}: not an ed25519 PKCS#8 key ({reason}); only ed25519 keys are supported")]
    Pkcs8 { what: String, reason: String },
    #[error("key generation: {reason}; the system random source failed")]
    Generate { reason: String },
    #[error("key id: {reason}")]
    KeyId { reason: String },
}

/// A public key as it appears in root or delegations, with its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key: Key,
    pub key_id: String,
}

impl PublicKey {
    /// Reads a key as TUF metadata lists it (the key id is computed from it).
    pub fn from_key(key: Key) -> Result<PublicKey, KeyError> {
        let key_id = key.key_id().map_err(|e| KeyError::KeyId { reason: e.to_string() })?;
        Ok(PublicKey { key, key_id })
    }
}

/// An ed25519 private key that signs metadata.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.public.key_id).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (v1 as OpenSSL writes it, or v2); `what` names it in errors.
    pub fn from_pem(pem_text: &str, what: &str) -> Result<SigningKey, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Pem { what: what.into(), reason: e.to_string() })?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::Tag { what: what.into(), tag: block.tag().into() });
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(block.contents())
            .map_err(|e| KeyError::Pkcs8 { what: what.into(), reason: e.to_string() })?;
        let public = PublicKey::from_key(Key::ed25519(pair.public_key().as_ref()))?;
        Ok(SigningKey { pair, public })
    }

    pub fn from_pem_file(path: &Path) -> Result<SigningKey, KeyError> {
        let mut text = String::new();
        fs_err::File::open(path)
            .map_err(|source| KeyError::Io { source })?
            .take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| KeyError::Pem { what: path.display().to_string(), reason: e.to_string() })?;
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(KeyError::TooLarge { path: path.to_owned() });
        }
        SigningKey::from_pem(&text, &path.display().to_string())
    }

    /// A new key as PKCS#8 PEM text, for tests and `docs` (CI keeps its keys elsewhere).
    pub fn generate_pem() -> Result<String, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate { reason: e.to_string() })?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref())))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> &str {
        &self.public.key_id
    }

    /// Signs canonical bytes.
    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        Signature { keyid: self.public.key_id.clone(), sig: hex::encode(self.pair.sign(message).as_ref()) }
    }
}
