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
    /// Where packs' runtime environments live (default: [`default_envs_dir`]).
    pub envs_dir: Option<PathBuf>,
}

/// `{packs_dir}-envs` beside the packs folder (`/var/lib/attune/packs` →
/// `/var/lib/attune/packs-envs`): on the same filesystem, so an environment
/// is published by rename, and never shared by two packs folders.
pub fn default_envs_dir(packs_dir: &std::path::Path) -> PathBuf {
    let mut name = packs_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "packs".into());
    name.push("-envs");
    packs_dir.with_file_name(name)
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
    /// Packs' runtime environments, `{ref}-{version}/` with an active link
    /// per pack, as the packs folder (see [`crate::environments`]).
    pub envs: Store,
    /// How environments are built (uv, npm, the Python indexes); the CLI
    /// fills it from the config file. Used by [`crate::environments`].
    pub env_config: EnvConfig,
}

/// The operator's settings for building environments (config file and
/// environment variables; see the README).
#[derive(Debug, Clone, Default)]
pub struct EnvConfig {
    /// `uv` (default: `$ATTUNE_UV`, then `PATH`).
    pub uv: Option<PathBuf>,
    /// `npm` (default: `$ATTUNE_NPM`, then `PATH`).
    pub npm: Option<PathBuf>,
    /// A PEP 503 simple index; with neither this nor `python_find_links`, PyPI.
    pub python_index_url: Option<String>,
    /// Folders or pages of distributions (`--find-links`).
    pub python_find_links: Vec<String>,
    /// The npm registry (default: npm's own configuration).
    pub npm_registry: Option<String>,
}

impl EnvConfig {
    pub(crate) fn python_sources(&self) -> attune_env::PythonSources {
        if self.python_index_url.is_none() && self.python_find_links.is_empty() {
            return attune_env::PythonSources::pypi();
        }
        attune_env::PythonSources {
            index_url: self.python_index_url.clone(),
            find_links: self.python_find_links.clone(),
        }
    }
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
        let envs_dir = settings.envs_dir.clone().unwrap_or_else(|| default_envs_dir(&settings.packs_dir));
        std::fs::create_dir_all(&envs_dir).map_err(|e| Error::Io { path: envs_dir.clone(), source: e })?;
        let envs = Store::open(&envs_dir)?;
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
            envs,
            env_config: Default::default(),
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
