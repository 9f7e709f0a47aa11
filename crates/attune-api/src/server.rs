//! The connection loop of `attune serve`, bounded under abuse.
//!
//! Why it exists: `axum::serve` sets no timer, so a client that dribbles
//! its headers or body a byte at a time held a connection (and a graceful
//! shutdown) forever. Here every connection is served by
//! hyper's HTTP/1 builder with a timer:
//! * a **header-read timeout** (hyper starts it whenever it waits for a
//!   request head, so it also bounds an idle keep-alive connection),
//! * a **body deadline** per request ([`DeadlineBody`], set in the router),
//! * an **idle timeout** on writing: a response that cannot be written
//!   (the client stopped reading) for that long closes the connection
//!   ([`IdleIo`]); reads are bounded by the header and body timeouts, and a
//!   handler that takes long (`?wait=true`) is not cut off,
//! * a **connection limit** (a semaphore taken before `accept`, so excess
//!   clients wait in the kernel's backlog, costing nothing here),
//! * **TLS handshakes** each in its own task with its own timeout (and
//!   counted in the connection limit), so silent TLS clients never stall
//!   accepting or another client's handshake,
//! * **graceful shutdown**: on stop, no more accepts, each connection
//!   finishes its current response and closes; the caller bounds the wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

/// Accepts and serves until `stop` turns true, then lets open connections
/// finish their current response; returns when all are closed.
pub async fn run(
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => p.expect("never closed"),
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: breathe, go on.
                    tracing::debug!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, stop, acceptor) = (app.clone(), stop.clone(), acceptor.clone());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_one(IdleIo::new(stream, limits.idle_timeout), app, limits, stop).await,
                Some(acceptor) => {
                    let io = IdleIo::new(stream, limits.idle_timeout);
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => serve_one(tls, app, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer}: timed out"),
                    }
                }
            }
        });
    }
    drop(tcp);
    while tasks.join_next().await.is_some() {}
}

/// Resolves once `stop` is true (holding no lock guard across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn serve_one<I>(io: I, app: Router, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
            return;
        }
        _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

/// A stream whose writes fail with `TimedOut` once nothing moved either
/// way for `timeout` while a write waited.
pub struct IdleIo<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, timeout: Duration) -> IdleIo<T> {
        IdleIo { inner, timeout, sleep: Box::pin(tokio::time::sleep(timeout)) }
    }

    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.timeout;
        self.sleep.as_mut().reset(next);
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout")),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx).map(Err),
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check(cx).map(Err),
            r => r,
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that fails once `deadline` has passed since the request
/// arrived, however slowly or quickly bytes trickle in.
pub struct DeadlineBody {
    inner: axum::body::Body,
    sleep: Pin<Box<Sleep>>,
    after: Duration,
}

impl DeadlineBody {
    pub fn new(inner: axum::body::Body, after: Duration) -> DeadlineBody {
        DeadlineBody { inner, sleep: Box::pin(tokio::time::sleep(after)), after }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the request body did not arrive within {:?}", self.after),
                    );
                    Poll::Ready(Some(Err(axum::Error::new(e))))
                }
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
