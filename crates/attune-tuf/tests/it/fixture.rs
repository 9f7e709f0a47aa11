//! A repository made with the crate's publisher in a temporary folder, served
//! on loopback, and a client folder for its trusted metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use attune_tuf::publish::{self, Published, RoleSpec, RootSpec, SignOptions};
use attune_tuf::{Anchor, Client, Clock, Limits, Repository, SigningKey};
use time::{Duration, OffsetDateTime};

use crate::server::{Http, Server};

pub const TARGET: &str = "index.json";
pub const INDEX_V1: &[u8] = br#"{"version": "1.0", "packs": [{"ref": "core_utils", "version": "1.0.0"}]}"#;
pub const INDEX_V2: &[u8] = br#"{"version": "1.0", "packs": [{"ref": "core_utils", "version": "1.1.0"}]}"#;

/// One key per role, kept as PEM so fresh signers can be made at will.
pub struct Keys {
    pub root: String,
    pub targets: String,
    pub snapshot: String,
    pub timestamp: String,
    /// More keys a test puts into a role (a second timestamp key, a new root key).
    pub extra: Vec<String>,
}

pub fn key(pem: &str) -> SigningKey {
    SigningKey::from_pem(pem, "test key").expect("test key")
}

impl Keys {
    pub fn new() -> Keys {
        let g = || SigningKey::generate_pem().expect("generate");
        Keys { root: g(), targets: g(), snapshot: g(), timestamp: g(), extra: vec![] }
    }

    pub fn spec(&self) -> RootSpec {
        let role = |pem: &str| RoleSpec::new(&[&key(pem)], 1);
        RootSpec {
            root: role(&self.root),
            targets: role(&self.targets),
            snapshot: role(&self.snapshot),
            timestamp: role(&self.timestamp),
            consistent_snapshot: true,
            root_expires_in: Duration::days(365),
        }
    }

    pub fn signers(&self) -> Vec<SigningKey> {
        [&self.root, &self.targets, &self.snapshot, &self.timestamp]
            .into_iter()
            .chain(&self.extra)
            .map(|p| key(p))
            .collect()
    }
}

pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// A clock `ahead` of now, as a test states it.
pub fn clock_in(ahead: Duration) -> Clock {
    Clock::fixed(now() + ahead, "test clock")
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub server: Server,
    pub trust: PathBuf,
    pub keys: Keys,
    pub options: SignOptions,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with(SignOptions::new(now())).await
    }

    pub async fn with(options: SignOptions) -> Fixture {
        let keys = Keys::new();
        Fixture::with_spec(keys.spec(), keys, options).await
    }

    pub async fn with_spec(spec: RootSpec, keys: Keys, options: SignOptions) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        fs_err::create_dir_all(repo.join("targets")).expect("mkdir");
        fs_err::write(repo.join("targets").join(TARGET), INDEX_V1).expect("write target");
        publish::init(&repo, &spec, &[TARGET.to_owned()], &keys.signers(), &options).expect("init");
        let server = Server::start(repo).await;
        let trust = tmp.path().join("trust");
        Fixture { tmp, server, trust, keys, options }
    }

    pub fn repo(&self) -> &Path {
        &self.server.root
    }

    pub fn meta(&self, file: &str) -> PathBuf {
        self.repo().join("metadata").join(file)
    }

    pub fn client(&self) -> Client<Http> {
        self.client_with(Limits::default())
    }

    pub fn client_with(&self, limits: Limits) -> Client<Http> {
        Client::new(Http::default(), Repository::under(&self.server.base), &self.trust, limits)
    }

    pub fn anchor(&self) -> Anchor {
        Anchor::Root(fs_err::read(self.meta("1.root.json")).expect("root"))
    }

    /// Publishes `content` as the index: new targets, snapshot and timestamp.
    pub fn publish(&self, content: &[u8]) -> Published {
        fs_err::write(self.repo().join("targets").join(TARGET), content).expect("write target");
        publish::sign(self.repo(), &[TARGET.to_owned()], &self.keys.signers(), &self.options).expect("sign")
    }

    /// The client trusts the repository as published now.
    pub async fn trust_now(&self) {
        self.client().init(&self.anchor(), TARGET, &Clock::system()).await.expect("first update");
    }
}

/// Every file under `dir` with its bytes: the trusted state as the disk holds it.
pub fn disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    for entry in fs_err::read_dir(dir).expect("read trust dir") {
        let path = entry.expect("entry").path();
        out.insert(path.file_name().expect("name").to_string_lossy().into_owned(), fs_err::read(&path).expect("read"));
    }
    out
}

/// Reads a metadata file's envelope, for tests that play an attacker holding a key.
pub fn envelope(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(path).expect("read metadata")).expect("json")
}

/// Signs `signed` with `keys` and writes it to `path`.
pub fn write_signed(path: &Path, signed: &serde_json::Value, keys: &[&SigningKey]) {
    fs_err::write(path, publish::sign_metadata(signed, keys).expect("sign")).expect("write");
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

pub fn hex_sha256_file(path: &Path) -> String {
    hex_sha256(&fs_err::read(path).expect("read"))
}

/// Runs an update that must fail: checks that the error names every part
/// given and that the trusted metadata on disk did not change; returns the error.
pub async fn refused(fx: &Fixture, clock: &Clock, expect: &[&str]) -> String {
    let before = disk(&fx.trust);
    let err = fx.client().update(TARGET, clock).await.expect_err("the update must be refused").to_string();
    for part in expect {
        assert!(err.contains(part), "error {err:?} lacks {part:?}");
    }
    assert_eq!(disk(&fx.trust), before, "a refused update changed the trusted metadata on disk");
    eprintln!("refused as expected: {err}");
    err
}
