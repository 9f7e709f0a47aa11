//! Progress of an environment build, for the host to show on a terminal or
//! emit as `--json` events; the builders only report, never print.

use std::path::PathBuf;

use serde::Serialize;

/// Which kind of environment an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Python,
    Node,
}

/// One step of a build, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EnvEvent {
    /// Resolving the requirements (skipped when a lock was given).
    Resolving {
        runtime: Runtime,
    },
    /// The locked set is known: `packages` distributions.
    Resolved {
        runtime: Runtime,
        packages: usize,
        from_lock: bool,
    },
    /// An identical environment of another version is linked instead of installed.
    Reused {
        runtime: Runtime,
        from: PathBuf,
    },
    Installing {
        runtime: Runtime,
        packages: usize,
    },
    Installed {
        runtime: Runtime,
        packages: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_tagged_json_for_json_output() {
        let e = EnvEvent::Resolved { runtime: Runtime::Python, packages: 2, from_lock: false };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event": "resolved", "runtime": "python", "packages": 2, "from_lock": false})
        );
        let e = EnvEvent::Reused { runtime: Runtime::Python, from: PathBuf::from("/envs/a-1.0.0") };
        assert_eq!(serde_json::to_value(&e).unwrap()["event"], "reused");
    }
}
