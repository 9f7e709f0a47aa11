//! A static file server on 127.0.0.1 serving a folder (what a repository host
//! or mirror is), able to answer one path with an endless body, and the HTTP
//! transport the client uses in tests (reqwest, reading at most `max_len`).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use attune_tuf::{Transport, TransportError};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::{Body, Frame};
use hyper::{Request, Response, StatusCode};

/// A body that never ends: what an endless-data attacker sends.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; 64 * 1024])))))
    }
}

pub struct Server {
    pub base: String,
    /// The folder served; tests change files in it to play the attacker.
    pub root: PathBuf,
    endless: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(root: PathBuf) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let endless: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (dir, paths) = (root.clone(), endless.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (dir, paths) = (dir.clone(), paths.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (dir, paths) = (dir.clone(), paths.clone());
                        async move { Ok::<_, Infallible>(serve(&dir, &paths, req.uri().path())) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { base: format!("http://{addr}"), root, endless, task }
    }

    /// From now on `path` (e.g. `/metadata/timestamp.json`) answers with an endless body.
    pub fn endless(&self, path: &str) {
        self.endless.lock().expect("lock").insert(path.to_owned());
    }
}

fn serve(dir: &std::path::Path, endless: &Mutex<BTreeSet<String>>, path: &str) -> Response<BoxBody<Bytes, Infallible>> {
    if endless.lock().expect("lock").contains(path) {
        return Response::new(Endless.boxed());
    }
    let rel = path.trim_start_matches('/');
    let status = |s: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = s;
        r
    };
    if rel.split('/').any(|s| s == ".." || s.is_empty()) {
        return status(StatusCode::BAD_REQUEST);
    }
    match std::fs::read(dir.join(rel)) {
        Ok(bytes) => Response::new(Full::new(Bytes::from(bytes)).boxed()),
        Err(_) => status(StatusCode::NOT_FOUND),
    }
}

/// The client side: plain HTTP to loopback, a body read only up to `max_len`.
#[derive(Default)]
pub struct Http {
    client: reqwest::Client,
}

impl Transport for Http {
    async fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, TransportError> {
        let other = |e: reqwest::Error| TransportError::Other { url: url.to_owned(), reason: e.to_string() };
        let mut resp = self.client.get(url).send().await.map_err(other)?;
        if matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN) {
            return Err(TransportError::NotFound { url: url.to_owned() });
        }
        if !resp.status().is_success() {
            return Err(TransportError::Other { url: url.to_owned(), reason: resp.status().to_string() });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(other)? {
            if (body.len() + chunk.len()) as u64 > max_len {
                return Err(TransportError::TooLarge { url: url.to_owned(), limit: max_len });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
