//! gix-transport's `Http` over the SDK's wasi:http client.
//!
//! gix writes a POST body after `post` returns and reads the response after
//! dropping the writer; wasi:http has no threads to overlap them, so the body
//! is buffered (git's requests are small: wants and arguments) and the POST is
//! sent when the response is first read. Each redirect hop, like every
//! request, passes the host's outbound policy.

use std::cell::RefCell;
use std::io::{self, BufRead, Read, Write};
use std::rc::Rc;

use attune_plugin_sdk::{FetchError, http};
use gix_error::{ErrorExt, Result};
use gix_transport::client::blocking_io::http::{GetResponse, Http, PostBodyDataKind, PostResponse};

#[derive(Default)]
pub struct WasiHttp;

fn to_io(e: FetchError) -> io::Error {
    match e {
        FetchError::Denied(m) => io::Error::new(io::ErrorKind::PermissionDenied, m),
        FetchError::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
        FetchError::Staging(s) => io::Error::other(s.message()),
        FetchError::Network(m)
        | FetchError::Other(m)
        | FetchError::InvalidSource(m)
        | FetchError::InvalidContent(m) => io::Error::other(m),
    }
}

fn header_lines(r: &http::Response) -> io::Cursor<Vec<u8>> {
    let mut h = Vec::new();
    for (k, v) in &r.headers {
        h.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    io::Cursor::new(h)
}

fn parse_headers(list: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<(String, String)> {
    list.into_iter()
        .filter_map(|h| h.as_ref().split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect()
}

/// A POST that is sent on first use of its answer.
#[derive(Default)]
struct Lazy {
    request: Option<(String, Vec<(String, String)>)>,
    body: Vec<u8>,
    headers: Option<io::Cursor<Vec<u8>>>,
    response: Option<io::BufReader<http::Response>>,
    failed: Option<(io::ErrorKind, String)>,
}

impl Lazy {
    fn send(&mut self) -> io::Result<()> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if let Some((url, headers)) = self.request.take() {
            match http::request(&url, &headers, Some(&self.body)) {
                Ok(r) => {
                    self.headers = Some(header_lines(&r));
                    self.response = Some(io::BufReader::with_capacity(1 << 20, r));
                }
                Err(e) => {
                    let e = to_io(e);
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

pub struct PostBody(Rc<RefCell<Lazy>>);
pub struct Headers(Rc<RefCell<Lazy>>, Option<io::Cursor<Vec<u8>>>);
pub struct Body(Rc<RefCell<Lazy>>, Option<io::BufReader<http::Response>>);

impl Write for PostBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().body.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Headers {
    fn own(&mut self) -> io::Result<&mut io::Cursor<Vec<u8>>> {
        if self.1.is_none() {
            let mut l = self.0.borrow_mut();
            l.send()?;
            self.1 = Some(l.headers.take().unwrap_or_default());
        }
        Ok(self.1.as_mut().expect("set above"))
    }
}

impl Body {
    fn own(&mut self) -> io::Result<&mut io::BufReader<http::Response>> {
        if self.1.is_none() {
            let mut l = self.0.borrow_mut();
            l.send()?;
            self.1 = Some(l.response.take().ok_or_else(|| io::Error::other("the response body was already taken"))?);
        }
        Ok(self.1.as_mut().expect("set above"))
    }
}

impl Read for Headers {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.own()?.read(buf)
    }
}
impl BufRead for Headers {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.own()?.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        if let Some(c) = &mut self.1 {
            c.consume(n)
        }
    }
}
impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.own()?.read(buf)
    }
}
impl BufRead for Body {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.own()?.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        if let Some(c) = &mut self.1 {
            c.consume(n)
        }
    }
}

/// A GET's answer is already here: both parts start owned.
fn ready(r: http::Response) -> (Headers, Body) {
    let shared: Rc<RefCell<Lazy>> = Rc::default();
    let headers = header_lines(&r);
    (Headers(shared.clone(), Some(headers)), Body(shared, Some(io::BufReader::with_capacity(1 << 20, r))))
}

impl Http for WasiHttp {
    type Headers = Headers;
    type ResponseBody = Body;
    type PostBody = PostBody;

    fn get(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<GetResponse<Headers, Body>> {
        let r = http::request(url, &parse_headers(headers), None).map_err(|e| to_io(e).raise())?;
        let (headers, body) = ready(r);
        Ok(GetResponse { headers, body })
    }

    fn post(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> Result<PostResponse<Headers, Body, PostBody>> {
        let lazy = Rc::new(RefCell::new(Lazy {
            request: Some((url.to_string(), parse_headers(headers))),
            ..Default::default()
        }));
        Ok(PostResponse {
            post_body: PostBody(lazy.clone()),
            headers: Headers(lazy.clone(), None),
            body: Body(lazy, None),
        })
    }

    fn configure(&mut self, _config: &dyn std::any::Any) -> Result {
        Ok(())
    }
}
