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
}

/// What the start-up check did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Recovery {
    pub leftovers_removed: usize,
    pub completed: Vec<String>,
    pub rolled_back: Vec<String>,
}

impl Context {
    pub async fn open(settings: &Settings) -> Result<(Context, Recovery), Error> {
        std::fs::create_dir_all(&settings.packs_dir)
            .map_err(|e| Error::Io { path: settings.packs_dir.clone(), source: e })?;
        let store = Store::open(&settings.packs_dir)?;
        let db = Db::connect(&settings.database_url).await?;
        let runtime = Arc::new(Runtime::new(settings.cache_dir.clone())?);
        let ctx = Context { store, db, runtime, limits: settings.limits, host: hostname(), user: username() };
        let recovery = ctx.recover().await?;
        Ok((ctx, recovery))
    }

    /// Finishes or rolls back installs a killed process left pending.
    pub async fn recover(&self) -> Result<Recovery, Error> {
        let mut r = Recovery { leftovers_removed: self.store.clean_leftovers()?, ..Default::default() };
        for row in self.db.pending(&self.host).await? {
            debug_assert_eq!(row.status, Status::Pending);
            // A held lock means the install is alive in another process.
            let Some(_lock) = self.store.try_lock_pack(&row.pack_ref)? else { continue };
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
