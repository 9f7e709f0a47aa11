//! Everything a command needs, opened once: plain handles to storage,
//! metadata and the runtime, and the locks that serialize changes to a pack.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Error;
use crate::db::Db;
use crate::runtime::{Limits, Runtime};
use crate::store::Store;

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
    /// How fetches reach the network (trust, proxy, credentials): the
    /// operator's, built once per process.
    pub net: attune_net::Net,
}

pub struct Context {
    pub store: Store,
    pub db: Db,
    pub runtime: Arc<Runtime>,
    pub limits: Limits,
    /// This machine's name, as its rows are recorded (many machines may
    /// share one database); the `host` column of the records.
    pub machine: String,
    /// Who runs this process, for the audit trail.
    pub user: String,
    /// Downloaded archives, by SHA-256 (`None`: nothing is cached).
    pub artifacts: Option<crate::artifacts::Artifacts>,
    /// Where packs' runtime requirements are checked (`ATTUNE_PYTHON` /
    /// `ATTUNE_NODE`, else PATH; the CLI adds the config file's keys).
    pub interpreters: crate::interpreters::Interpreters,
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

impl Context {
    /// Opens the handles only; [`crate::open`] also runs the start-up check,
    /// and is what a command wants.
    pub async fn open_handles(settings: &Settings) -> Result<Context, Error> {
        std::fs::create_dir_all(&settings.packs_dir)
            .map_err(|e| Error::Io { path: settings.packs_dir.clone(), source: e })?;
        let store = Store::open(&settings.packs_dir)?;
        let db = Db::connect(&settings.database_url).await?;
        let runtime = Arc::new(Runtime::new(settings.cache_dir.clone(), settings.net.clone())?);
        let ctx = Context {
            store,
            db,
            runtime,
            limits: settings.limits,
            machine: settings.host_name.clone().unwrap_or_else(hostname),
            user: username(),
            artifacts: settings.cache_dir.as_deref().map(crate::artifacts::Artifacts::new),
            interpreters: crate::interpreters::Interpreters::from_env(None, None),
        };
        Ok(ctx)
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
        let db = self.db.lock_pack(&self.machine, pack_ref, || on_wait()).await?;
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
    pub(crate) async fn try_lock_pack(&self, pack_ref: &str) -> Result<Option<PackGuard>, Error> {
        let Some(file) = self.store.try_lock_pack(pack_ref)? else { return Ok(None) };
        let Some(db) = self.db.try_lock_pack(&self.machine, pack_ref).await? else { return Ok(None) };
        Ok(Some(PackGuard { db, _file: file }))
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
