//! Command-line parsing and dispatch: flags become settings, results become
//! tables (or JSON with `--json`), errors become `error: …` and a non-zero exit.

/// `println!` that ends the process quietly when stdout is closed (`attune
/// list | head -1`), instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

/// `print!` with the same broken-pipe handling as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}

mod discover;
mod indexes;
mod output;
mod progress;
mod publish;
mod set_progress;
mod tuf_publish;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, FileConfig};
use anyhow::Context as _;
use attune_app::context::{Context, Settings};
use attune_app::db::Channel;
use attune_app::install::InstallRequest;
use attune_app::packs::PackSpec;
use attune_app::request::Target;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "attune", version, about = "Install automation packs with every fetcher sandboxed in WebAssembly")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Where packs are stored, as {ref}-{version}/ folders.
    #[arg(long, global = true, env = "ATTUNE_PACKS_DIR", value_name = "DIR")]
    packs_dir: Option<PathBuf>,
    /// Where packs' runtime environments are kept (default: {packs_dir}-envs).
    #[arg(long, global = true, env = "ATTUNE_ENVS_DIR", value_name = "DIR")]
    envs_dir: Option<PathBuf>,
    /// Metadata database, e.g. sqlite:///var/lib/attune/attune.db.
    #[arg(long, global = true, env = "ATTUNE_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// Compiled-plugin cache.
    #[arg(long, global = true, env = "ATTUNE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Config file (default: {config_dir}/attune/config.toml).
    #[arg(long, global = true, env = "ATTUNE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The name installs are recorded under (default: the hostname). Hosts
    /// sharing one database must each have their own.
    #[arg(long, global = true, env = "ATTUNE_HOST_NAME", value_name = "NAME")]
    host_name: Option<String>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Show fetcher logs and debug output.
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install a pack from a folder, an archive or a URL.
    Install(InstallArgs),
    /// List the packs installed on this host.
    List {
        /// Every host sharing the database, not just this one.
        #[arg(long)]
        all_hosts: bool,
    },
    /// Show an installed pack and its history.
    Info {
        /// ref or ref@version
        pack: String,
    },
    /// Re-checksum installed packs and report what changed.
    Verify {
        /// refs or ref@version (default: every installed pack)
        packs: Vec<String>,
    },
    /// Remove an installed pack version.
    Uninstall {
        /// ref or ref@version
        pack: String,
        /// Remove the active version even though other versions are installed
        /// (the pack is then left with no active version).
        #[arg(long)]
        force: bool,
    },
    /// Make an installed version the active one ({packs_dir}/{ref} links to it).
    Activate {
        /// ref@version
        pack: String,
    },
    /// Install a newer version beside the active one, switch to it and verify it;
    /// any failure rolls back to the old version.
    Upgrade(UpgradeArgs),
    /// Find packs in the cached indexes by ref, name, description and keywords.
    Search {
        /// Words that must all match (none: every pack).
        terms: Vec<String>,
    },
    /// What the indexes offer of a pack (versions, sources, checksums,
    /// dependencies, runtime requirements) and what of it is installed here.
    Show {
        /// ref or ref@range (ref=version too)
        pack: String,
    },
    /// Installed packs an index has a newer version of; exits 1 when there is any.
    Outdated,
    /// Return to the version that was active before the current one.
    Rollback {
        /// ref
        pack: String,
    },
    /// Remove old, inactive versions beyond the N most recent of each pack.
    Gc {
        /// How many versions of each pack to keep (default: gc_keep in the config, else 3);
        /// the active version is always kept as well.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Show what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Work with pack folders that are not installed.
    #[command(subcommand)]
    Pack(PackCommand),
    /// Source fetcher plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Registry indexes to install packs from by name (`attune install ref@range`).
    #[command(subcommand)]
    Index(indexes::IndexCommand),
    /// Write a lockfile of every pack installed on this host.
    Lock {
        /// Where to write it.
        #[arg(long, short, value_name = "FILE", default_value = "attune.lock")]
        output: PathBuf,
    },
    /// Make this host match a lockfile exactly (installs, removes, checks checksums).
    Sync(SyncArgs),
    /// Check that disk and database agree; --repair makes them.
    Doctor {
        #[arg(long)]
        repair: bool,
    },
    /// Serve the HTTP API (see docs/openapi.json); prints the bound address first.
    Serve(ServeArgs),
    /// Bearer tokens for the HTTP API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script (e.g. `attune completions bash > /etc/bash_completion.d/attune`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `attune man > /usr/local/share/man/man1/attune.1`).
    Man,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Install exactly what the lockfile lists, held to its checksums (required:
    /// sync has no other mode yet).
    #[arg(long)]
    locked: bool,
    /// The lockfile.
    #[arg(long, value_name = "FILE", default_value = "attune.lock")]
    file: PathBuf,
    /// Print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Install from the artifact cache only; never touch the network.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `10s`, `2m`, … for clap.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    match crate::config::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = attune_api::DEFAULT_LISTEN)]
    listen: String,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (tokens cross the network in clear).
    #[arg(long)]
    insecure: bool,
    /// Allow installing from paths on this machine, only under DIR.
    #[arg(long, value_name = "DIR")]
    allow_local_source: Option<PathBuf>,
    /// Installs that run at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_concurrent_installs: usize,
    /// Installs that may wait for a free slot; more are refused with 429.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_queued: usize,
    /// A host API installs may reach even if it is a private or loopback
    /// address (`host` any port, `host:port` that one); repeatable; added to
    /// the config's `allow_hosts`.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Time a client has to send a request's headers (also bounds an idle
    /// keep-alive connection waiting for its next request).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    header_timeout: std::time::Duration,
    /// Time a client has to send a request's body.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    body_timeout: std::time::Duration,
    /// A response the client does not read for this long closes the connection.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    idle_timeout: std::time::Duration,
    /// Open connections at most; more wait in the kernel's backlog.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// On SIGTERM/SIGINT, how long running installs and open connections
    /// get to finish before the server exits anyway.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    shutdown_deadline: std::time::Duration,
    /// Time a TLS client has to finish its handshake.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    handshake_timeout: std::time::Duration,
    /// Limits of every install the server runs.
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once and only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        /// read (list and show), install (also install, uninstall, verify), admin (everything).
        #[arg(long)]
        scope: String,
        /// A duration (30d, 12h, 2w) or an RFC 3339 time; default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// List live tokens (never their secrets); --all adds revoked ones.
    List {
        #[arg(long)]
        all: bool,
    },
    /// Revoke the live token with this name.
    Revoke { name: String },
}

async fn token_command(ctx: &Context, out: &output::Output, cmd: TokenCommand) -> anyhow::Result<()> {
    use attune_api::auth;
    match cmd {
        TokenCommand::Create { name, scope, expires } => {
            let scope: auth::Scope = scope.parse().map_err(|e: String| anyhow::anyhow!("--scope: {e}"))?;
            let expires = expires
                .as_deref()
                .map(|e| auth::parse_expiry(e, time::OffsetDateTime::now_utc()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires {e}"))?;
            if let Some(t) = expires
                && t <= time::OffsetDateTime::now_utc()
            {
                anyhow::bail!("--expires {t}: that is in the past; a token must expire in the future");
            }
            let (row, token) = auth::create(&ctx.db, &name, scope, expires, &ctx.user).await?;
            out.token_created(&row, &token)
        }
        TokenCommand::List { all } => out.tokens(&ctx.db.tokens(all).await?),
        TokenCommand::Revoke { name } => {
            if !ctx.db.revoke_token(&name, &ctx.user).await? {
                anyhow::bail!("no live token named {name:?} (see `attune token list`)");
            }
            out.token_revoked(&name)
        }
    }
}

#[derive(Debug, Args)]
struct UpgradeArgs {
    /// The packs' refs; several are upgraded one after the other, each on
    /// its own (one failing rolls back that pack alone).
    #[arg(value_name = "PACK", required_unless_present = "all")]
    packs: Vec<String>,
    /// Every pack active on this host.
    #[arg(long, conflicts_with = "packs")]
    all: bool,
    /// A version or range (default: the highest version newer than the active one).
    #[arg(long, value_name = "VERSION|RANGE", conflicts_with = "from")]
    to: Option<String>,
    /// Install this folder, archive or URL instead of asking the indexes.
    #[arg(long, value_name = "SOURCE")]
    from: Option<String>,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Args)]
struct InstallArgs {
    /// A pack folder (./my_pack), an archive (./pack.tar.gz, .tgz, .tar, .tar.zst, .tar.xz, .zip),
    /// an http(s) URL of one, a git repository (git+https://host/org/repo.git), or a pack
    /// from the configured indexes: ref, ref@1.2.3 (or st2's ref=1.2.3) or ref@^1.2 (an
    /// existing path wins). Several: the packs by name are solved and installed as one
    /// set, other sources one by one; each is reported.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
    /// Replace an installed copy of the same version.
    #[arg(long)]
    force: bool,
    /// Refuse unless the pack's tree checksum is this (sha256-tree-v1:…, or Attune's
    /// legacy attune-pack-file-v1:…), or, for an archive or URL, the archive's SHA-256
    /// (sha256:…; a mismatch installs nothing).
    #[arg(long, value_name = "CHECKSUM")]
    checksum: Option<String>,
    /// Fetch with this fetcher component instead of a built-in one (for
    /// plugin authors trying a build).
    #[arg(long, value_name = "FILE.wasm")]
    plugin_file: Option<PathBuf>,
    /// Fetch with this added plugin (default: the one whose scheme the source uses).
    #[arg(long, value_name = "NAME")]
    plugin: Option<String>,
    /// Branch, tag or commit (full or abbreviated) of a git source; default: the remote HEAD.
    #[arg(long = "ref", value_name = "REF")]
    reference: Option<String>,
    /// For a pack installed by name: install just it, not the dependencies its index lists.
    #[arg(long)]
    skip_deps: bool,
    /// Never touch the network: an http(s) archive or a git tree is installed from
    /// the artifact cache (filled by earlier online installs), a pack by name
    /// resolves against the cached indexes; anything not cached fails. A signed
    /// index is read from its trusted metadata, refused once that expired.
    #[arg(long)]
    offline: bool,
    /// With --offline: use a signed index even when its trusted metadata has
    /// expired (the install warns which roles were expired).
    #[arg(long, requires = "offline")]
    allow_expired: bool,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What a download may reach and what an install may overlook: the same for
/// `install`, `upgrade` and `sync`.
#[derive(Debug, Args)]
struct FetchArgs {
    /// Let downloads reach this host too (redirects, mirrors); repeatable.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Allow plain http:// to hosts that are not loopback.
    #[arg(long)]
    allow_insecure_http: bool,
    /// Install even if this host's python / node do not meet a pack's runtime
    /// requirements (or they cannot be read); says what it ignored.
    #[arg(long, alias = "ignore-runtime")]
    ignore_runtime_requirements: bool,
    /// Trust this CA (a PEM file) too, besides the system store and the
    /// config's `tls.ca_files`; repeatable.
    #[arg(long, value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// Install the pack without its runtime environment (Python virtualenv,
    /// node_modules).
    #[arg(long)]
    no_env: bool,
    /// Build the environment afresh, not linked from another version's.
    #[arg(long)]
    rebuild_env: bool,
    /// Let a requirement without a wheel be built from source (runs its build
    /// code, e.g. setup.py).
    #[arg(long)]
    allow_source_builds: bool,
    /// Also install requirements-tests.txt.
    #[arg(long)]
    with_tests: bool,
    /// A package.json without a lockfile is resolved (not reproducible).
    #[arg(long)]
    allow_unlocked: bool,
}

impl FetchArgs {
    fn env(&self) -> Result<attune_app::environments::EnvOptions, attune_app::Error> {
        let args = attune_app::request::EnvArgs {
            no_env: self.no_env,
            rebuild_env: self.rebuild_env,
            allow_source_builds: self.allow_source_builds,
            with_tests: self.with_tests,
            allow_unlocked: self.allow_unlocked,
        };
        attune_app::request::env_options(Channel::Cli, &args)
    }

    /// The hosts given here and the config's, for an install request.
    fn allow_hosts(&self, config: &[String]) -> Vec<String> {
        self.allow_host.iter().chain(config).cloned().collect()
    }
}

#[derive(Debug, Args)]
struct LimitArgs {
    /// Fetcher memory limit, e.g. 256MiB.
    #[arg(long, value_name = "SIZE")]
    limit_memory: Option<String>,
    /// Fetcher wall-time limit, e.g. 300s.
    #[arg(long, value_name = "DURATION")]
    limit_time: Option<String>,
    /// Most bytes a pack may have, e.g. 1GiB.
    #[arg(long, value_name = "SIZE")]
    limit_bytes: Option<String>,
    /// Most files and folders a pack may have.
    #[arg(long, value_name = "N")]
    limit_files: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum PackCommand {
    /// Print a pack folder's tree checksum (or a file's SHA-256).
    Checksum {
        path: PathBuf,
        /// Output format; --json instead prints a registry index entry template.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print the Attune registry index entry of a pack folder (publishing from CI).
    IndexEntry(publish::EntryArgs),
    /// Add or replace a pack folder's entry in an Attune index file (created if missing).
    IndexUpdate(publish::UpdateArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List the source fetchers, their versions and capabilities.
    List,
    /// Add a third-party fetcher component; shows what it asks for and grants
    /// only what you allow.
    Add {
        /// The component: a .wasm file, or an http(s) URL of one (downloaded
        /// through the sandboxed http fetcher).
        file: String,
        /// Refuse a download unless its SHA-256 is this (sha256:<hex>).
        #[arg(long, value_name = "CHECKSUM")]
        checksum: Option<String>,
        /// Grant this outbound host (one the plugin asks for); repeatable.
        #[arg(long, value_name = "HOST")]
        allow_host: Vec<String>,
        /// Grant everything the plugin asks for, without asking.
        #[arg(long)]
        yes: bool,
        /// Trust this CA (a PEM file) too for the download; repeatable.
        #[arg(long, value_name = "FILE")]
        ca_cert: Vec<PathBuf>,
    },
    /// Show an added plugin: hash, schemes, requests and grants.
    Info { name: String },
    /// Remove an added plugin (its grants are revoked, and kept as history).
    Remove { name: String },
    /// Grant an added plugin hosts it asks for (or read access, or larger limits).
    Grant {
        name: String,
        #[command(flatten)]
        what: GrantArgs,
    },
    /// Take grants away from an added plugin.
    Revoke {
        name: String,
        #[command(flatten)]
        what: GrantArgs,
    },
}

/// What `plugin grant` gives and `plugin revoke` takes away.
#[derive(Debug, Args)]
struct GrantArgs {
    /// An outbound host the plugin asks for; repeatable.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Reading a local file or folder the source names.
    #[arg(long)]
    read_input: bool,
    /// The larger limits the plugin asks for.
    #[arg(long)]
    larger_limits: bool,
}

async fn set_grants(
    ctx: &Context,
    name: &str,
    what: &GrantArgs,
    allow: bool,
) -> Result<Vec<attune_app::db::Grant>, attune_app::Error> {
    attune_app::plugins::set_grants(ctx, name, &what.allow_host, what.read_input, what.larger_limits, allow).await
}

async fn plugin_command(ctx: &Context, out: &output::Output, cmd: PluginCommand) -> anyhow::Result<()> {
    use attune_app::plugins;
    match cmd {
        PluginCommand::List => {
            let mut rows = Vec::new();
            for b in attune_app::builtins::BUILTINS {
                let p = b.load(&ctx.runtime).await?;
                rows.push(output::PluginLine::builtin(p.info, p.sha256));
            }
            for p in ctx.db.plugins().await? {
                let grants = ctx.db.grants(&p.name, false).await?.into_iter().map(|g| g.capability).collect();
                rows.push(output::PluginLine::added(p, grants));
            }
            out.plugins(&rows)
        }
        PluginCommand::Add { file, checksum, allow_host, yes, .. } => {
            let wasm = if attune_app::source::is_http_url(&file) {
                let expected = checksum
                    .as_deref()
                    .map(|c| c.parse::<attune_app::checksum::Checksum>().with_context(|| format!("--checksum {c:?}")))
                    .transpose()?
                    .map(|c| c.to_hex());
                let options = attune_app::sources::SourceOptions { expected_sha256: expected, ..Default::default() };
                attune_app::install::download(ctx, &file, options, &ctx.limits).await?
            } else {
                if checksum.is_some() {
                    anyhow::bail!("--checksum applies to a plugin downloaded from a URL");
                }
                std::fs::read(&file).with_context(|| file.clone())?
            };
            let origin = attune_app::sources::redact_url(&file);
            let mut grant_all = yes;
            let mut shown = None;
            if !yes && allow_host.is_empty() && std::io::stdin().is_terminal() && !out.json {
                // Show what it asks for before granting anything; what is
                // granted is what was shown (add_bytes checks it still is).
                let p = ctx.runtime.load("plugin", &wasm).await?;
                let asks: Vec<String> = p.info.capabilities.iter().map(|c| c.to_string()).collect();
                if !asks.is_empty() {
                    let e = |s: &str| attune_app::untrusted::escape(s).into_owned();
                    eprint!("plugin {} asks for: {}\ngrant all of it? [y/N] ", e(&p.info.name), e(&asks.join(", ")));
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    grant_all = matches!(answer.trim(), "y" | "Y" | "yes");
                }
                shown = Some(asks);
            }
            out.plugin_added(&plugins::add_bytes(ctx, &wasm, &origin, &allow_host, grant_all, shown.as_deref()).await?)
        }
        PluginCommand::Info { name } => out.plugin_info(&plugins::info(ctx, &name).await?),
        PluginCommand::Remove { name } => out.plugin_removed(&plugins::remove(ctx, &name).await?),
        PluginCommand::Grant { name, what } => out.grants(&name, &set_grants(ctx, &name, &what, true).await?),
        PluginCommand::Revoke { name, what } => out.grants(&name, &set_grants(ctx, &name, &what, false).await?),
    }
}

/// `attune install SOURCE…`. The packs by name are solved and installed as
/// one set (all or nothing, as one pack with its dependencies is); every other
/// source is installed on its own after them. Each is reported; one failing
/// does not stop the others, and the exit code says whether any failed.
async fn install_command(
    ctx: &Context,
    s: &Settings,
    file: &FileConfig,
    g: &Global,
    out: &output::Output,
    a: InstallArgs,
) -> anyhow::Result<ExitCode> {
    if let [source] = a.sources.as_slice() {
        let result = install_one(ctx, s, file, g, &a, source).await?;
        result.print(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.checksum.is_some() || a.reference.is_some() || a.plugin.is_some() || a.plugin_file.is_some() {
        anyhow::bail!(
            "--checksum, --ref, --plugin and --plugin-file apply to one source; install {} one at a time",
            a.sources.join(", ")
        );
    }
    let (by_name, others): (Vec<&String>, Vec<&String>) =
        a.sources.iter().partition(|source| attune_app::registry::is_spec(source));
    let mut outcomes: Vec<(String, anyhow::Result<Installed>)> = Vec::new();
    let mut report = |source: String, result: anyhow::Result<Installed>| -> anyhow::Result<()> {
        match &result {
            Ok(r) if !out.json => r.print(out)?,
            Err(e) if !out.json => eprintln!("error: {}", attune_app::untrusted::escape_lines(&error_text(e))),
            _ => {}
        }
        outcomes.push((source, result));
        Ok(())
    };
    if !by_name.is_empty() {
        let specs: Vec<&str> = by_name.iter().map(|s| s.as_str()).collect();
        let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
        let mode = set_progress::Mode::pick(g.json, std::io::stderr().is_terminal());
        let set = set_progress::SetDisplay::start(mode, g.verbose);
        let req = install_request(s, file, &a, "", None)?;
        let result =
            attune_app::by_name::install_set_by_name_with(ctx, &cache_dir, &specs, req, Some(set.sink()), a.skip_deps)
                .await;
        set.finish(result.is_ok());
        match result {
            Ok(all) => {
                for (spec, n) in specs.iter().zip(all) {
                    report(spec.to_string(), Ok(Installed::ByName(Box::new(n))))?;
                }
            }
            Err(e) => report(specs.join(" "), Err(e.into()))?,
        }
    }
    for source in others {
        let result = install_one(ctx, s, file, g, &a, source).await;
        report(source.clone(), result)?;
    }
    let failed: Vec<&str> = outcomes.iter().filter(|(_, r)| r.is_err()).map(|(s, _)| s.as_str()).collect();
    if out.json {
        let packs: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|(source, r)| match r {
                Ok(r) => serde_json::json!({ "source": source, "ok": true, "result": r.json() }),
                Err(e) => serde_json::json!({ "source": source, "ok": false, "error": error_text(e) }),
            })
            .collect();
        output::print_json(&serde_json::json!({ "packs": packs }))?;
    } else {
        let done = outcomes.len() - failed.len();
        match failed.is_empty() {
            true => eprintln!("installed all {done}: {}", a.sources.join(", ")),
            false => eprintln!("installed {done} of {}; failed: {}", outcomes.len(), failed.join(", ")),
        }
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The install request of `source` with the command's options.
fn install_request(
    s: &Settings,
    file: &FileConfig,
    a: &InstallArgs,
    source: &str,
    expected_checksum: Option<attune_app::checksum::Checksum>,
) -> Result<InstallRequest, attune_app::Error> {
    Ok(InstallRequest {
        force: a.force,
        expected_checksum,
        plugin_file: a.plugin_file.clone(),
        plugin: a.plugin.clone(),
        allow_hosts: a.fetch.allow_hosts(&file.allow_hosts),
        allow_insecure_http: a.fetch.allow_insecure_http,
        reference: a.reference.clone(),
        offline: a.offline,
        allow_expired: a.allow_expired,
        ignore_runtime_requirements: a.fetch.ignore_runtime_requirements,
        env: a.fetch.env()?,
        ..InstallRequest::new(source.to_owned(), s.limits, Channel::Cli)
    })
}

/// `attune upgrade PACK [--to|--from]`, or several packs / `--all`, each
/// through the one transactional upgrade.
async fn upgrade_command(
    ctx: &Context,
    s: &Settings,
    file: &FileConfig,
    g: &Global,
    out: &output::Output,
    a: UpgradeArgs,
) -> anyhow::Result<ExitCode> {
    let base = InstallRequest {
        allow_hosts: a.fetch.allow_hosts(&file.allow_hosts),
        allow_insecure_http: a.fetch.allow_insecure_http,
        ignore_runtime_requirements: a.fetch.ignore_runtime_requirements,
        env: a.fetch.env()?,
        ..InstallRequest::new("", s.limits, Channel::Cli)
    };
    let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
    let refs = a
        .packs
        .iter()
        .map(|p| Ok(attune_app::request::ref_only(Channel::Cli, attune_app::request::Command::Upgrade, p)?))
        .collect::<anyhow::Result<Vec<String>>>()?;
    if let ([pack_ref], false) = (refs.as_slice(), a.all) {
        let req = attune_app::upgrade::UpgradeRequest { pack_ref: pack_ref.clone(), to: a.to, from: a.from, base };
        let bar = progress::Bar::start(!g.json && std::io::stderr().is_terminal(), g.verbose);
        let result = attune_app::upgrade::upgrade(ctx, &cache_dir, req, Some(bar.sink())).await;
        bar.finish();
        let report = result?;
        out.ignored_runtime_requirements(&report.ignored_runtime_requirements);
        out.upgraded(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.to.is_some() || a.from.is_some() {
        let which = if a.all { "every pack".to_owned() } else { refs.join(", ") };
        anyhow::bail!("upgrade: --to and --from apply to one pack; upgrade {which} one at a time");
    }
    let refs = match a.all {
        true => attune_app::upgrade::active_refs(ctx).await?,
        false => refs,
    };
    // One line per pack when it is done (the report), no spinner per pack.
    let outcomes = attune_app::upgrade::upgrade_many(ctx, &cache_dir, &refs, &base, |_| None).await?;
    for o in &outcomes {
        if let Some(r) = &o.report {
            out.ignored_runtime_requirements(&r.ignored_runtime_requirements);
        }
    }
    Ok(if out.upgraded_many(&outcomes)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What installing one source gave.
enum Installed {
    ByName(Box<attune_app::by_name::NamedInstall>),
    Source(Box<attune_app::install::InstallReport>),
}

impl Installed {
    fn print(&self, out: &output::Output) -> anyhow::Result<()> {
        match self {
            Installed::ByName(n) => indexes::installed_by_name(out, n),
            Installed::Source(r) => {
                out.installed(r)?;
                out.ignored_runtime_requirements(&r.ignored_runtime_requirements);
                Ok(())
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Installed::ByName(n) => serde_json::to_value(n),
            Installed::Source(r) => serde_json::to_value(r),
        }
        .expect("reports serialize")
    }
}

async fn install_one(
    ctx: &Context,
    s: &Settings,
    file: &FileConfig,
    g: &Global,
    a: &InstallArgs,
    source: &str,
) -> anyhow::Result<Installed> {
    let args = attune_app::request::InstallArgs {
        source,
        checksum: a.checksum.as_deref(),
        reference: a.reference.as_deref(),
        plugin: a.plugin.is_some() || a.plugin_file.is_some(),
        skip_deps: a.skip_deps,
    };
    let target = attune_app::request::install_target(Channel::Cli, &args)?;
    if !g.json && matches!(target, Target::Source { .. }) && attune_app::registry::is_ref_shaped(source) {
        // An existing path wins over an index spec of the same name: say so.
        eprintln!(
            "note: {0} is a file or folder here, so it is installed from there; \
             `attune install {0}@latest` installs {0} from the indexes",
            source
        );
    }
    let expected = match &target {
        Target::Source { expected_checksum } => *expected_checksum,
        Target::ByName => None,
    };
    let req = install_request(s, file, a, source, expected)?;
    if target == Target::ByName {
        // A pack from the indexes: they give the source, ref and checksum.
        let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
        // A set: one line per pack and an overall bar, or JSON events (set_progress.rs).
        let mode = set_progress::Mode::pick(g.json, std::io::stderr().is_terminal());
        let set = set_progress::SetDisplay::start(mode, g.verbose);
        let result =
            attune_app::by_name::install_by_name_with(ctx, &cache_dir, source, req, Some(set.sink()), a.skip_deps)
                .await;
        set.finish(result.is_ok());
        return Ok(Installed::ByName(Box::new(result?)));
    }
    let bar = progress::Bar::start(!g.json && std::io::stderr().is_terminal(), g.verbose);
    let result = attune_app::install::install(ctx, req, Some(bar.sink())).await;
    bar.finish();
    Ok(Installed::Source(Box::new(result?)))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let filter = if cli.global.verbose { "attune=debug" } else { "attune=warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ATTUNE_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(json, &anyhow::anyhow!(e).context("starting the async runtime")),
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => report(json, &e),
    }
}

fn report(json: bool, e: &anyhow::Error) -> ExitCode {
    if json {
        outln!("{}", serde_json::json!({ "error": { "message": error_text(e) } }));
    } else {
        // Parts of an error may be a plugin's words: escaped, line by line.
        eprintln!("error: {}", attune_app::untrusted::escape_lines(&error_text(e)));
    }
    ExitCode::FAILURE
}

/// An error and its causes, `: `-joined as anyhow's `{:#}` does, except that
/// a cause already spelled out by the message before it (`{path}: {source}`
/// errors that also return `source` as their cause) is not said twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.ends_with(&part) {
            text = format!("{text}: {part}");
        }
    }
    text
}

fn settings(
    g: &Global,
    file: &FileConfig,
    limits: Option<&LimitArgs>,
    ca_certs: &[PathBuf],
) -> anyhow::Result<Settings> {
    let mut l = file.limits()?;
    if let Some(a) = limits {
        if let Some(m) = &a.limit_memory {
            l.memory_bytes = config::parse_size(m).context("--limit-memory")?;
        }
        if let Some(t) = &a.limit_time {
            l.time = config::parse_duration(t).context("--limit-time")?;
        }
        if let Some(b) = &a.limit_bytes {
            l.write.max_bytes = config::parse_size(b).context("--limit-bytes")?;
        }
        if let Some(f) = a.limit_files {
            l.write.max_files = f;
        }
    }
    Ok(Settings {
        packs_dir: g.packs_dir.clone().or_else(|| file.packs_dir.clone()).unwrap_or_else(config::default_packs_dir),
        database_url: g
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(attune_app::db::Db::default_url),
        cache_dir: Some(
            g.cache_dir.clone().or_else(|| file.cache_dir.clone()).unwrap_or_else(config::default_cache_dir),
        ),
        limits: l,
        host_name: g.host_name.clone().or_else(|| file.host_name.clone()),
        envs_dir: g.envs_dir.clone().or_else(|| file.envs_dir.clone()),
        net: attune_net::Net::build(&file.net(ca_certs).with_env(&attune_net::process_env())?)?,
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    let file = FileConfig::load(g.config.as_deref())?;
    let out = output::Output { json: g.json };

    // Commands that need no installed state.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "attune", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page)?;
            out!("{}", String::from_utf8_lossy(&page));
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    if let Command::Pack(PackCommand::Checksum { path, format }) = &cli.command {
        let p = path.clone();
        let computed = tokio::task::spawn_blocking(move || attune_app::checksum::path(&p)).await??;
        // The index-entry template is for pack folders; a file's JSON is its digest.
        if g.json && matches!(computed, attune_app::checksum::Computed::Tree(_)) {
            out.index_entry(path, &computed)?;
        } else {
            out.checksum(
                path,
                &computed,
                match format {
                    _ if g.json => output::ChecksumFormat::Json,
                    Format::Table => output::ChecksumFormat::Table,
                    Format::Json => output::ChecksumFormat::Json,
                    Format::Yaml => output::ChecksumFormat::Yaml,
                },
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Publishing: the pack folder and the index file only.
    match &cli.command {
        Command::Pack(PackCommand::IndexEntry(a)) => return publish::entry(a),
        Command::Pack(PackCommand::IndexUpdate(a)) => return publish::update(a, g.json),
        Command::Index(indexes::IndexCommand::Keygen(a)) => return tuf_publish::keygen(a, g.json),
        Command::Index(indexes::IndexCommand::Init(a)) => return tuf_publish::init(a, g.json),
        Command::Index(indexes::IndexCommand::Sign(a)) => return tuf_publish::sign(a, g.json),
        _ => {}
    }

    let limits = match &cli.command {
        Command::Install(a) => Some(&a.limits),
        Command::Serve(a) => Some(&a.limits),
        Command::Sync(a) => Some(&a.limits),
        Command::Upgrade(a) => Some(&a.limits),
        _ => None,
    };
    // `--ca-cert` of the commands that fetch; every other one uses the config's trust.
    let ca_certs: &[PathBuf] = match &cli.command {
        Command::Install(a) => &a.fetch.ca_cert,
        Command::Sync(a) => &a.fetch.ca_cert,
        Command::Upgrade(a) => &a.fetch.ca_cert,
        Command::Index(indexes::IndexCommand::Add { net, .. } | indexes::IndexCommand::Update { net, .. }) => {
            &net.ca_cert
        }
        Command::Plugin(PluginCommand::Add { ca_cert, .. }) => ca_cert,
        _ => &[],
    };
    let s = settings(g, &file, limits, ca_certs)?;
    let (mut ctx, recovery) = attune_app::open(&s).await?;
    ctx.interpreters = attune_app::interpreters::Interpreters::from_env(file.python.clone(), file.node.clone());
    ctx.env_config = file.env_config();
    if !g.json
        && (recovery.leftovers_removed > 0
            || !recovery.completed.is_empty()
            || !recovery.rolled_back.is_empty()
            || !recovery.activated.is_empty())
    {
        output::recovery_note(&recovery);
    }

    match cli.command {
        Command::Install(a) => return install_command(&ctx, &s, &file, g, &out, a).await,
        Command::List { all_hosts } => out.list(&ctx, all_hosts).await?,
        Command::Info { pack } => out.info(&attune_app::packs::info(&ctx, &pack.parse::<PackSpec>()?).await?)?,
        Command::Verify { packs } => {
            let specs = packs.iter().map(|p| p.parse::<PackSpec>()).collect::<Result<Vec<_>, _>>()?;
            let reports = attune_app::packs::verify(&ctx, &specs).await?;
            let ok = out.verify(&reports)?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Uninstall { pack, force } => out.uninstalled(
            &attune_app::packs::uninstall(&ctx, &pack.parse::<PackSpec>()?, Channel::Cli, None, force).await?,
        )?,
        Command::Activate { pack } => {
            let spec = pack.parse::<PackSpec>()?;
            let Some(version) = spec.version else {
                anyhow::bail!("activate: name the version, e.g. `attune activate {}@1.2.3`", spec.pack_ref);
            };
            out.switched(&attune_app::upgrade::activate(&ctx, &spec.pack_ref, &version).await?, "activated")?
        }
        Command::Rollback { pack } => {
            let pack_ref = attune_app::request::ref_only(Channel::Cli, attune_app::request::Command::Rollback, &pack)?;
            out.switched(&attune_app::upgrade::rollback(&ctx, &pack_ref).await?, "rolled back")?
        }
        Command::Upgrade(a) => return upgrade_command(&ctx, &s, &file, g, &out, a).await,
        Command::Search { terms } => {
            let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
            out.search(&attune_app::discover::search(&ctx, &cache_dir, &terms).await?)?
        }
        Command::Show { pack } => {
            let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
            out.show(&attune_app::discover::show(&ctx, &cache_dir, &pack).await?)?
        }
        Command::Outdated => {
            let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
            if !out.outdated(&attune_app::discover::outdated(&ctx, &cache_dir).await?)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Gc { keep, dry_run } => {
            let keep = keep.or(file.gc_keep).unwrap_or(3);
            let report = attune_app::upgrade::gc(&ctx, keep, dry_run, Channel::Cli).await?;
            if !out.gc(&report)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Doctor { repair } => {
            let report = attune_app::packs::doctor(&ctx, recovery, repair).await?;
            let clean = out.doctor(&report, repair)?;
            if !clean {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Lock { output } => {
            let lock = attune_app::lockfile::Lockfile::of_host(&ctx).await?;
            attune_app::fs::write_atomic(&output, lock.to_toml().as_bytes())
                .with_context(|| output.display().to_string())?;
            out.locked(&output, &lock)?;
        }
        Command::Sync(a) => {
            if !a.locked {
                anyhow::bail!("sync: pass --locked (install exactly what {} lists)", a.file.display());
            }
            let lock = attune_app::lockfile::Lockfile::read(&a.file)?;
            let options = attune_app::lockfile::SyncOptions {
                dry_run: a.dry_run,
                offline: a.offline,
                allow_hosts: a.fetch.allow_hosts(&file.allow_hosts),
                allow_insecure_http: a.fetch.allow_insecure_http,
                ignore_runtime_requirements: a.fetch.ignore_runtime_requirements,
                cache_dir: s.cache_dir.clone(),
                env: a.fetch.env()?,
            };
            // A set, as install by name: lines per pack and an overall bar, or JSON events.
            let mode = set_progress::Mode::pick(g.json, std::io::stderr().is_terminal());
            let set = set_progress::SetDisplay::start(mode, g.verbose);
            let result = attune_app::lockfile::sync_with(&ctx, &lock, &options, Some(set.sink())).await;
            set.finish(result.is_ok());
            let report = result?;
            out.synced(&report)?;
            let mut ignored = Vec::new();
            for r in &report.installed {
                attune_app::interpreters::merge(&mut ignored, &r.ignored_runtime_requirements);
            }
            out.ignored_runtime_requirements(&ignored);
        }
        Command::Plugin(cmd) => plugin_command(&ctx, &out, cmd).await?,
        Command::Token(cmd) => token_command(&ctx, &out, cmd).await?,
        Command::Serve(a) => {
            let opts = attune_api::ServeOptions {
                listen: a.listen,
                tls: a.tls_cert.zip(a.tls_key),
                insecure: a.insecure,
                allow_local_source: a.allow_local_source,
                max_concurrent_installs: a.max_concurrent_installs,
                max_queued: a.max_queued,
                allow_hosts: file.allow_hosts.iter().chain(&a.allow_hosts).cloned().collect(),
                header_timeout: a.header_timeout,
                body_timeout: a.body_timeout,
                idle_timeout: a.idle_timeout,
                max_connections: a.max_connections,
                shutdown_deadline: a.shutdown_deadline,
                handshake_timeout: a.handshake_timeout,
                cache_dir: s.cache_dir.clone(),
                gc_keep: file.gc_keep.unwrap_or(3),
            };
            attune_api::serve(ctx, opts, |b| out.serving(b)).await?;
        }
        Command::Index(cmd) => {
            let cache_dir = s.cache_dir.clone().expect("the CLI always sets a cache dir");
            let config = indexes::IndexConfig {
                allow_hosts: file.allow_hosts.clone(),
                require_signed: file.require_signed_indexes.unwrap_or(false),
            };
            if !indexes::run(&ctx, &out, &cache_dir, &config, cmd).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Pack(_) | Command::Completions { .. } | Command::Man => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::from_raw_os_error(20);
        let e = anyhow::Error::from(attune_app::Error::Io { path: "/srv/f/packs".into(), source: io });
        // anyhow's own `{:#}` repeats it: the message holds the cause, which is also the source.
        assert_eq!(format!("{e:#}").matches("os error 20").count(), 2, "{e:#}");
        assert_eq!(error_text(&e), "/srv/f/packs: Not a directory (os error 20)");
        let e = e.context("opening the packs folder");
        assert_eq!(error_text(&e), "opening the packs folder: /srv/f/packs: Not a directory (os error 20)");
    }
}
