//! Progress of a set of packs: installed by name (`attune install ref@range`
//! with its dependencies) or from a lockfile (`attune sync --locked`).
//!
//! * On a terminal: one line per pack (`ref@version` and its phase or bytes)
//!   above an overall bar (packs done / total), all cleared at the end; the
//!   result is then printed as usual.
//! * With `--json`: one JSON object per line on **stderr**, each with an
//!   `"event"` key (`plan`, `phase`, `staged`, `waiting`, `log`, `done`,
//!   `skipped`, `failed`, `rolled-back`, `removed`, `finished` last), while stdout keeps
//!   the single result document (or `{"error": …}`), so `attune … --json | jq`
//!   works unchanged. Data on stdout, progress on stderr, as with cargo's
//!   human messages; the events are JSON lines like cargo's
//!   `--message-format=json` messages (there: `"reason"`).
//! * Otherwise (a pipe, a log file): nothing animated; only lock waits and
//!   fetcher warnings, as lines on stderr, as for a single install.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_app::install::InstallEvent;
use attune_app::runtime::{Event, LogLevel};
use attune_app::set_progress::{SetEvent, SetProgress, Skip};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// Where the set's progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Json,
    Quiet,
}

impl Mode {
    pub fn pick(json: bool, terminal: bool) -> Mode {
        match (json, terminal) {
            (true, _) => Mode::Json,
            (false, true) => Mode::Terminal,
            (false, false) => Mode::Quiet,
        }
    }
}

pub struct SetDisplay {
    mode: Mode,
    verbose: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    /// `ref@version` → its line.
    lines: HashMap<String, ProgressBar>,
    /// Last `staged` numbers sent per pack (JSON sends only changes).
    staged: HashMap<String, (u64, u64)>,
}

impl SetDisplay {
    pub fn start(mode: Mode, verbose: bool) -> SetDisplay {
        SetDisplay::drawing_to(mode, verbose, ProgressDrawTarget::stderr())
    }

    fn drawing_to(mode: Mode, verbose: bool, target: ProgressDrawTarget) -> SetDisplay {
        let mut state = State::default();
        if mode == Mode::Terminal {
            let multi = MultiProgress::with_draw_target(target);
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(ProgressStyle::with_template("{spinner} resolving {elapsed}").expect("valid template"));
            overall.enable_steady_tick(Duration::from_millis(100));
            state.multi = Some(multi);
            state.overall = Some(overall);
        }
        SetDisplay { mode, verbose, state: Arc::new(Mutex::new(state)) }
    }

    pub fn sink(&self) -> SetProgress {
        let (mode, verbose, state) = (self.mode, self.verbose, self.state.clone());
        Arc::new(move |e: &SetEvent| {
            let mut st = state.lock().expect("progress state");
            match mode {
                Mode::Terminal => st.draw(e, verbose),
                Mode::Json => {
                    if let Some(v) = st.json(e, verbose) {
                        emit_line(&v);
                    }
                }
                Mode::Quiet => quiet(e, verbose),
            }
        })
    }

    /// Clears the terminal lines; with `--json`, ends the stream with `finished`.
    pub fn finish(&self, success: bool) {
        let mut st = self.state.lock().expect("progress state");
        for (_, line) in st.lines.drain() {
            line.finish_and_clear();
        }
        if let Some(o) = st.overall.take() {
            o.finish_and_clear();
        }
        if let Some(m) = st.multi.take() {
            let _ = m.clear();
        }
        if self.mode == Mode::Json {
            emit_line(&json!({"event": "finished", "success": success}));
        }
    }
}

/// One event line on stderr, written whole, `"event"` first (for grep and
/// eyes; the other keys follow sorted).
fn emit_line(v: &Value) {
    let mut rest = v.as_object().cloned().unwrap_or_default();
    let event = rest.remove("event").unwrap_or(Value::Null);
    let rest = Value::Object(rest).to_string();
    let line = match rest.as_str() {
        "{}" => format!("{{\"event\":{event}}}"),
        _ => format!("{{\"event\":{event},{}", &rest[1..]),
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

fn label(pack_ref: &str, version: &str) -> String {
    format!("{pack_ref}@{version}")
}

/// Whether a fetcher log line is shown (warnings always, the rest with --verbose).
fn shown(level: LogLevel, verbose: bool) -> bool {
    verbose || level == LogLevel::Warn
}

fn quiet(e: &SetEvent, verbose: bool) {
    if let SetEvent::Pack { pack_ref, version, event } = e {
        match event {
            InstallEvent::Waiting(msg) => eprintln!("{msg}"),
            InstallEvent::Fetcher(Event::Log(level, msg)) if shown(*level, verbose) => {
                eprintln!("{}: fetcher {}: {msg}", label(pack_ref, version), level.as_str())
            }
            _ => {}
        }
    }
}

impl State {
    fn draw(&mut self, e: &SetEvent, verbose: bool) {
        let (Some(multi), Some(overall)) = (self.multi.clone(), self.overall.clone()) else { return };
        let style = ProgressStyle::with_template("{spinner} {prefix:<32} {wide_msg}").expect("valid template");
        match e {
            SetEvent::Plan { packs, .. } => {
                overall.set_style(
                    ProgressStyle::with_template("{spinner} installing [{bar:30}] {pos}/{len} packs {elapsed}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                overall.set_length(packs.iter().filter(|p| p.action == "install").count() as u64);
                for p in packs {
                    let line = multi.insert_before(&overall, ProgressBar::new_spinner());
                    line.set_style(style.clone());
                    line.set_prefix(label(&p.pack_ref, &p.version));
                    match p.action {
                        "install" | "remove" => {
                            line.set_message(if p.action == "install" { "queued" } else { "to remove" });
                            line.enable_steady_tick(Duration::from_millis(100));
                        }
                        _ => line.finish_with_message("kept (already installed)"),
                    }
                    self.lines.insert(label(&p.pack_ref, &p.version), line);
                }
            }
            SetEvent::Pack { pack_ref, version, event } => {
                let line = self.lines.get(&label(pack_ref, version));
                match event {
                    InstallEvent::Phase(p) => {
                        if let Some(l) = line {
                            l.set_message(p.to_string());
                        }
                    }
                    InstallEvent::Staged { bytes, entries } => {
                        if let Some(l) = line {
                            l.set_message(format!("fetching {} in {entries} files", HumanBytes(*bytes)));
                        }
                    }
                    InstallEvent::Waiting(msg) => multi.suspend(|| eprintln!("{msg}")),
                    InstallEvent::Fetcher(Event::Log(level, msg)) if shown(*level, verbose) => {
                        let text = format!("{}: fetcher {}: {msg}", label(pack_ref, version), level.as_str());
                        multi.suspend(|| eprintln!("{text}"));
                    }
                    InstallEvent::Fetcher(_) => {}
                    InstallEvent::Env(e) => {
                        if let Some(l) = line {
                            l.set_message(crate::cli::progress::env_step(e));
                        }
                    }
                }
            }
            SetEvent::Done { report } => {
                if let Some(l) = self.lines.get(&label(&report.pack_ref, &report.version)) {
                    l.finish_with_message(format!("installed ({})", HumanBytes(report.bytes)));
                }
                overall.inc(1);
            }
            SetEvent::Skipped { pack_ref, reason: Skip::SkipDeps { req }, .. } => {
                let line = multi.insert_before(&overall, ProgressBar::new_spinner());
                line.set_style(style);
                line.set_prefix(format!("{pack_ref} {req}"));
                line.finish_with_message("skipped (--skip-deps)");
                self.lines.insert(format!("skipped {pack_ref}"), line);
            }
            SetEvent::Skipped { .. } => {}
            SetEvent::Failed { pack_ref, version, .. } => {
                if let Some(l) = self.lines.get(&label(pack_ref, version)) {
                    l.abandon_with_message("failed");
                }
            }
            SetEvent::Removed { pack_ref, version } => {
                if let Some(l) = self.lines.get(&label(pack_ref, version)) {
                    l.finish_with_message("removed");
                }
            }
            SetEvent::RolledBack { pack_ref, version, error } => {
                if let Some(l) = self.lines.get(&label(pack_ref, version)) {
                    l.finish_with_message(match error {
                        None => "rolled back".to_string(),
                        Some(_) => "could not be rolled back".to_string(),
                    });
                }
            }
        }
    }

    /// The event's JSON line, or `None` for what is not sent (an unchanged
    /// byte count, fetcher progress, a debug log without --verbose).
    fn json(&mut self, e: &SetEvent, verbose: bool) -> Option<Value> {
        Some(match e {
            SetEvent::Plan { spec, packs } => json!({
                "event": "plan",
                "spec": spec,
                "total": packs.iter().filter(|p| p.action == "install").count(),
                "packs": packs,
            }),
            SetEvent::Pack { pack_ref, version, event } => {
                match event {
                    InstallEvent::Staged { bytes, entries } => {
                        let last = self.staged.insert(label(pack_ref, version), (*bytes, *entries));
                        if last == Some((*bytes, *entries)) {
                            return None;
                        }
                    }
                    InstallEvent::Fetcher(Event::Log(level, _)) if shown(*level, verbose) => {}
                    InstallEvent::Fetcher(_) => return None,
                    InstallEvent::Phase(_) | InstallEvent::Waiting(_) | InstallEvent::Env(_) => {}
                }
                let (kind, fields) = event.wire();
                let mut v = json!({"event": kind, "ref": pack_ref, "version": version});
                if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), fields) {
                    v.extend(fields);
                }
                v
            }
            SetEvent::Done { report } => json!({
                "event": "done",
                "ref": report.pack_ref,
                "version": report.version,
                "checksum": report.checksum,
                "path": report.path,
                "files": report.files,
                "bytes": report.bytes,
                "activated": report.activated,
            }),
            SetEvent::Skipped { pack_ref, version, reason } => {
                let mut v = json!({"event": "skipped", "ref": pack_ref});
                if let Some(version) = version {
                    v["version"] = json!(version);
                }
                match reason {
                    Skip::AlreadyInstalled => v["reason"] = json!("already-installed"),
                    Skip::SkipDeps { req } => {
                        v["reason"] = json!("skip-deps");
                        v["req"] = json!(req);
                    }
                }
                v
            }
            SetEvent::Failed { pack_ref, version, error } => {
                json!({"event": "failed", "ref": pack_ref, "version": version, "error": error})
            }
            SetEvent::Removed { pack_ref, version } => {
                json!({"event": "removed", "ref": pack_ref, "version": version})
            }
            SetEvent::RolledBack { pack_ref, version, error } => {
                let mut v =
                    json!({"event": "rolled-back", "ref": pack_ref, "version": version, "removed": error.is_none()});
                if let Some(e) = error {
                    v["error"] = json!(e);
                }
                v
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attune_app::set_progress::PlannedPack;

    fn planned(r: &str, action: &'static str) -> PlannedPack {
        PlannedPack { pack_ref: r.into(), version: "1.0.0".into(), index: Some("main".into()), action }
    }

    fn done(r: &str) -> SetEvent {
        SetEvent::Done {
            report: Box::new(attune_app::install::InstallReport {
                pack_ref: r.into(),
                version: "1.0.0".into(),
                path: format!("/p/{r}-1.0.0").into(),
                checksum: "sha256-tree-v1:00".into(),
                replaced: false,
                files: 1,
                bytes: 2048,
                source_type: attune_app::source::SourceKind::Http,
                source: "http://x".into(),
                fetcher: attune_app::sources::FetcherFacts {
                    name: "http".into(),
                    version: "0".into(),
                    sha256: "0".into(),
                },
                installation_id: 1,
                activated: true,
                ignored_runtime_requirements: vec![],
                environment: None,
                notes: vec![],
            }),
        }
    }

    fn phase(r: &str, p: &'static str) -> SetEvent {
        SetEvent::Pack { pack_ref: r.into(), version: "1.0.0".into(), event: InstallEvent::Phase(p) }
    }

    #[test]
    fn a_line_per_pack_and_an_overall_bar() {
        let d = SetDisplay::drawing_to(Mode::Terminal, false, ProgressDrawTarget::hidden());
        let sink = d.sink();
        let packs = vec![planned("base", "keep"), planned("left", "install"), planned("app", "install")];
        sink(&SetEvent::Plan { spec: "app".into(), packs });
        sink(&phase("left", "fetching"));
        sink(&SetEvent::Pack {
            pack_ref: "left".into(),
            version: "1.0.0".into(),
            event: InstallEvent::Staged { bytes: 1024, entries: 3 },
        });
        {
            let st = d.state.lock().unwrap();
            let overall = st.overall.as_ref().unwrap();
            assert_eq!((overall.position(), overall.length()), (0, Some(2)));
            assert_eq!(st.lines["base@1.0.0"].message(), "kept (already installed)");
            assert_eq!(st.lines["left@1.0.0"].message(), "fetching 1.00 KiB in 3 files");
            assert_eq!(st.lines["app@1.0.0"].message(), "queued");
            assert_eq!(st.lines["app@1.0.0"].prefix(), "app@1.0.0");
        }
        sink(&done("left"));
        sink(&phase("app", "fetching"));
        sink(&SetEvent::Failed { pack_ref: "app".into(), version: "1.0.0".into(), error: "boom".into() });
        sink(&SetEvent::RolledBack { pack_ref: "left".into(), version: "1.0.0".into(), error: None });
        {
            let st = d.state.lock().unwrap();
            assert_eq!(st.overall.as_ref().unwrap().position(), 1);
            assert_eq!(st.lines["left@1.0.0"].message(), "rolled back");
            assert_eq!(st.lines["app@1.0.0"].message(), "failed");
        }
        d.finish(false);
        assert!(d.state.lock().unwrap().lines.is_empty());
    }

    #[test]
    fn json_lines_send_changes_only() {
        let mut st = State::default();
        let staged = |bytes| SetEvent::Pack {
            pack_ref: "a".into(),
            version: "1.0.0".into(),
            event: InstallEvent::Staged { bytes, entries: 1 },
        };
        assert_eq!(st.json(&staged(10), false).unwrap()["bytes"], 10);
        assert!(st.json(&staged(10), false).is_none(), "an unchanged count is not sent again");
        assert_eq!(st.json(&staged(20), false).unwrap()["bytes"], 20);
        let debug = SetEvent::Pack {
            pack_ref: "a".into(),
            version: "1.0.0".into(),
            event: InstallEvent::Fetcher(Event::Log(LogLevel::Debug, "x".into())),
        };
        assert!(st.json(&debug, false).is_none());
        assert_eq!(st.json(&debug, true).unwrap()["level"], "debug");
        let skip =
            SetEvent::Skipped { pack_ref: "b".into(), version: None, reason: Skip::SkipDeps { req: "^1".into() } };
        assert_eq!(
            st.json(&skip, false).unwrap(),
            json!({"event": "skipped", "ref": "b", "reason": "skip-deps", "req": "^1"})
        );
    }
}
