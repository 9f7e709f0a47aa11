//! Progress on a terminal: one line that says what the install is doing.
//! Silent when stderr is not a terminal or with `--json`.

use std::sync::Arc;
use std::time::Duration;

use attune_app::install::{InstallEvent, InstallProgress};
use attune_app::runtime::{Event, LogLevel};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

pub struct Bar {
    bar: Option<ProgressBar>,
    verbose: bool,
}

impl Bar {
    pub fn start(enabled: bool, verbose: bool) -> Bar {
        let bar = enabled.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {prefix:>10} {msg}").expect("valid template"));
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Bar { bar, verbose }
    }

    pub fn sink(&self) -> InstallProgress {
        let bar = self.bar.clone();
        let verbose = self.verbose;
        Arc::new(move |e: InstallEvent| match e {
            InstallEvent::Phase(p) => {
                if let Some(b) = &bar {
                    b.set_prefix(p);
                    b.set_message("");
                }
            }
            InstallEvent::Staged { bytes, entries } => {
                if let Some(b) = &bar {
                    b.set_message(format!("{} in {entries} files", HumanBytes(bytes)));
                }
            }
            InstallEvent::Waiting(msg) => match &bar {
                Some(b) => b.println(msg),
                None => eprintln!("{msg}"),
            },
            InstallEvent::Fetcher(Event::Log(level, msg)) => {
                if verbose || level == LogLevel::Warn {
                    let line = format!("fetcher {}: {msg}", format!("{level:?}").to_lowercase());
                    match &bar {
                        Some(b) => b.println(line),
                        None => eprintln!("{line}"),
                    }
                }
            }
            InstallEvent::Fetcher(Event::Progress { .. }) => {}
            InstallEvent::Env(e) => {
                if let Some(b) = &bar {
                    b.set_message(env_step(&e));
                }
            }
        })
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// An environment build step as a progress message.
pub fn env_step(e: &attune_app::env::EnvEvent) -> String {
    use attune_app::env::EnvEvent as E;
    let rt = |r: &attune_app::env::Runtime| format!("{r:?}").to_lowercase();
    match e {
        E::Resolving { runtime } => format!("{}: resolving", rt(runtime)),
        E::Resolved { runtime, packages, .. } => format!("{}: {packages} packages", rt(runtime)),
        E::Reused { runtime, from } => format!("{}: linking from {}", rt(runtime), from.display()),
        E::Installing { runtime, packages } => format!("{}: installing {packages} packages", rt(runtime)),
        E::Installed { runtime, packages } => format!("{}: installed {packages} packages", rt(runtime)),
    }
}
