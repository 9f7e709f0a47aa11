//! A real git smart-HTTP server on loopback: `git http-backend` (from the
//! `git` package) behind a minimal CGI bridge, serving bare repositories
//! under one root. For the hostile tests, a path prefix makes it misbehave:
//! `/garbage/…` answers junk, `/corrupt/…` flips a byte in each pack,
//! `/endless/…` answers a fetch with pkt-lines that never end, and
//! `/swap/…` sends the pack of another commit than the one asked for,
//! `/reversed/…` sends the right objects in the reverse of git's order (every
//! blob before the tree that names it, the commit last), `/trickle/…` sends
//! the pack a few bytes per side-band packet (so every object header and
//! zlib stream arrives in pieces), and `/v0/…` ignores the client's request
//! for protocol v2.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct GitServer {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub requests: Arc<AtomicUsize>,
    /// For `/swap/…`: (wanted commit, commit whose pack is sent instead).
    pub swap: Arc<std::sync::Mutex<Option<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

impl GitServer {
    pub fn start(root: &Path) -> GitServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let swap: Arc<std::sync::Mutex<Option<(String, String)>>> = Arc::default();
        let (st, rq, r, sw) = (stop.clone(), requests.clone(), root.to_path_buf(), swap.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                rq.fetch_add(1, Ordering::Relaxed);
                let (r, sw) = (r.clone(), sw.clone());
                std::thread::spawn(move || serve(conn, &r, &sw));
            }
        });
        GitServer { addr, root: root.to_path_buf(), requests, swap, stop }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut conn: TcpStream, root: &Path, swap: &std::sync::Mutex<Option<(String, String)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (mut path, query) =
        target.split_once('?').map(|(p, q)| (p.to_string(), q.to_string())).unwrap_or((target.clone(), String::new()));
    let mut mode = "";
    for prefix in ["corrupt", "endless", "reversed", "swap", "trickle", "v0"] {
        if let Some(rest) = path.strip_prefix(&format!("/{prefix}/")) {
            mode = prefix;
            path = format!("/{rest}");
        }
    }
    let fetching = method == "POST";
    let (mut len, mut ctype, mut proto) = (0usize, String::new(), String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim().to_string();
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().unwrap_or(0),
                "content-type" => ctype = v,
                "git-protocol" => proto = v,
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if path.starts_with("/garbage/") {
        let junk = b"001e# service=git-upload-pack\n0000ffffthis is not a pkt-line stream at all";
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                junk.len()
            )
            .as_bytes(),
        );
        let _ = conn.write_all(junk);
        return;
    }
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", &ctype)
        .env("CONTENT_LENGTH", len.to_string())
        // `/v0/…` plays an old server that ignores the client's protocol wish.
        .env("GIT_PROTOCOL", if mode == "v0" { "" } else { proto.as_str() })
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let is_fetch = String::from_utf8_lossy(&body).contains("command=fetch");
    if mode == "endless" && is_fetch {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-result\r\nConnection: close\r\n\r\n",
        );
        // A valid packfile section whose side-band data never ends: a pack
        // that announces 2^32 - 1 objects, each an empty blob, sent forever
        // (every byte of it valid, so only a limit can stop it).
        let _ = conn.write_all(b"000dpackfile\n");
        let side_band = |data: &[u8]| [format!("{:04x}\x01", 4 + 1 + data.len()).as_bytes(), data].concat();
        let _ = conn.write_all(&side_band(b"PACK\0\0\0\x02\xff\xff\xff\xff"));
        // Type 3 (blob), size 0; a zlib stream of nothing; its Adler-32.
        let empty_blob = b"\x30\x78\x01\x03\x00\x00\x00\x00\x01";
        let block = side_band(&empty_blob.repeat(110)).repeat(1000);
        while conn.write_all(&block).is_ok() {}
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    if mode == "swap"
        && fetching
        && let Some((want, instead)) = swap.lock().unwrap().clone()
    {
        let text = String::from_utf8_lossy(&body).replace(&want, &instead);
        body = text.into_bytes();
    }
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let _ = child.wait();
    // CGI: headers, a blank line, the body; `Status:` sets the status.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        let _ = conn.write_all(b"HTTP/1.1 500 Bad CGI\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let head = String::from_utf8_lossy(&out[..at]).to_string();
    let mut rest = out[at + sep..].to_vec();
    if mode == "reversed" && is_fetch {
        let repo = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        rest = reverse_pack(&root.join(repo), &rest);
    }
    if mode == "trickle" && is_fetch {
        let (head, pack) = split_pack(&rest);
        rest = with_pack(&rest[..head], &pack, (1..=7).cycle());
    }
    // Inside the pack itself, a little after its signature (the first
    // object's data), not in the progress text that follows it.
    if mode == "corrupt"
        && fetching
        && let Some(at) = rest.windows(4).position(|w| w == b"PACK")
        && at + 40 < rest.len()
    {
        rest[at + 30] ^= 0x55;
    }
    let rest = &rest[..];
    let mut status = "200 OK".to_string();
    let mut headers = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                headers.push_str(h.trim_end());
                headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let _ = conn.write_all(
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", rest.len()).as_bytes(),
    );
    let _ = conn.write_all(rest);
}

/// A v2 fetch response with its pack rebuilt, the same objects in reverse
/// order and none a delta.
fn reverse_pack(repo: &Path, response: &[u8]) -> Vec<u8> {
    let (head, pack) = split_pack(response);
    let order = pack_order(&pack);
    let reversed: Vec<&str> = order.iter().rev().map(String::as_str).collect();
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "--window=0", "--no-reuse-delta", "-q"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n", reversed.join("\n")).as_bytes()).unwrap();
    let new_pack = child.wait_with_output().unwrap().stdout;
    assert_eq!(pack_order(&new_pack), reversed, "pack-objects kept the order given");
    with_pack(&response[..head], &new_pack, std::iter::repeat(65515))
}

/// A fetch response's length up to its `packfile` line, and the pack its
/// band 1 carries after it.
fn split_pack(response: &[u8]) -> (usize, Vec<u8>) {
    let (mut at, mut head, mut pack) = (0, None, Vec::new());
    while at + 4 <= response.len() {
        let len = usize::from_str_radix(std::str::from_utf8(&response[at..at + 4]).unwrap(), 16).unwrap();
        if len < 4 {
            at += 4;
            continue;
        }
        let payload = &response[at + 4..at + len];
        if head.is_none() && payload == b"packfile\n" {
            head = Some(at + len);
        } else if head.is_some() && payload[0] == 1 {
            pack.extend_from_slice(&payload[1..]);
        }
        at += len;
    }
    (head.expect("a packfile section"), pack)
}

/// `head` (a response up to its `packfile` line), then `pack` on band 1 in
/// packets of the `sizes` given, then a flush.
fn with_pack(head: &[u8], pack: &[u8], mut sizes: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut out = head.to_vec();
    let mut rest = pack;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(sizes.next().unwrap().min(rest.len()));
        out.extend_from_slice(format!("{:04x}\x01", chunk.len() + 5).as_bytes());
        out.extend_from_slice(chunk);
        rest = after;
    }
    out.extend_from_slice(b"0000");
    out
}

/// The ids of a pack's objects in the order it holds them.
fn pack_order(pack: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.pack");
    std::fs::write(&file, pack).unwrap();
    let ok = Command::new("git").arg("index-pack").arg(&file).stdout(Stdio::null()).status().unwrap();
    assert!(ok.success());
    let out = Command::new("git").arg("verify-pack").arg("-v").arg(dir.path().join("p.idx")).output().unwrap();
    let mut objects: Vec<(u64, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[0].len() == 40).then(|| (f[4].parse().unwrap(), f[0].to_string()))
        })
        .collect();
    objects.sort();
    objects.into_iter().map(|(_, id)| id).collect()
}

/// Runs git in `dir` with a fixed identity and dates, so commits are reproducible.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_input(dir, args, "")
}

/// [`git`] with `input` on its stdin (plumbing such as `mktree`).
pub fn git_with_input(dir: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
