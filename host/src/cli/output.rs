//! How results look: aligned tables for people, JSON for scripts.

use std::path::Path;

use attune_app::checksum::{Computed, EntryKind};
use attune_app::db::VerifyStatus;
use attune_app::db::{ApiToken, Grant, PluginRow};
use attune_app::install::InstallReport;
use attune_app::packs::{DoctorReport, Finding, Listed, PackInfo, UninstallReport, VerifyReport, slim_json};
use attune_app::plugins::Added;
use attune_app::recovery::Recovery;
use attune_app::runtime::PluginInfo;
use attune_app::upgrade::{GcReport, Switch, UpgradeReport};
use indicatif::HumanBytes;
use serde::Serialize;

pub struct Output {
    pub json: bool,
}

pub enum ChecksumFormat {
    Table,
    Json,
    Yaml,
}

pub(crate) fn print_json<T: Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(crate) fn when(t: &time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_else(|_| t.to_string())
}

/// Text that may have come from a plugin (or a record one made), escaped
/// for the terminal; see `attune_app::untrusted`.
pub(crate) fn e(s: &str) -> std::borrow::Cow<'_, str> {
    attune_app::untrusted::escape(s)
}

/// Left-aligned columns, two spaces apart; every cell is escaped, since
/// some hold what a plugin said.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    out!("{}", table_text(header, rows));
}

/// What [`table`] prints.
fn table_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| e(c).into_owned()).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    // One write for the whole table: a listing of thousands of packs is not
    // thousands of writes.
    let mut text = String::new();
    let mut line = |cells: Vec<String>| {
        let n = cells.len();
        let s: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i + 1 == n { c } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        text.push_str(s.join("  ").trim_end());
        text.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
    text
}

/// `attune list`'s table as [`table`] lays it out (the same text, tested
/// below), of the cells [`when`] and [`short`] make, built as the rows arrive
/// without a string per cell: each row's cells, escaped, are appended to one
/// string, and only where each ends, its width and the widest of each
/// column are kept.
struct ListTable {
    all_hosts: bool,
    headers: &'static [&'static str],
    cells: String,
    /// Per cell, in order: where it ends in `cells` and its width in chars.
    ends: Vec<(usize, usize)>,
    widths: Vec<usize>,
    rows: usize,
    /// Reused to format each row's time.
    time: Vec<u8>,
}

impl ListTable {
    fn new(all_hosts: bool) -> Self {
        let headers: &'static [&'static str] = match all_hosts {
            true => &["REF", "VERSION", "ACTIVE", "SOURCE", "INSTALLED", "CHECKSUM", "HOST"],
            false => &["REF", "VERSION", "ACTIVE", "SOURCE", "INSTALLED", "CHECKSUM"],
        };
        let widths = headers.iter().map(|h| h.len()).collect();
        ListTable { all_hosts, headers, cells: String::new(), ends: Vec::new(), widths, rows: 0, time: Vec::new() }
    }

    /// The cells of `r`, formatted in place.
    fn push(&mut self, r: &attune_app::db::ListedRow) {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
        let mut time = std::mem::take(&mut self.time);
        time.clear();
        if r.installed_at.to_offset(time::UtcOffset::UTC).format_into(&mut time, &f).is_err() {
            time.clear();
            time.extend_from_slice(r.installed_at.to_string().as_bytes());
        }
        let (alg_hex, ellipsis) = match r.checksum.split_once(':') {
            Some((alg, hex)) if hex.len() > 16 => ([alg, ":", &hex[..16]], "…"),
            _ => ([r.checksum.as_str(), "", ""], ""),
        };
        self.cell(&[&r.pack_ref]);
        self.cell(&[&r.version]);
        self.cell(&[if r.active { "*" } else { "" }]);
        self.cell(&[r.source_type.as_str()]);
        self.cell(&[std::str::from_utf8(&time).unwrap_or_default()]);
        self.time = time;
        self.cell(&[alg_hex[0], alg_hex[1], alg_hex[2], ellipsis]);
        if self.all_hosts {
            self.cell(&[&r.host]);
        }
        self.rows += 1;
    }

    /// Appends one cell, the escaped concatenation of `parts` ([`e`]
    /// escapes char by char, so escaping each part is the same).
    fn cell(&mut self, parts: &[&str]) {
        let start = self.cells.len();
        for p in parts {
            self.cells.push_str(&e(p));
        }
        let width = self.cells[start..].chars().count();
        let column = self.ends.len() % self.headers.len();
        self.widths[column] = self.widths[column].max(width);
        self.ends.push((self.cells.len(), width));
    }

    /// The whole table: columns two spaces apart, each line without
    /// trailing spaces.
    fn finish(self) -> String {
        let n = self.headers.len();
        let mut text = String::with_capacity(self.cells.len() + self.ends.len() * 4 + 64);
        let line = |text: &mut String, cells: &mut dyn Iterator<Item = (&str, usize)>| {
            let start = text.len();
            for (i, (c, width)) in cells.enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(c);
                if i + 1 < n {
                    text.extend(std::iter::repeat_n(' ', self.widths[i] - width));
                }
            }
            let kept = text[start..].trim_end().len();
            text.truncate(start + kept);
            text.push('\n');
        };
        line(&mut text, &mut self.headers.iter().map(|h| (*h, h.len())));
        let mut start = 0;
        for row in self.ends.chunks(n) {
            let mut cells = row.iter().map(|&(end, width)| {
                let c = &self.cells[start..end];
                start = end;
                (c, width)
            });
            line(&mut text, &mut cells);
        }
        text
    }
}

pub(crate) fn short(checksum: &str) -> String {
    match checksum.split_once(':') {
        Some((alg, hex)) if hex.len() > 16 => format!("{alg}:{}…", &hex[..16]),
        _ => checksum.to_string(),
    }
}

pub fn recovery_note(r: &Recovery) {
    if r.leftovers_removed > 0 {
        eprintln!("note: removed {} leftover(s) of interrupted runs", r.leftovers_removed);
    }
    for p in &r.completed {
        eprintln!("note: finished the interrupted install of {p}");
    }
    for p in &r.rolled_back {
        eprintln!("note: rolled back the interrupted install of {p}; the previous state was kept");
    }
    for p in &r.activated {
        eprintln!(
            "note: {p} is now active: the highest installed version of a pack installed before attune kept \
             active versions (`attune activate` picks another)"
        );
    }
}

impl Output {
    pub fn installed(&self, r: &InstallReport) -> anyhow::Result<()> {
        // On stderr whatever the mode: stdout stays the report alone.
        for n in &r.notes {
            eprintln!("note: {}", e(n));
        }
        if self.json {
            return print_json(r);
        }
        outln!("{} {} {}", if r.replaced { "reinstalled" } else { "installed" }, r.pack_ref, r.version);
        outln!("  path      {}", r.path.display());
        outln!("  checksum  {}", r.checksum);
        outln!("  files     {} ({})", r.files, HumanBytes(r.bytes));
        outln!("  source    {} {}", r.source_type, r.source);
        outln!("  fetcher   {} {}", r.fetcher.name, r.fetcher.version);
        if let Some(env) = &r.environment {
            outln!("  env       {} ({})", env.path.display(), env.record.summary());
            for n in &env.notes {
                outln!("            {n}");
            }
        }
        match r.activated {
            true => outln!("  active    yes ({} links to it)", r.pack_ref),
            false => outln!(
                "  active    no: another version of {} is active; switch with `attune activate {}@{}`",
                r.pack_ref,
                r.pack_ref,
                r.version
            ),
        }
        Ok(())
    }

    /// What `--ignore-runtime-requirements` let through, on stderr (JSON
    /// output carries it as `ignored_runtime_requirements`).
    pub fn ignored_runtime_requirements(&self, lines: &[String]) {
        if self.json || lines.is_empty() {
            return;
        }
        eprintln!(
            "warning: installed although runtime requirements are not met ({}):",
            attune_app::interpreters::IGNORE_FLAG
        );
        for l in lines {
            eprintln!("  {l}");
        }
    }

    /// `attune list`: a table, or with `--json` every field of each
    /// installed version and `active`. The rows stream from the database
    /// one at a time into the text (for the table, only what it shows: see
    /// `Db::listing_rows`), and the text is written once at the end, so an
    /// error part-way prints none of it.
    pub async fn list(&self, ctx: &attune_app::context::Context, all_hosts: bool) -> anyhow::Result<()> {
        if self.json {
            use serde::ser::{SerializeSeq as _, Serializer as _};
            // What `print_json` of all the rows at once would print.
            let mut text = Vec::new();
            let mut json = serde_json::Serializer::pretty(&mut text);
            let mut rows = json.serialize_seq(None)?;
            attune_app::packs::list_each(ctx, all_hosts, |l: Listed| {
                rows.serialize_element(&l.slim_json()).map_err(anyhow::Error::from)
            })
            .await?;
            rows.end()?;
            outln!("{}", String::from_utf8(text)?);
            return Ok(());
        }
        let mut table = ListTable::new(all_hosts);
        attune_app::packs::list_rows(ctx, all_hosts, |row| {
            table.push(&row);
            Ok::<_, anyhow::Error>(())
        })
        .await?;
        if table.rows == 0 {
            outln!("no packs installed (install one with `attune install <source>`)");
            return Ok(());
        }
        out!("{}", table.finish());
        Ok(())
    }

    pub fn info(&self, p: &PackInfo) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({
                "ref": p.pack_ref, "name": p.name, "description": p.description,
                "installed": p.installed.iter().map(slim_json).collect::<Vec<_>>(),
                "history": p.history.iter().map(slim_json).collect::<Vec<_>>(),
            }));
        }
        outln!("{} ({})", p.pack_ref, p.name);
        if let Some(d) = &p.description {
            outln!("  {d}");
        }
        if p.installed.is_empty() {
            outln!("\nnot installed on this host");
        }
        for i in &p.installed {
            outln!();
            outln!("version      {}", i.version);
            outln!("path         {}", i.storage_path);
            outln!("source       {} {}", i.source_type, i.source);
            if let Some(c) = &i.resolved_commit {
                outln!("commit       {}", e(c));
            }
            outln!("checksum     {}", i.checksum);
            outln!(
                "verified     {}",
                match (&i.verify_status, &i.verified_at) {
                    (Some(s), Some(t)) => format!("{s} at {}", when(t)),
                    _ if i.verified => "checksum matched the expected one at install".to_string(),
                    _ => "never".to_string(),
                }
            );
            outln!("installed    {} by {} via {} on {}", when(&i.installed_at), i.installed_by, i.method, i.host);
            outln!("fetcher      {} {}", e(&i.fetcher_name), e(&i.fetcher_version));
            if let Some(t) = i.metadata_json.get("index_trust").filter(|t| !t.is_null()) {
                let keys: Vec<&str> =
                    t["key_ids"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
                outln!(
                    "signed by    index {} (targets v{}), keys {}",
                    e(t["index"].as_str().unwrap_or("?")),
                    t["targets_version"],
                    e(&keys.join(", "))
                );
            }
            match attune_app::environments::EnvRecord::of_metadata(&i.metadata_json) {
                Ok(Some(env)) => {
                    outln!("environment  {}", e(&env.summary()));
                    if let Some(p) = &env.python {
                        for r in &p.lock.requirements {
                            outln!("  {} {} ({})", e(&r.name), e(&r.version), e(&r.hashes.join(", ")));
                        }
                    }
                    if let Some(n) = &env.node {
                        for pkg in &n.lock.packages {
                            outln!("  {} {}", e(&pkg.path), e(pkg.version.as_deref().unwrap_or("-")));
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => outln!("environment  (unreadable record: {})", e(&err)),
            }
        }
        outln!("\nhistory");
        let rows: Vec<Vec<String>> = p
            .history
            .iter()
            .map(|i| {
                vec![
                    i.id.to_string(),
                    when(&i.installed_at),
                    i.action.to_string(),
                    i.version.clone(),
                    i.status.to_string(),
                    i.host.clone(),
                ]
            })
            .collect();
        table(&["ID", "WHEN", "ACTION", "VERSION", "STATUS", "HOST"], &rows);
        Ok(())
    }

    /// Returns whether every pack was intact.
    pub fn verify(&self, reports: &[VerifyReport]) -> anyhow::Result<bool> {
        let ok = reports.iter().all(|r| r.status == VerifyStatus::Ok);
        if self.json {
            print_json(&serde_json::json!({ "ok": ok, "packs": reports }))?;
            return Ok(ok);
        }
        if reports.is_empty() {
            outln!("no packs installed; nothing to verify");
        }
        for r in reports {
            match r.status {
                VerifyStatus::Ok => outln!("ok        {} {}", r.pack_ref, r.version),
                VerifyStatus::Missing => outln!("MISSING   {} {}: {} is gone", r.pack_ref, r.version, r.path),
                VerifyStatus::Tampered => {
                    outln!("TAMPERED  {} {}: {}", r.pack_ref, r.version, r.path);
                    for c in &r.changes {
                        outln!("  {c}");
                    }
                    for d in &r.environment {
                        outln!("  environment: {}", attune_app::untrusted::escape(d));
                    }
                }
            }
        }
        if !ok {
            eprintln!(
                "error: some packs do not match their installed checksum; reinstall them with `attune install --force <source>`"
            );
        }
        Ok(ok)
    }

    pub fn uninstalled(&self, r: &UninstallReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        outln!("uninstalled {} {} (removed {})", r.pack_ref, r.version, r.path);
        if r.deactivated {
            outln!("{} has no active version now", r.pack_ref);
        }
        Ok(())
    }

    pub fn locked(&self, path: &std::path::Path, lock: &attune_app::lockfile::Lockfile) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({ "path": path, "lockfile": lock }));
        }
        outln!("wrote {} ({} packs)", path.display(), lock.packs.len());
        Ok(())
    }

    pub fn synced(&self, r: &attune_app::lockfile::SyncReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        use attune_app::lockfile::Action;
        for s in &r.plan {
            let verb = match (&s.action, r.dry_run) {
                (Action::Keep, _) => "keep",
                (Action::Install, true) => "would install",
                (Action::Install, false) => "installed",
                (Action::Remove, true) => "would remove",
                (Action::Remove, false) => "removed",
            };
            outln!("{verb} {}@{} ({})", s.pack_ref, s.version, s.checksum);
        }
        if r.plan.is_empty() {
            outln!("nothing installed and nothing locked");
        }
        Ok(())
    }

    pub fn switched(&self, s: &Switch, verb: &str) -> anyhow::Result<()> {
        if self.json {
            return print_json(s);
        }
        match (s.changed, &s.previous_version) {
            (false, _) => outln!("{} {} is already active", s.pack_ref, s.version),
            (true, Some(p)) => outln!("{verb} {}: {} is active (was {p})", s.pack_ref, s.version),
            (true, None) => outln!("{verb} {}: {} is active", s.pack_ref, s.version),
        }
        Ok(())
    }

    pub fn upgraded(&self, r: &UpgradeReport) -> anyhow::Result<()> {
        if self.json {
            return print_json(r);
        }
        if !r.upgraded {
            outln!("{} is already at the newest version ({})", r.pack_ref, r.from);
            return Ok(());
        }
        outln!(
            "upgraded {} {} -> {} (verified; {} is kept, `attune rollback {}` returns to it)",
            r.pack_ref,
            r.from,
            r.to,
            r.from,
            r.pack_ref
        );
        if !r.installed {
            outln!("  {} {} was already installed; it was switched to", r.pack_ref, r.to);
        }
        for d in &r.dependencies {
            outln!("  installed dependency {d}");
        }
        Ok(())
    }

    /// Returns whether every removal worked.
    pub fn gc(&self, r: &GcReport) -> anyhow::Result<bool> {
        let ok = r.items.iter().all(|i| i.error.is_none());
        if self.json {
            print_json(r)?;
            return Ok(ok);
        }
        if r.items.is_empty() {
            outln!("nothing to remove (keeping {} versions of each pack and the active one)", r.keep);
            return Ok(true);
        }
        for i in &r.items {
            match (&i.error, r.dry_run) {
                (Some(e), _) => outln!("FAILED   {} {}: {e}", i.pack_ref, i.version),
                (None, true) => outln!("would remove {} {} ({})", i.pack_ref, i.version, i.path),
                (None, false) => outln!("removed  {} {} ({})", i.pack_ref, i.version, i.path),
            }
        }
        Ok(ok)
    }

    /// Returns whether nothing was wrong (or everything was repaired).
    pub fn doctor(&self, r: &DoctorReport, repair: bool) -> anyhow::Result<bool> {
        let clean = r.findings.iter().all(|f| match f {
            Finding::Missing { repaired, .. }
            | Finding::Orphan { repaired, .. }
            | Finding::MissingEnvironment { repaired, .. }
            | Finding::OrphanEnvironment { repaired, .. } => *repaired,
        });
        if self.json {
            print_json(r)?;
            return Ok(clean);
        }
        if r.findings.is_empty() {
            outln!("ok: disk and database agree");
        }
        for f in &r.findings {
            match f {
                Finding::Missing { pack, path, repaired } => outln!(
                    "{pack}: recorded as installed but {path} is missing{}",
                    if *repaired { "; recorded as uninstalled" } else { "" }
                ),
                Finding::Orphan { path, repaired } => {
                    outln!("{path}: not recorded as installed{}", if *repaired { "; removed" } else { "" })
                }
                Finding::MissingEnvironment { pack, path, repaired, error } => outln!(
                    "{pack}: its environment {path} is missing{}",
                    match (repaired, error) {
                        (true, _) => "; built again from its recorded lock".to_string(),
                        (false, Some(e)) => format!("; could not be built again: {e}"),
                        (false, None) => String::new(),
                    }
                ),
                Finding::OrphanEnvironment { path, repaired } => outln!(
                    "{path}: an environment no installed version accounts for{}",
                    if *repaired { "; removed" } else { "" }
                ),
            }
        }
        if !clean && !repair {
            eprintln!("error: disk and database disagree; run `attune doctor --repair` to fix them");
        }
        Ok(clean)
    }

    pub fn checksum(&self, path: &Path, c: &Computed, format: ChecksumFormat) -> anyhow::Result<()> {
        let value = match c {
            Computed::Tree(m) => serde_json::to_value(m)?,
            Computed::File { checksum, size } => serde_json::json!({ "digest": checksum.to_string(), "size": size }),
        };
        match format {
            ChecksumFormat::Json => print_json(&value),
            ChecksumFormat::Yaml => {
                out!("{}", serde_yaml_ng::to_string(&value)?);
                Ok(())
            }
            ChecksumFormat::Table => {
                if let Computed::Tree(m) = c {
                    let rows: Vec<Vec<String>> = m
                        .entries
                        .iter()
                        .map(|e| {
                            let what = match e.kind {
                                EntryKind::File | EntryKind::Executable => e.sha256.clone().unwrap_or_default(),
                                EntryKind::Symlink => format!("-> {}", e.target.clone().unwrap_or_default()),
                                EntryKind::Dir => String::new(),
                            };
                            vec![e.kind.to_string(), e.size.to_string(), what, e.path.clone()]
                        })
                        .collect();
                    table(&["KIND", "SIZE", "SHA256/TARGET", "PATH"], &rows);
                    outln!();
                }
                outln!("{}  {}", c.checksum(), path.display());
                Ok(())
            }
        }
    }

    /// A registry index entry for the pack at `path`, to fill in and publish.
    pub fn index_entry(&self, path: &Path, c: &Computed) -> anyhow::Result<()> {
        let m = attune_app::manifest::read(path)?;
        print_json(&serde_json::json!({
            "ref": m.r#ref,
            "name": m.name,
            "version": m.version.to_string(),
            "description": m.description,
            "author": m.author,
            "email": m.email,
            "keywords": m.keywords,
            "tree_checksum": c.checksum().to_string(),
            "install_sources": [],
        }))
    }

    /// The token, once: on stdout alone (or in the JSON), notes on stderr.
    pub fn token_created(&self, t: &ApiToken, token: &str) -> anyhow::Result<()> {
        if self.json {
            let mut v = serde_json::to_value(t)?;
            v["token"] = token.into();
            return print_json(&v);
        }
        outln!("{token}");
        eprintln!(
            "created token {:?} with scope {}{}; it is shown only now: store it (send it as `Authorization: Bearer <token>`)",
            t.name,
            t.scope,
            t.expires_at.map(|e| format!(", expiring {}", when(&e))).unwrap_or_default()
        );
        Ok(())
    }

    pub fn tokens(&self, rows: &[ApiToken]) -> anyhow::Result<()> {
        if self.json {
            return print_json(rows);
        }
        if rows.is_empty() {
            outln!("no tokens (make one with `attune token create --name NAME --scope read|install|admin`)");
            return Ok(());
        }
        let now = time::OffsetDateTime::now_utc();
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|t| {
                let state = match (&t.revoked_at, &t.expires_at) {
                    (Some(r), _) => format!("revoked {}", when(r)),
                    (None, Some(e)) if *e <= now => "expired".to_string(),
                    _ => "live".to_string(),
                };
                vec![
                    t.name.clone(),
                    t.scope.clone(),
                    format!("{} by {}", when(&t.created_at), t.created_by),
                    t.expires_at.as_ref().map(when).unwrap_or_else(|| "never".into()),
                    t.last_used_at.as_ref().map(when).unwrap_or_else(|| "never".into()),
                    state,
                ]
            })
            .collect();
        table(&["NAME", "SCOPE", "CREATED", "EXPIRES", "LAST USED", "STATE"], &rows);
        Ok(())
    }

    pub fn token_revoked(&self, name: &str) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({ "revoked": name }));
        }
        outln!("revoked token {name:?}");
        Ok(())
    }

    /// The bound address, first on stdout, so scripts and tests can use port 0.
    pub fn serving(&self, b: &attune_api::Bound) {
        if self.json {
            outln!("{}", serde_json::to_string(b).expect("serializes"));
        } else {
            outln!("listening on {}", b.url);
        }
    }

    pub fn plugins(&self, rows: &[PluginLine]) -> anyhow::Result<()> {
        if self.json {
            return print_json(rows);
        }
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.version.clone(),
                    r.wit_version.clone(),
                    r.schemes.join(","),
                    if r.capabilities.is_empty() { "-".into() } else { r.capabilities.join(",") },
                    r.kind.to_string(),
                    format!("{}…", &r.sha256[..12.min(r.sha256.len())]),
                ]
            })
            .collect();
        table(&["NAME", "VERSION", "WIT", "SCHEMES", "CAPABILITIES", "KIND", "SHA256"], &table_rows);
        Ok(())
    }

    pub fn plugin_added(&self, a: &Added) -> anyhow::Result<()> {
        if self.json {
            return print_json(a);
        }
        outln!("added plugin {} {} (sha256 {})", e(&a.plugin.name), e(&a.plugin.version), a.plugin.sha256);
        outln!("  schemes    {}", e(&a.plugin.schemes.join(", ")));
        outln!(
            "  asks for   {}",
            if a.requested.is_empty() { "nothing".to_string() } else { e(&a.requested.join(", ")).into_owned() }
        );
        outln!(
            "  granted    {}",
            if a.granted.is_empty() { "nothing".to_string() } else { e(&a.granted.join(", ")).into_owned() }
        );
        let missing: Vec<&String> = a.requested.iter().filter(|r| !a.granted.contains(r)).collect();
        if !missing.is_empty() {
            eprintln!(
                "note: not granted: {}; grant with `attune plugin grant {} --allow-host HOST` (or --read-input)",
                e(&missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                e(&a.plugin.name)
            );
        }
        Ok(())
    }

    pub fn plugin_info(&self, (p, grants): &(PluginRow, Vec<Grant>)) -> anyhow::Result<()> {
        if self.json {
            return print_json(&serde_json::json!({ "plugin": p, "grants": grants }));
        }
        outln!("{} {} — {}", e(&p.name), e(&p.version), e(&p.summary));
        outln!("  sha256     {}", p.sha256);
        outln!("  wit        attune:fetcher@{}", e(&p.wit_version));
        outln!("  schemes    {}", e(&p.schemes.join(", ")));
        outln!(
            "  asks for   {}",
            if p.capabilities.is_empty() { "nothing".to_string() } else { e(&p.capabilities.join(", ")).into_owned() }
        );
        outln!("  added      {} by {} from {}", when(&p.added_at), p.added_by, e(&p.added_from));
        outln!("\ngrants");
        let rows: Vec<Vec<String>> = grants
            .iter()
            .map(|g| {
                vec![
                    g.capability.clone(),
                    format!("{} by {}", when(&g.granted_at), g.granted_by),
                    match (&g.revoked_at, &g.revoked_by) {
                        (Some(t), Some(b)) => format!("revoked {} by {b}", when(t)),
                        _ => "live".to_string(),
                    },
                ]
            })
            .collect();
        table(&["CAPABILITY", "GRANTED", "STATE"], &rows);
        Ok(())
    }

    pub fn plugin_removed(&self, p: &PluginRow) -> anyhow::Result<()> {
        if self.json {
            return print_json(p);
        }
        outln!("removed plugin {} {}", e(&p.name), e(&p.version));
        Ok(())
    }

    pub fn grants(&self, name: &str, live: &[Grant]) -> anyhow::Result<()> {
        if self.json {
            return print_json(live);
        }
        let caps: Vec<&str> = live.iter().map(|g| g.capability.as_str()).collect();
        outln!("{name} may now use: {}", if caps.is_empty() { "nothing".to_string() } else { caps.join(", ") });
        Ok(())
    }
}

/// One row of `plugin list`.
#[derive(Debug, Serialize)]
pub struct PluginLine {
    pub name: String,
    pub version: String,
    pub wit_version: String,
    pub schemes: Vec<String>,
    pub capabilities: Vec<String>,
    /// `built-in` or `added`.
    pub kind: &'static str,
    pub sha256: String,
    /// For added plugins: what the operator granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<String>>,
}

impl PluginLine {
    pub fn builtin(info: PluginInfo, sha256: String) -> PluginLine {
        PluginLine {
            capabilities: info.capabilities.iter().map(|c| c.to_string()).collect(),
            name: info.name,
            version: info.version,
            wit_version: info.wit_version,
            schemes: info.schemes,
            kind: "built-in",
            sha256,
            granted: None,
        }
    }

    pub fn added(p: PluginRow, granted: Vec<String>) -> PluginLine {
        PluginLine {
            name: p.name,
            version: p.version,
            wit_version: p.wit_version,
            schemes: p.schemes,
            capabilities: p.capabilities,
            kind: "added",
            sha256: p.sha256,
            granted: Some(granted),
        }
    }
}

#[cfg(test)]
mod tests {
    use attune_app::db::ListedRow;
    use attune_app::source::SourceKind;

    use super::*;

    /// What `attune list` printed through [`table`] before it had
    /// [`ListTable`]; the two must agree on every row.
    fn through_table(rows: &[ListedRow], all_hosts: bool) -> String {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.pack_ref.clone(),
                    r.version.clone(),
                    if r.active { "*".into() } else { String::new() },
                    r.source_type.to_string(),
                    when(&r.installed_at),
                    short(&r.checksum),
                ];
                if all_hosts {
                    row.push(r.host.clone());
                }
                row
            })
            .collect();
        let headers: &[&str] = match all_hosts {
            true => &["REF", "VERSION", "ACTIVE", "SOURCE", "INSTALLED", "CHECKSUM", "HOST"],
            false => &["REF", "VERSION", "ACTIVE", "SOURCE", "INSTALLED", "CHECKSUM"],
        };
        table_text(headers, &cells)
    }

    #[test]
    fn the_list_table_is_the_table_of_its_cells() {
        let row = |pack_ref: &str, version: &str, host: &str, checksum: &str, active: bool, ms: i64| ListedRow {
            pack_ref: pack_ref.into(),
            version: version.into(),
            host: host.into(),
            source_type: SourceKind::Git,
            installed_at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
            checksum: checksum.into(),
            active,
        };
        let rows = [
            row("a", "1.0.0", "h", "sha256-tree-v1:0123456789abcdef0123456789abcdef", true, 0),
            // Wider than its header, non-ASCII (widths in chars), escaped.
            row("überlong_pack_name", "10.20.30-rc.1", "host\u{1b}[2J", "short:abc", false, 1_700_000_000_123),
            // Empty last cells: the line's trailing spaces go.
            row("b", "2", "", "", false, 253_402_300_799_000),
            row("c\u{202e}d", "3.0.0", "ü", "x:y:0123456789abcdefff", true, 86_400_000),
        ];
        for all_hosts in [false, true] {
            let mut table = ListTable::new(all_hosts);
            for r in &rows {
                table.push(r);
            }
            assert_eq!(table.rows, rows.len());
            assert_eq!(table.finish(), through_table(&rows, all_hosts), "all_hosts: {all_hosts}");
        }
    }
}
