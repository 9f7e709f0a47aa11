//! `attune pack index-entry` and `attune pack index-update`: what a registry
//! maintainer's CI runs to publish a pack version (see `docs/registry.md`,
//! "Publishing an index from CI"). They read only the pack folder, the
//! archive and the index file: no database, no network.

use std::path::PathBuf;
use std::process::ExitCode;

use attune_app::registry::publish::{self, Action, IndexOptions};
use clap::Args;

/// Where the version is installed from: exactly one of git or archive.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Git repository holding this pack at its root (with --git-ref).
    #[arg(long, value_name = "URL")]
    git_url: Option<String>,
    /// The tag, branch or commit of --git-url to install (a commit or tag is what CI should publish).
    #[arg(long, value_name = "REF")]
    git_ref: Option<String>,
    /// Where the pack's archive (.tar.gz, .zip) is downloaded from (with
    /// --archive-checksum or --archive).
    #[arg(long, value_name = "URL")]
    archive_url: Option<String>,
    /// The SHA-256 of the archive's bytes, sha256:<hex>.
    #[arg(long, value_name = "sha256:HEX")]
    archive_checksum: Option<String>,
    /// A local copy of the archive at --archive-url: its SHA-256 is computed.
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The pack folder (pack.yaml at its root).
    path: PathBuf,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The Attune index file to update (created if missing).
    #[arg(long, value_name = "FILE")]
    index: PathBuf,
    /// The pack folder (pack.yaml at its root).
    path: PathBuf,
    #[command(flatten)]
    source: SourceArgs,
    /// Set `registry_name` (default for a new index: "Pack registry").
    #[arg(long, value_name = "NAME")]
    registry_name: Option<String>,
    /// Set `registry_url`, the registry's home page (default for a new index: empty).
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,
}

fn build(path: &std::path::Path, s: &SourceArgs) -> anyhow::Result<publish::Built> {
    let source = publish::source_from_flags(
        s.git_url.as_deref(),
        s.git_ref.as_deref(),
        s.archive_url.as_deref(),
        s.archive_checksum.as_deref(),
        s.archive.as_deref(),
    )?;
    Ok(publish::entry(path, &source)?)
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// Prints the entry (JSON whether or not --json is given); warnings go to stderr.
pub fn entry(a: &EntryArgs) -> anyhow::Result<ExitCode> {
    let built = build(&a.path, &a.source)?;
    warn(&built.warnings);
    out!("{}", built.entry.to_pretty());
    Ok(ExitCode::SUCCESS)
}

pub fn update(a: &UpdateArgs, json: bool) -> anyhow::Result<ExitCode> {
    let built = build(&a.path, &a.source)?;
    let opts = IndexOptions {
        registry_name: a.registry_name.clone(),
        registry_url: a.registry_url.clone(),
        now: publish::now_rfc3339(),
    };
    let u = publish::update_index(&a.index, &built, &opts)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&u)?);
        return Ok(ExitCode::SUCCESS);
    }
    warn(&u.warnings);
    let what = format!("{} {} ({})", u.pack_ref, u.version, u.source_type);
    let file = u.index.display();
    match (u.created, u.action) {
        (true, _) => outln!("created {file} with {what}"),
        (false, Action::Added) => outln!("added {what} to {file} ({} entries)", u.entries),
        (false, Action::Replaced) => outln!("replaced {what} in {file} ({} entries)", u.entries),
        (false, Action::Unchanged) => outln!("unchanged: {file} already lists {what} as built; not written"),
    }
    match built.source_type {
        "git" => outln!("  checksum       {} (written sha256:{})", u.checksum, built.checksum.to_hex()),
        _ => outln!("  checksum       {}", u.checksum),
    }
    if let Some(t) = &u.tree_checksum {
        outln!("  tree checksum  {t} (meta.x_attune.tree_checksum)");
    }
    Ok(ExitCode::SUCCESS)
}
