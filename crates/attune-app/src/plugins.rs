//! Plugin administration: adding third-party fetchers, granting them
//! capabilities, and finding the one that handles a source. The built-in
//! fetchers themselves are [`attune_fetch::builtins`].

use std::path::Path;

use crate::context::Context;
use crate::db::{Grant, PluginRow};
use crate::{Error, runtime::Capability};
use attune_fetch::builtins::{BUILTIN_SCHEMES, BUILTINS};

/// What `plugin add` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Added {
    pub plugin: PluginRow,
    /// What it asks for, e.g. `outbound-host:*.example.com`.
    pub requested: Vec<String>,
    pub granted: Vec<String>,
}

fn usage(msg: String) -> Error {
    Error::Usage(msg)
}

/// A capability as stored: `read-input`, `outbound-host:<host or pattern>`.
pub fn host_capability(host: &str) -> String {
    format!("outbound-host:{}", host.to_ascii_lowercase())
}

/// Adds the component in `file`, granting `allow_hosts` (each must be one
/// the plugin asks for) or, with `grant_all`, everything it asks for.
pub async fn add(ctx: &Context, file: &Path, allow_hosts: &[String], grant_all: bool) -> Result<Added, Error> {
    let wasm = std::fs::read(file).map_err(|e| Error::Io { path: file.to_path_buf(), source: e })?;
    add_bytes(ctx, &wasm, &file.display().to_string(), allow_hosts, grant_all, None).await
}

/// [`add`] for a component already in memory (downloaded); `origin`
/// names where it came from. `shown`: what the operator was shown and
/// agreed to (the interactive prompt); the plugin must still ask for
/// exactly that, or nothing is added.
pub async fn add_bytes(
    ctx: &Context,
    wasm: &[u8],
    origin: &str,
    allow_hosts: &[String],
    grant_all: bool,
    shown: Option<&[String]>,
) -> Result<Added, Error> {
    let file = Path::new(origin);
    let label = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
    let loaded = ctx.runtime.load(&label, wasm).await?;
    let info = &loaded.info;
    crate::manifest::validate_ref(&info.name).map_err(|_| {
        usage(format!("{}: plugin name {:?} must be 1-64 of a-z, 0-9, '_', '-'", file.display(), info.name))
    })?;
    if BUILTINS.iter().any(|b| b.name == info.name) {
        return Err(usage(format!(
            "{}: {:?} is the name of a built-in fetcher; pick another name",
            file.display(),
            info.name
        )));
    }
    if let Some(existing) = ctx.db.plugin(&info.name).await? {
        return Err(usage(format!(
            "plugin {:?} is already added (version {}, sha256 {}); remove it first with `attune plugin remove {}`",
            info.name, existing.version, existing.sha256, info.name
        )));
    }
    if info.schemes.is_empty() {
        return Err(usage(format!("{}: the plugin handles no source scheme", file.display())));
    }
    for scheme in &info.schemes {
        if BUILTIN_SCHEMES.iter().any(|b| b.eq_ignore_ascii_case(scheme)) {
            return Err(usage(format!(
                "{}: scheme {scheme:?} belongs to a built-in fetcher and cannot be taken over",
                file.display()
            )));
        }
        if let Some(other) = ctx.db.plugins().await?.into_iter().find(|p| p.schemes.contains(scheme)) {
            return Err(usage(format!(
                "{}: scheme {scheme:?} is already handled by plugin {:?}; two plugins cannot claim one scheme",
                file.display(),
                other.name
            )));
        }
    }
    let requested: Vec<String> = info.capabilities.iter().map(Capability::to_string).collect();
    if let Some(shown) = shown
        && shown != requested.as_slice()
    {
        return Err(usage(format!(
            "{}: the plugin asked for {} when you were asked, and now asks for {}; \
             its describe() answer must not change: nothing was added",
            file.display(),
            shown.join(", "),
            requested.join(", ")
        )));
    }
    let mut granted = Vec::new();
    for host in allow_hosts {
        let cap = host_capability(host);
        let asked = info.capabilities.iter().any(|c| match c {
            Capability::OutboundHost(p) => {
                crate::runtime::grants::host_matches(p, host) || p.eq_ignore_ascii_case(host)
            }
            Capability::ReadInput | Capability::LargerLimits(_) => false,
        });
        if !asked {
            return Err(usage(format!(
                "plugin {:?} does not ask to reach {host}; it asks for: {}",
                info.name,
                if requested.is_empty() { "nothing".to_string() } else { requested.join(", ") }
            )));
        }
        granted.push(cap);
    }
    if grant_all {
        granted.extend(requested.iter().cloned());
    }
    granted.sort();
    granted.dedup();
    let row = PluginRow {
        name: info.name.clone(),
        version: info.version.clone(),
        wit_version: info.wit_version.clone(),
        summary: info.summary.clone(),
        sha256: loaded.sha256.clone(),
        schemes: info.schemes.clone(),
        capabilities: requested.clone(),
        added_from: origin.to_string(),
        added_at: time::OffsetDateTime::now_utc(),
        added_by: ctx.user.clone(),
    };
    ctx.db.add_plugin(&row, wasm).await?;
    for cap in &granted {
        ctx.db.grant(&row.name, cap, &ctx.user).await?;
    }
    Ok(Added { plugin: row, requested, granted })
}

async fn existing(ctx: &Context, name: &str) -> Result<PluginRow, Error> {
    ctx.db.plugin(name).await?.ok_or_else(|| {
        let hint = if BUILTINS.iter().any(|b| b.name == name) { " (it is built in)" } else { "" };
        usage(format!("no added plugin is named {name:?}{hint}; see `attune plugin list`"))
    })
}

pub async fn remove(ctx: &Context, name: &str) -> Result<PluginRow, Error> {
    let row = existing(ctx, name).await?;
    ctx.db.remove_plugin(name, &ctx.user).await?;
    Ok(row)
}

/// Grants or revokes hosts (and `read-input`); returns the live grants
/// after the change. Only what the plugin asks for can be granted.
pub async fn set_grants(
    ctx: &Context,
    name: &str,
    hosts: &[String],
    read_input: bool,
    larger_limits: bool,
    allow: bool,
) -> Result<Vec<Grant>, Error> {
    let row = existing(ctx, name).await?;
    if hosts.is_empty() && !read_input && !larger_limits {
        return Err(usage("name at least one host with --allow-host, or --read-input, or --larger-limits".into()));
    }
    let mut caps: Vec<String> = hosts.iter().map(|h| host_capability(h)).collect();
    if read_input {
        caps.push("read-input".into());
    }
    if larger_limits {
        // Exactly as asked: a limits grant is the plugin's own request.
        caps.extend(row.capabilities.iter().filter(|c| c.starts_with("larger-limits:")).cloned());
    }
    for cap in &caps {
        let asked = row.capabilities.iter().any(|c| {
            c == cap
                || match (c.strip_prefix("outbound-host:"), cap.strip_prefix("outbound-host:")) {
                    (Some(pattern), Some(host)) => crate::runtime::grants::host_matches(pattern, host),
                    _ => false,
                }
        });
        if allow && !asked {
            return Err(usage(format!(
                "plugin {name:?} does not ask for {cap}; it asks for: {}",
                if row.capabilities.is_empty() { "nothing".to_string() } else { row.capabilities.join(", ") }
            )));
        }
    }
    for cap in caps {
        let h = cap.strip_prefix("outbound-host:").unwrap_or(&cap).to_string();
        if allow {
            ctx.db.grant(name, &cap, &ctx.user).await?;
        } else if !ctx.db.revoke(name, &cap, &ctx.user).await? {
            return Err(usage(format!("plugin {name:?} has no live grant for {h}")));
        }
    }
    Ok(ctx.db.grants(name, false).await?)
}

pub async fn info(ctx: &Context, name: &str) -> Result<(PluginRow, Vec<Grant>), Error> {
    let row = existing(ctx, name).await?;
    let grants = ctx.db.grants(name, true).await?;
    Ok((row, grants))
}

/// The added plugin that handles `source`: by name when one is given,
/// else by the source's scheme.
/// What runs `source` through the added plugin `row`: its wasm, the
/// identity it was added with, and what the operator granted it.
pub async fn added_spec(ctx: &Context, row: PluginRow, source: &str) -> Result<crate::sources::SourceSpec, Error> {
    let wasm =
        ctx.db.plugin_wasm(&row.sha256).await?.ok_or_else(|| {
            Error::Corrupt(format!("plugin {:?}: its wasm (sha256 {}) is missing", row.name, row.sha256))
        })?;
    let grants = ctx.db.grants(&row.name, false).await?.into_iter().map(|g| g.capability).collect();
    let identity = crate::runtime::Identity {
        name: row.name,
        version: row.version,
        schemes: row.schemes,
        capabilities: row.capabilities,
        sha256: row.sha256,
    };
    Ok(crate::sources::SourceSpec::Added { identity, wasm, source: source.to_string(), grants })
}

pub async fn for_source(ctx: &Context, source: &str, name: Option<&str>) -> Result<Option<PluginRow>, Error> {
    if let Some(n) = name {
        return existing(ctx, n).await.map(Some);
    }
    let Some((scheme, _)) = source.split_once("://") else { return Ok(None) };
    let scheme = scheme.to_ascii_lowercase();
    Ok(ctx.db.plugins().await?.into_iter().find(|p| p.schemes.contains(&scheme)))
}
