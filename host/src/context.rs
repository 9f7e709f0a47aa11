//! Everything a command needs, opened once: storage, metadata, the runtime.
//!
//! Opening a context also runs the start-up check: leftovers of killed runs
//! are removed and interrupted installs are finished or marked failed, so
//! disk and database never disagree silently.

use std::path::PathBuf;
use std::sync::Arc;

use crate::db::{Db, Status};
use crate::runtime::{Limits, Runtime};
use crate::store::Store;
use crate::{Error, checksum};

/// How a context is opened.
#[derive(Debug, Clone)]
pub struct Settings {
    pub packs_dir: PathBuf,
    pub database_url: String,
    /// Compiled-component cache; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
    /// The name this host is recorded under (default: its hostname).
    pub host_name: Option<String>,
}

pub struct Context {
    pub store: Store,
    pub db: Db,
    pub runtime: Arc<Runtime>,
    pub limits: Limits,
    /// This machine's name; many hosts may share one database.
    pub host: String,
    /// Who runs this process, for the audit trail.
    pub user: String,
    /// Downloaded archives, by SHA-256 (`None`: nothing is cached).
    pub artifacts: Option<crate::artifacts::Artifacts>,
    /// Where packs' runtime requirements are checked (`ATTUNE_PYTHON` /
    /// `ATTUNE_NODE`, else PATH; the CLI adds the config file's keys).
    pub interpreters: crate::runtimes::Interpreters,
}

/// Held while a pack is changed; see [`Context::lock_pack`].
#[derive(Debug)]
pub struct PackGuard {
    db: crate::db::PackLock,
    // Dropped after `db`: released in the reverse order of taking.
    _file: crate::store::PackLock,
}

impl PackGuard {
    /// Releases both locks (dropping also does, less gently for the database's).
    pub async fn release(self) {
        let PackGuard { db, _file } = self;
        db.release().await;
    }
}

/// What the start-up check did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Recovery {
    pub leftovers_removed: usize,
    pub completed: Vec<String>,
    pub rolled_back: Vec<String>,
    /// Packs installed before attune kept active versions, given their
    /// highest installed version as the active one (`ref@version`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activated: Vec<String>,
}

impl Context {
    pub async fn open(settings: &Settings) -> Result<(Context, Recovery), Error> {
        std::fs::create_dir_all(&settings.packs_dir)
            .map_err(|e| Error::Io { path: settings.packs_dir.clone(), source: e })?;
        let store = Store::open(&settings.packs_dir)?;
        let db = Db::connect(&settings.database_url).await?;
        let runtime = Arc::new(Runtime::new(settings.cache_dir.clone())?);
        let ctx = Context {
            store,
            db,
            runtime,
            limits: settings.limits,
            host: settings.host_name.clone().unwrap_or_else(hostname),
            user: username(),
            artifacts: settings.cache_dir.as_deref().map(crate::artifacts::Artifacts::new),
            interpreters: crate::runtimes::Interpreters::from_env(None, None),
        };
        let recovery = ctx.recover().await?;
        Ok((ctx, recovery))
    }

    /// Takes both locks on changing `pack_ref` here, always in this order:
    /// the packs folder's file lock, then (on PostgreSQL, where other
    /// processes may use other folders) the database's lock for this host.
    /// `on_wait` is called when either has to wait for another process.
    pub async fn lock_pack(&self, pack_ref: &str, on_wait: Arc<dyn Fn() + Send + Sync>) -> Result<PackGuard, Error> {
        let file = {
            let (store, r, w) = (self.store.clone(), pack_ref.to_string(), on_wait.clone());
            tokio::task::spawn_blocking(move || store.lock_pack(&r, || w())).await.expect("lock task panicked")?
        };
        let db = self.db.lock_pack(&self.host, pack_ref, || on_wait()).await?;
        Ok(PackGuard { db, _file: file })
    }

    /// Serializes what decides a pack's active version (`activate`,
    /// `rollback`, a whole `upgrade`, `gc`) across processes, the same way as
    /// [`Context::lock_pack`] but under its own name (`{ref}.switch`: a dot
    /// is never in a ref), so an upgrade holds it from resolving to
    /// rollback while its install and switch take the pack lock inside.
    /// Always taken before the pack lock, never while holding it.
    pub async fn lock_switches(
        &self,
        pack_ref: &str,
        on_wait: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<PackGuard, Error> {
        self.lock_pack(&format!("{pack_ref}.switch"), on_wait).await
    }

    /// Both locks of `pack_ref` if no other process holds either.
    async fn try_lock_pack(&self, pack_ref: &str) -> Result<Option<PackGuard>, Error> {
        let Some(file) = self.store.try_lock_pack(pack_ref)? else { return Ok(None) };
        let Some(db) = self.db.try_lock_pack(&self.host, pack_ref).await? else { return Ok(None) };
        Ok(Some(PackGuard { db, _file: file }))
    }

    /// Packs with installed versions but no activation record at all were
    /// installed before active versions existed (migration 0005): their
    /// highest version becomes active, once, recorded as `backfill`. Packs
    /// another process is changing are left for a later run.
    async fn backfill_active(&self) -> Result<Vec<String>, Error> {
        let known: std::collections::BTreeSet<String> =
            self.db.activations(&self.host).await?.into_iter().map(|a| a.pack_ref).collect();
        let mut highest: std::collections::BTreeMap<String, semver::Version> = Default::default();
        for row in self.db.installed(&self.host).await? {
            if known.contains(&row.pack_ref) {
                continue;
            }
            if let Ok(v) = semver::Version::parse(&row.version) {
                let e = highest.entry(row.pack_ref).or_insert_with(|| v.clone());
                if v > *e {
                    *e = v;
                }
            }
        }
        let mut done = Vec::new();
        for (pack_ref, version) in highest {
            let Some(switches) = self.try_lock_pack(&format!("{pack_ref}.switch")).await? else { continue };
            let Some(lock) = self.try_lock_pack(&pack_ref).await? else { continue };
            // Checked again under the locks: another process may have just done it.
            if self.db.activation(&self.host, &pack_ref).await?.is_none()
                && self.store.pack_dir(&pack_ref, &version).is_dir()
            {
                crate::upgrade::activate_locked(self, &pack_ref, &version, "backfill").await?;
                done.push(format!("{pack_ref}@{version}"));
            }
            lock.release().await;
            switches.release().await;
        }
        Ok(done)
    }

    /// Finishes or rolls back installs a killed process left pending.
    pub async fn recover(&self) -> Result<Recovery, Error> {
        let mut r = Recovery { leftovers_removed: self.store.clean_leftovers()?, ..Default::default() };
        for row in self.db.pending(&self.host).await? {
            debug_assert_eq!(row.status, Status::Pending);
            // A held lock means the install is alive in another process: the
            // file lock for this folder's processes, the database's for other
            // folders of this host (PostgreSQL).
            let Some(_lock) = self.store.try_lock_pack(&row.pack_ref)? else { continue };
            let Some(_db_lock) = self.db.try_lock_pack(&self.host, &row.pack_ref).await? else { continue };
            let label = format!("{}@{}", row.pack_ref, row.version);
            let path = PathBuf::from(&row.storage_path);
            let on_disk = match path.is_dir() {
                true => {
                    let p = path.clone();
                    tokio::task::spawn_blocking(move || checksum::tree(&p)).await.ok().and_then(|r| r.ok())
                }
                false => None,
            };
            if on_disk.is_some_and(|m| m.digest.to_string() == row.checksum) {
                // Killed after the rename: the new tree is in place, finish the record.
                self.db.complete_install(row.id).await?;
                r.completed.push(label);
            } else {
                self.db
                    .fail_install(
                        row.id,
                        "interrupted before the pack was moved into place; the previous state was kept",
                    )
                    .await?;
                r.rolled_back.push(label);
            }
        }
        // Not worth failing the command for: the next run tries again.
        match self.backfill_active().await {
            Ok(done) => r.activated = done,
            Err(e) => tracing::warn!("choosing active versions for packs installed before attune kept them: {e}"),
        }
        Ok(r)
    }
}

pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// The account of the real uid (not `$USER`, which any caller can set).
pub fn username() -> String {
    let uid = rustix::process::getuid().as_raw();
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
    });
    from_passwd.unwrap_or_else(|| format!("uid:{uid}"))
}
