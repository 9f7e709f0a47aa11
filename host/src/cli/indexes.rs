//! `attune index …` and the output of `attune install <ref>[@range]`: kept
//! apart from the other commands so registry work stays in one place.

use std::path::{Path, PathBuf};

use attune_app::by_name::NamedInstall;
use attune_app::context::Context;
use attune_app::indexes::{self, FetchOptions, IndexReport, UpdateOutcome};
use attune_app::signed_index::Signing;
use attune_app::tuf::Anchor;
use clap::{Args, Subcommand};

use super::output::{Output, print_json, short, table, when};

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Register a registry index (Attune index.json or StackStorm Exchange
    /// v1/index.json) by URL or path; it is fetched and checked now.
    Add {
        /// A name for it: 1-64 of a-z, 0-9, `_`, `-`.
        name: String,
        /// An http(s) URL (fetched through the sandboxed http fetcher) or a file path;
        /// for a signed index, the TUF repository's URL (metadata/ and targets/ under it).
        location: String,
        /// A signed index: its TUF root metadata, obtained from the publisher out of band.
        #[arg(long, value_name = "FILE", conflicts_with = "root_sha256")]
        root: Option<PathBuf>,
        /// A signed index: fetch its 1.root.json and trust it if its SHA-256 is this.
        #[arg(long, value_name = "HEX")]
        root_sha256: Option<String>,
        /// The target that is the index document (with --root or --root-sha256):
        /// index.json (Attune) or v1/index.json (StackStorm Exchange).
        #[arg(long, value_name = "NAME", default_value = "index.json")]
        target: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List the registered indexes and what their last fetch found.
    List,
    /// Fetch one index again, or all of them.
    Update {
        name: Option<String>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Unregister an index and drop its cached copy and trusted metadata.
    Remove { name: String },
    /// Write a new signing key (ed25519 PKCS#8 PEM) for `index init|sign`.
    Keygen(super::tuf_publish::KeygenArgs),
    /// Make a folder a signed (TUF) index: root, targets, snapshot and timestamp metadata.
    Init(super::tuf_publish::InitArgs),
    /// Publish the index document again (new targets, snapshot, timestamp),
    /// re-sign only the timestamp, or rotate the root keys.
    Sign(super::tuf_publish::SignArgs),
}

/// How an index download may reach the network (as for installs).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Let the download reach this host too (redirects, mirrors); repeatable.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Allow plain http:// to hosts that are not loopback.
    #[arg(long)]
    allow_insecure_http: bool,
    /// Trust this CA (a PEM file) too, besides the system store and the
    /// config's `tls.ca_files`; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<PathBuf>,
    /// Refuse unsigned indexes (also `require_signed_indexes = true` in the config).
    #[arg(long)]
    require_signed: bool,
}

impl NetArgs {
    fn options(&self, config: &IndexConfig) -> FetchOptions {
        FetchOptions {
            allow_hosts: self.allow_host.iter().chain(&config.allow_hosts).cloned().collect(),
            allow_insecure_http: self.allow_insecure_http,
            require_signed: self.require_signed || config.require_signed,
        }
    }
}

/// What the config file says about indexes.
pub struct IndexConfig {
    pub allow_hosts: Vec<String>,
    pub require_signed: bool,
}

/// Runs an index command; returns false when something failed (exit 1).
pub async fn run(
    ctx: &Context,
    out: &Output,
    cache_dir: &Path,
    config: &IndexConfig,
    cmd: IndexCommand,
) -> anyhow::Result<bool> {
    match cmd {
        IndexCommand::Add { name, location, root, root_sha256, target, net } => {
            let signing = match (root, root_sha256) {
                (Some(path), _) => Some(Signing::from_root_file(&path, &target)?),
                (None, Some(hex)) => Some(Signing { anchor: Anchor::RootSha256(hex), target }),
                (None, None) => None,
            };
            let r = indexes::add(ctx, cache_dir, &name, &location, &net.options(config), signing.as_ref()).await?;
            if out.json {
                print_json(&r)?;
            } else {
                let f = r.row.fetched.as_ref();
                outln!(
                    "added index {} ({}, {}): {} packs, {} versions",
                    r.row.name,
                    f.map_or("", |f| f.format.as_str()),
                    trust(&r),
                    f.map_or(0, |f| f.packs),
                    f.map_or(0, |f| f.versions)
                );
                skipped_note(&r.skipped);
            }
            Ok(true)
        }
        IndexCommand::List => {
            let rows = indexes::list(ctx, cache_dir).await?;
            if out.json {
                print_json(&rows)?;
            } else if rows.is_empty() {
                outln!("no indexes (add one with `attune index add <name> <url|path>`)");
            } else {
                list_table(&rows);
            }
            Ok(true)
        }
        IndexCommand::Update { name, net } => {
            let outcomes = indexes::update(ctx, cache_dir, name.as_deref(), &net.options(config)).await?;
            let ok = outcomes.iter().all(|o| o.error.is_none());
            if out.json {
                print_json(&outcomes)?;
            } else if outcomes.is_empty() {
                outln!("no indexes to update (add one with `attune index add <name> <url|path>`)");
            } else {
                update_lines(&outcomes);
            }
            Ok(ok)
        }
        IndexCommand::Remove { name } => {
            let row = indexes::remove(ctx, cache_dir, &name).await?;
            if out.json {
                print_json(&row)?;
            } else {
                outln!("removed index {} ({})", row.name, row.location);
            }
            Ok(true)
        }
        IndexCommand::Keygen(_) | IndexCommand::Init(_) | IndexCommand::Sign(_) => {
            unreachable!("publishing commands run before a context is opened")
        }
    }
}

/// `signed (targets v3)` or `unsigned`.
fn trust(r: &IndexReport) -> String {
    match &r.row.signed {
        Some(s) => format!("signed (targets v{})", s.targets_version),
        None => "unsigned".into(),
    }
}

fn skipped_note(skipped: &[String]) {
    for s in skipped {
        eprintln!("warning: skipped index entry {s}");
    }
}

fn list_table(rows: &[IndexReport]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let f = r.row.fetched.as_ref();
            vec![
                r.row.name.clone(),
                f.map_or("-".into(), |f| f.format.clone()),
                f.map_or("-".into(), |f| f.packs.to_string()),
                f.map_or("-".into(), |f| f.versions.to_string()),
                match (f, r.cached) {
                    (Some(f), true) => when(&f.at),
                    (_, false) => "not fetched on this host".into(),
                    (None, true) => "-".into(),
                },
                trust(r),
                r.row.location.clone(),
            ]
        })
        .collect();
    table(&["NAME", "FORMAT", "PACKS", "VERSIONS", "FETCHED", "TRUST", "LOCATION"], &rows);
}

fn update_lines(outcomes: &[UpdateOutcome]) {
    for o in outcomes {
        match (&o.index, &o.error) {
            (Some(r), _) => {
                let f = r.row.fetched.as_ref();
                outln!(
                    "updated {} ({}): {} packs, {} versions{}",
                    o.name,
                    trust(r),
                    f.map_or(0, |f| f.packs),
                    f.map_or(0, |f| f.versions),
                    if o.changed { "" } else { " (unchanged)" }
                );
                skipped_note(&r.skipped);
            }
            // A signed index's refusal already says what was kept.
            (None, Some(e)) if e.contains("unchanged") => eprintln!("error: index {}: {e}", o.name),
            (None, Some(e)) => eprintln!("error: index {}: {e} (its cached copy is kept)", o.name),
            (None, None) => {}
        }
    }
}

/// The result of `attune install <ref>[@range]`.
pub fn installed_by_name(out: &Output, n: &NamedInstall) -> anyhow::Result<()> {
    if out.json {
        return print_json(n);
    }
    for d in &n.dependencies {
        match d.action {
            "installed" => outln!("installed {} {} (dependency, from index {})", d.pack_ref, d.version, d.index),
            _ => outln!("kept {} {} (dependency, already installed)", d.pack_ref, d.version),
        }
    }
    out.installed(&n.install)?;
    outln!("  index     {} ({}@{})", n.resolved.index, n.resolved.pack.pack_ref, n.resolved.pack.version);
    match &n.expected_checksum {
        Some(c) => outln!("  verified  {}", short(c)),
        None => outln!("  verified  no: the index gives no checksum for this version"),
    }
    if !n.skipped_dependencies.is_empty() {
        let list: Vec<String> = n.skipped_dependencies.iter().map(|d| format!("{} {}", d.pack_ref, d.req)).collect();
        eprintln!("note: --skip-deps: not installed: {}", list.join(", "));
    }
    out.ignored_runtime_requirements(&n.ignored_runtime_requirements);
    for w in &n.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
