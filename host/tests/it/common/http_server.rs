//! A small real HTTP/1.1 server on loopback for the http fetcher's tests:
//! files, statuses, redirects, stalls and short bodies, each on its own path.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub enum Route {
    /// 200 with these bytes, an ETag and a Last-Modified.
    File(Vec<u8>),
    Status(u16),
    /// A redirect with this status to this Location.
    Redirect(u16, String),
    /// Headers promising `len` bytes, a little of the body, then silence.
    Stall {
        len: u64,
    },
    /// Headers promising more than is sent, then the connection closes.
    Short {
        promised: u64,
        sent: Vec<u8>,
    },
    /// `n` MiB of zeros, streamed.
    Zeros {
        mib: u64,
    },
    /// `len` zero bytes in writes of `write` bytes each (no Nagle).
    Dribble {
        len: u64,
        write: usize,
    },
}

/// Every request seen: (path, authorization header).
pub type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Server {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    pub seen: Seen,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Listens on `ip` (any 127.x.y.z address works on Linux) at a free port.
    pub fn start(ip: &str) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (routes.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, s, st) = (r.clone(), s.clone(), st.clone());
                std::thread::spawn(move || serve(conn, &r, &s, &st));
            }
        });
        Server { addr, routes, seen, stop }
    }

    pub fn route(&self, path: &str, route: Route) -> &Self {
        self.routes.lock().unwrap().insert(path.to_string(), route);
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves every file under `dir` at `{prefix}/{relative path}`, as read
    /// now (call again after changing the folder; files gone stay served).
    pub fn serve_dir(&self, prefix: &str, dir: &std::path::Path) -> &Self {
        for e in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()) {
            if e.file_type().is_file() {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
                self.route(&format!("{prefix}/{rel}"), Route::File(std::fs::read(e.path()).unwrap()));
            }
        }
        self
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut conn: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    seen: &Mutex<Vec<(String, Option<String>)>>,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    seen.lock().unwrap().push((path.clone(), auth));
    let route = routes.lock().unwrap().get(&path).cloned();
    let head = |status: &str, extra: &str, len: u64| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    let _ = match route {
        None => conn.write_all(head("404 Not Found", "", 0).as_bytes()),
        Some(Route::Status(code)) => conn.write_all(head(&format!("{code} Status"), "", 0).as_bytes()),
        Some(Route::File(bytes)) => {
            let extra = "ETag: \"v1-etag\"\r\nLast-Modified: Tue, 24 Nov 2026 10:00:00 GMT\r\n";
            conn.write_all(head("200 OK", extra, bytes.len() as u64).as_bytes()).and_then(|_| conn.write_all(&bytes))
        }
        Some(Route::Redirect(code, to)) => {
            conn.write_all(head(&format!("{code} Moved"), &format!("Location: {to}\r\n"), 0).as_bytes())
        }
        Some(Route::Stall { len }) => {
            let _ = conn.write_all(head("200 OK", "", len).as_bytes());
            let _ = conn.write_all(&[0u8; 100]);
            // Hold the connection open, silent, until the test ends.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        Some(Route::Short { promised, sent }) => {
            conn.write_all(head("200 OK", "", promised).as_bytes()).and_then(|_| conn.write_all(&sent))
        }
        Some(Route::Zeros { mib }) => {
            let chunk = vec![0u8; 1 << 20];
            let mut r = conn.write_all(head("200 OK", "", mib << 20).as_bytes());
            for _ in 0..mib {
                if r.is_err() {
                    break;
                }
                r = conn.write_all(&chunk);
            }
            r
        }
        Some(Route::Dribble { len, write }) => {
            let _ = conn.set_nodelay(true);
            let chunk = vec![0u8; write];
            let mut r = conn.write_all(head("200 OK", "", len).as_bytes());
            let mut left = len;
            while left > 0 && r.is_ok() {
                let n = left.min(write as u64) as usize;
                r = conn.write_all(&chunk[..n]);
                left -= n as u64;
            }
            r
        }
    };
    let _ = conn.flush();
}
