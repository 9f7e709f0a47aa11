//! What a request that installs may say, whichever channel it came through: the
//! one place the argument rules live, so the CLI (flags) and the API (JSON
//! fields) cannot drift apart. Each channel names the fields its own way in
//! the errors (`--checksum` on the command line, `checksum` in a body).

use crate::Error;
use crate::checksum::Checksum;
use crate::db::Channel;
use crate::environments::EnvOptions;

/// An install's arguments as a front end received them.
#[derive(Debug, Clone, Copy)]
pub struct InstallArgs<'a> {
    pub source: &'a str,
    pub checksum: Option<&'a str>,
    pub reference: Option<&'a str>,
    /// A plugin was named for the source (`--plugin` / `--plugin-file`; CLI only).
    pub plugin: bool,
    pub skip_deps: bool,
}

/// What an install request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A pack by name (`ref`, `ref@range`) from the indexes, which give its
    /// source, ref and checksum.
    ByName,
    /// A source string, held to `expected_checksum` when one was given.
    Source { expected_checksum: Option<Checksum> },
}

/// Checks `args` against the rules and says what the request is.
///
/// A ref-shaped source is a pack by name. On the command line it is one only
/// when no such path exists (the operator may mean a folder named like a
/// ref); over the API always, so the answer never depends on the server's
/// files.
pub fn install_target(channel: Channel, args: &InstallArgs<'_>) -> Result<Target, Error> {
    let by_name = match channel {
        Channel::Cli => crate::registry::is_spec(args.source),
        Channel::Api => crate::registry::is_ref_shaped(args.source),
    };
    let names = Names::of(channel);
    if by_name {
        if args.checksum.is_some() || args.reference.is_some() || args.plugin {
            return Err(Error::Usage(format!(
                "{}: a pack from an index takes its source, ref and checksum from the index; drop {}",
                args.source, names.index_fixed
            )));
        }
        return Ok(Target::ByName);
    }
    if args.skip_deps && channel == Channel::Cli {
        return Err(Error::Usage(format!(
            "{} applies to a pack installed by name from an index (attune install ref@range)",
            names.skip_deps
        )));
    }
    let expected_checksum = args
        .checksum
        .map(|c| c.parse::<Checksum>().map_err(|e| Error::Usage(format!("{} {c:?}: {e}", names.checksum))))
        .transpose()?;
    Ok(Target::Source { expected_checksum })
}

/// What a request says about the pack's runtime environment. The API offers
/// only `no_env` and `rebuild_env`: source builds (which run a package's
/// build code) and unlocked node installs stay the operator's CLI choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvArgs {
    pub no_env: bool,
    pub rebuild_env: bool,
    pub allow_source_builds: bool,
    pub with_tests: bool,
    pub allow_unlocked: bool,
}

/// Checks `args` against the rules and says what the environment step is asked.
pub fn env_options(channel: Channel, args: &EnvArgs) -> Result<EnvOptions, Error> {
    let names = Names::of(channel);
    if args.no_env && args.rebuild_env {
        return Err(Error::Usage(format!(
            "{} and {} contradict each other: the first installs no environment, the second builds it afresh; drop one",
            names.no_env, names.rebuild_env
        )));
    }
    Ok(EnvOptions {
        skip: args.no_env,
        rebuild: args.rebuild_env,
        allow_source_builds: args.allow_source_builds,
        with_tests: args.with_tests,
        allow_unlocked: args.allow_unlocked,
        locked: None,
    })
}

/// The pack an upgrade or a rollback names: a ref alone, since the version
/// comes from elsewhere (`--to`/`to`, or the previous active one). A ref
/// with a version is refused rather than its version dropped.
pub fn ref_only(channel: Channel, command: Command, pack: &str) -> Result<String, Error> {
    let spec: crate::packs::PackSpec = pack.parse()?;
    if spec.version.is_none() {
        return Ok(spec.pack_ref);
    }
    let r = &spec.pack_ref;
    let hint = match (command, channel) {
        (Command::Upgrade, Channel::Cli) => format!("name the target with --to, e.g. `attune upgrade {r} --to 2.0.0`"),
        (Command::Upgrade, Channel::Api) => {
            format!("name the target in the body, e.g. {{\"to\": \"2.0.0\"}} to /packs/{r}/upgrade")
        }
        (Command::Rollback, Channel::Cli) => {
            format!("it returns to the previous active version; to pick one use `attune activate {pack}`")
        }
        (Command::Rollback, Channel::Api) => {
            format!("it returns to the previous active version; to pick one POST /packs/{r}/activate")
        }
    };
    Err(Error::Usage(format!("{}: name just the ref, {r}; {hint}", command.name())))
}

/// The commands [`ref_only`] words its errors for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Upgrade,
    Rollback,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Upgrade => "upgrade",
            Command::Rollback => "rollback",
        }
    }
}

/// How a channel names the fields, for its errors.
struct Names {
    checksum: &'static str,
    skip_deps: &'static str,
    index_fixed: &'static str,
    no_env: &'static str,
    rebuild_env: &'static str,
}

impl Names {
    fn of(channel: Channel) -> Names {
        match channel {
            Channel::Cli => Names {
                checksum: "--checksum",
                skip_deps: "--skip-deps",
                index_fixed: "--checksum, --ref, --plugin and --plugin-file",
                no_env: "--no-env",
                rebuild_env: "--rebuild-env",
            },
            Channel::Api => Names {
                checksum: "checksum",
                skip_deps: "skip_deps",
                index_fixed: "checksum and ref_spec",
                no_env: "no_env",
                rebuild_env: "rebuild_env",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(source: &str) -> InstallArgs<'_> {
        InstallArgs { source, checksum: None, reference: None, plugin: false, skip_deps: false }
    }

    #[test]
    fn a_ref_is_by_name_and_refuses_what_the_index_fixes_naming_each_channels_fields() {
        assert_eq!(install_target(Channel::Api, &args("core@^1")).unwrap(), Target::ByName);
        let with_ref = InstallArgs { reference: Some("v1"), ..args("core") };
        let cli = install_target(Channel::Cli, &with_ref).unwrap_err().to_string();
        assert!(cli.contains("drop --checksum, --ref, --plugin and --plugin-file"), "{cli}");
        let api = install_target(Channel::Api, &with_ref).unwrap_err().to_string();
        assert!(api.contains("drop checksum and ref_spec"), "{api}");
    }

    #[test]
    fn over_the_api_a_ref_shaped_source_is_by_name_even_if_such_a_path_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core");
        std::fs::create_dir(&path).unwrap();
        let cwd_relative = path.to_str().unwrap();
        // An absolute path is never ref-shaped; a bare name is, on both channels, unless (CLI) it exists.
        assert!(matches!(install_target(Channel::Cli, &args(cwd_relative)).unwrap(), Target::Source { .. }));
        assert_eq!(install_target(Channel::Api, &args("core")).unwrap(), Target::ByName);
    }

    #[test]
    fn upgrade_and_rollback_refuse_a_version_rather_than_drop_it() {
        assert_eq!(ref_only(Channel::Api, Command::Upgrade, "core").unwrap(), "core");
        let cli = ref_only(Channel::Cli, Command::Upgrade, "core@1.0.0").unwrap_err().to_string();
        assert!(cli.contains("upgrade: name just the ref, core") && cli.contains("--to"), "{cli}");
        let api = ref_only(Channel::Api, Command::Rollback, "core@1.0.0").unwrap_err().to_string();
        assert!(api.contains("rollback: name just the ref") && api.contains("/packs/core/activate"), "{api}");
        assert!(ref_only(Channel::Api, Command::Upgrade, "Not A Ref").is_err());
    }

    #[test]
    fn no_env_and_rebuild_env_contradict_in_either_channels_words() {
        let both = EnvArgs { no_env: true, rebuild_env: true, ..Default::default() };
        let cli = env_options(Channel::Cli, &both).unwrap_err().to_string();
        assert!(cli.contains("--no-env and --rebuild-env contradict"), "{cli}");
        let api = env_options(Channel::Api, &both).unwrap_err().to_string();
        assert!(api.contains("no_env and rebuild_env contradict"), "{api}");
        let one = EnvArgs { rebuild_env: true, with_tests: true, ..Default::default() };
        let o = env_options(Channel::Cli, &one).unwrap();
        assert!(o.rebuild && o.with_tests && !o.skip && !o.allow_source_builds);
    }

    #[test]
    fn a_source_checks_its_checksum_and_the_cli_refuses_skip_deps() {
        let bad = InstallArgs { checksum: Some("md5:00"), ..args("/srv/p.tgz") };
        let cli = install_target(Channel::Cli, &bad).unwrap_err().to_string();
        assert!(cli.starts_with("--checksum \"md5:00\": "), "{cli}");
        let api = install_target(Channel::Api, &bad).unwrap_err().to_string();
        assert!(api.starts_with("checksum \"md5:00\": "), "{api}");
        let skip = InstallArgs { skip_deps: true, ..args("/srv/p.tgz") };
        assert!(install_target(Channel::Cli, &skip).unwrap_err().to_string().contains("--skip-deps applies"));
        let good = format!("sha256:{}", "a".repeat(64));
        let ok = InstallArgs { checksum: Some(&good), ..args("/srv/p.tgz") };
        assert!(matches!(install_target(Channel::Api, &ok).unwrap(), Target::Source { expected_checksum: Some(_) }));
    }
}
