//! A deliberately hostile fetcher, built only for attune's tests.
//!
//! The source string picks the attack (`hostile:loop`, `hostile:alloc`, …).
//! Each one is something a buggy or malicious plugin could do; the host's
//! tests prove every one is stopped with a clear error, writes nothing outside
//! staging and installs nothing.

use std::io::Write;

use attune_plugin_sdk::{
    Capability, FetchError, FetchRequest, FetchResult, Fetcher, FetcherInfo, Staging, VersionInfo,
};

struct Hostile;

const PACK_YAML: &[u8] = b"---\nref: hostile\nname: hostile\nversion: 1.0.0\n";
/// Sets the window title, clears the screen, moves up and fakes a success line.
const ESCAPES: &str = "\x1b]0;pwned\x07\x1b[2J\x1b[1A\r\u{9b}32mattune: installed ok\x1b[0m";

impl Fetcher for Hostile {
    fn describe() -> FetcherInfo {
        FetcherInfo {
            name: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Test only: attacks the sandbox".into(),
            schemes: vec!["hostile".into()],
            // Loopback only: the tests grant or withhold these.
            capabilities: vec![
                Capability::ReadInput,
                Capability::OutboundHost("127.0.0.1".into()),
                Capability::OutboundHost("127.0.0.2".into()),
                Capability::LargerLimits(attune_plugin_sdk::LimitRequest {
                    memory_bytes: Some(96 << 20),
                    time_seconds: None,
                    max_bytes: None,
                    max_files: None,
                }),
            ],
        }
    }

    /// `hostile://<attack>`: answers the host's version list must refuse.
    fn list_versions(source: String) -> Result<Option<Vec<VersionInfo>>, FetchError> {
        let v = |version: &str| VersionInfo { version: version.into(), source: format!("hostile:{version}") };
        match source.strip_prefix("hostile://").unwrap_or(&source) {
            "versions-not-semver" => Ok(Some(vec![v("1.0.0"), v("latest")])),
            // An entry that would install something else: a local folder.
            "versions-elsewhere" => Ok(Some(vec![VersionInfo { version: "1.0.0".into(), source: "/etc".into() }])),
            "versions-many" => Ok(Some((0..5000).map(|i| v(&format!("1.0.{i}"))).collect())),
            // Listing may not write.
            "versions-write" => {
                let _ = Staging::write_file("pack.yaml", false, PACK_YAML);
                Ok(Some(vec![v("1.0.0")]))
            }
            other => Err(FetchError::InvalidSource(format!("unknown attack {other:?}"))),
        }
    }

    fn fetch(request: FetchRequest) -> Result<FetchResult, FetchError> {
        // A folder source names its attack by the folder's name.
        let attack = match &request.input {
            Some(_) => request.source.trim_end_matches('/').rsplit('/').next().unwrap_or_default(),
            None => request.source.strip_prefix("hostile:").unwrap_or(&request.source),
        };
        match attack {
            // Legit output, so a test can check the harness itself installs.
            "benign" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
            }
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 * 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "bytes" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                let mut f = Staging::create_file("big.bin", false)?;
                let chunk = vec![0u8; 1024 * 1024];
                loop {
                    f.write_all(&chunk).map_err(|e| attune_plugin_sdk::staging_error(&e))?;
                }
            }
            "files" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                for i in 0u64.. {
                    Staging::write_file(&format!("f{i}"), false, b"x")?;
                }
            }
            "dotdot" => Staging::write_file("../escape.txt", false, b"out")?,
            "dotdot-nested" => Staging::write_file("a/../../escape.txt", false, b"out")?,
            "absolute" => Staging::write_file("/tmp/attune-hostile-absolute.txt", false, b"out")?,
            "symlink-out" => Staging::create_symlink("link", "../../../../etc")?,
            "symlink-absolute" => Staging::create_symlink("passwd", "/etc/passwd")?,
            "through-symlink" => {
                Staging::create_symlink("inside", "sub")?;
                Staging::create_dir("sub")?;
                Staging::write_file("inside/x.txt", false, b"x")?;
            }
            "read-passwd" => {
                let text = std::fs::read("/etc/passwd").map_err(|e| FetchError::Other(format!("/etc/passwd: {e}")))?;
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                Staging::write_file("stolen", false, &text)?;
            }
            "write-tmp" => {
                std::fs::write("/tmp/attune-hostile-write.txt", b"out")
                    .map_err(|e| FetchError::Other(format!("/tmp/attune-hostile-write.txt: {e}")))?;
            }
            a if a.starts_with("network:") => {
                let addr = format!("127.0.0.1:{}", &a["network:".len()..]);
                std::net::TcpStream::connect(&addr).map_err(|e| FetchError::Network(format!("{addr}: {e}")))?;
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
            }
            // Parked in a host call, where epoch interruption cannot reach.
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
            // Climb out of the read-only input mount.
            "escape-input" => {
                let root = request.input.clone().unwrap_or_default();
                for p in [format!("{root}/../../../../etc/passwd"), "/etc/passwd".to_string(), format!("{root}/../")] {
                    if let Ok(text) = std::fs::read(&p) {
                        Staging::write_file("pack.yaml", false, PACK_YAML)?;
                        Staging::write_file("stolen", false, &text)?;
                        return Ok(FetchResult::new(request.source));
                    }
                }
                return Err(FetchError::Denied("every path outside the input was refused".into()));
            }
            // A normal pack, written slowly, so a test can kill the install mid-fetch.
            "slow" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                for i in 0..600 {
                    Staging::write_file(&format!("f{i}"), false, b"x")?;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            // Swallow the host's refusal and claim success: the host must still fail.
            "ignore-errors" => {
                let _ = Staging::write_file("../escape.txt", false, b"out");
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
            }
            a if a.starts_with("fetch-url:") => {
                let url = &a["fetch-url:".len()..];
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut attune_plugin_sdk::http::get(url)?, &mut body)
                    .map_err(|e| FetchError::Network(format!("{url}: {e}")))?;
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                Staging::write_file("fetched", false, &body)?;
            }
            "panic" => panic!("hostile fetcher panicked on purpose"),
            "stderr-flood" => {
                let line = "x".repeat(1023);
                for _ in 0..16 * 1024 {
                    eprintln!("{line}");
                }
                return Err(FetchError::Other("flooded stderr".into()));
            }
            // Huge log lines, many times: the host keeps and shows a capped copy only.
            "log-huge" => {
                let line = "L".repeat(24 << 20);
                for _ in 0..12 {
                    attune_plugin_sdk::log::warn(&line);
                }
                return Err(FetchError::Other("logged huge lines".into()));
            }
            // Thousands of lines at once: rate-limited, the rest counted.
            "log-storm" => {
                for i in 0..100_000 {
                    attune_plugin_sdk::log::warn(&format!("storm line {i}"));
                }
                return Err(FetchError::Other("logged a storm".into()));
            }
            // Terminal escapes in every channel a plugin has to the operator.
            "escapes" => {
                attune_plugin_sdk::log::warn(ESCAPES);
                eprintln!("{ESCAPES}");
                return Err(FetchError::Other(format!("failed {ESCAPES}")));
            }
            "escapes-panic" => panic!("{ESCAPES}"),
            // One staging call whose arguments are almost the whole memory.
            "huge-path" => {
                let path = "p".repeat(40 << 20);
                Staging::write_file(&path, false, b"x")?;
            }
            "huge-write" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                let data = vec![7u8; 40 << 20];
                Staging::write_file("big.bin", false, &data)?;
            }
            // Answers the host must refuse: huge metadata, a commit that is a path.
            "metadata-huge" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                let mut r = FetchResult::new(request.source);
                r.metadata.push(("note".into(), "m".repeat(40 << 20)));
                return Ok(r);
            }
            "metadata-many" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                let mut r = FetchResult::new(request.source);
                r.metadata = (0..100_000).map(|i| (format!("k{i}"), String::new())).collect();
                return Ok(r);
            }
            "commit-path" => {
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
                let mut r = FetchResult::new(request.source);
                r.resolved_commit = Some("../../../../etc/passwd".into());
                return Ok(r);
            }
            // Resource handles the host holds: pollables, then (when linked) http fields.
            "handles" => {
                for _ in 0..2_000_000 {
                    std::mem::forget(wasip2::clocks::monotonic_clock::subscribe_duration(1));
                }
                return Err(FetchError::Other("held two million handles".into()));
            }
            // Hashers are host resources too: they count as handles.
            "hashers" => {
                for _ in 0..2_000_000 {
                    let h = attune_plugin_sdk::digests::Hasher::new(attune_plugin_sdk::digests::Algorithm::Sha1);
                    h.update(b"held");
                    std::mem::forget(h);
                }
                return Err(FetchError::Other("held two million hashers".into()));
            }
            // One WASI stream write as large as the guest's memory.
            "stderr-huge" => {
                let data = vec![b'x'; 40 << 20];
                let _ = wasip2::cli::stderr::get_stderr().write(&data);
                return Err(FetchError::Other("wrote 40 MiB to stderr at once".into()));
            }
            "stderr-huge-blocking" => {
                let data = vec![b'x'; 40 << 20];
                let _ = wasip2::cli::stderr::get_stderr().blocking_write_and_flush(&data);
                return Err(FetchError::Other("wrote 40 MiB to stderr at once".into()));
            }
            // WASI hands back what it allocates: ask for as much as the guest may hold.
            "random-huge" => {
                for _ in 0..8 {
                    std::hint::black_box(wasip2::random::random::get_random_bytes(60 << 20));
                }
                return Err(FetchError::Other("got 480 MiB of random bytes".into()));
            }
            "http-fields" => {
                let value = vec![b'v'; 30 * 1024];
                for _ in 0..2_000_000 {
                    let f = wasip2::http::types::Fields::new();
                    let _ = f.append("x-big", &value);
                    std::mem::forget(f);
                }
                return Err(FetchError::Other("held two million header maps".into()));
            }
            // Host-side copies from the input folder, out of it: every one
            // ignored, then success claimed.
            "copy-dotdot" => {
                for from in ["../../../../etc/passwd", "/etc/passwd", "a/../../x"] {
                    let _ = Staging::copy_input_file("stolen", from);
                }
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
            }
            // A symlink in the input that leads out of it.
            "copy-symlink-out" => match Staging::copy_input_file("stolen", "out") {
                Ok(_) => Staging::write_file("pack.yaml", false, PACK_YAML)?,
                Err(e) => return Err(FetchError::Denied(format!("copying a symlink was refused: {}", e.message()))),
            },
            // Copies of one input file until the byte limit stops them.
            "copy-bytes" => {
                for i in 0u64.. {
                    if Staging::copy_input_file(&format!("c{i}"), "big").is_err() {
                        break;
                    }
                }
                Staging::write_file("pack.yaml", false, PACK_YAML)?;
            }
            other => return Err(FetchError::InvalidSource(format!("unknown attack {other:?}"))),
        }
        Ok(FetchResult::new(request.source))
    }
}

attune_plugin_sdk::export_fetcher!(Hostile);
