//! An HTTP client for fetchers, over wasi:http.
//!
//! It follows redirects itself, one request per hop, so the host's outbound
//! policy sees (and may refuse) every host on the way. Bodies stream: read
//! them with [`std::io::Read`]. URLs are shown with their credentials
//! removed ([`redact`]); credentials become an `Authorization` header that is
//! dropped when a redirect leaves the original host.

use std::io::{self, Read};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingRequest, Scheme};
use wasip2::io::streams::InputStream;

use crate::FetchError;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: u32 = 10;

/// A response whose body is being streamed.
pub struct Response {
    pub status: u16,
    /// The URL that answered, after redirects, without credentials.
    pub url: String,
    pub headers: Vec<(String, String)>,
    // Drop order matters: the stream before its body before its response.
    stream: InputStream,
    _body: IncomingBody,
    _response: IncomingResponse,
}

impl Response {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use wasip2::io::streams::StreamError;
        match self.stream.blocking_read(buf.len() as u64) {
            Ok(data) => {
                buf[..data.len()].copy_from_slice(&data);
                Ok(data.len())
            }
            Err(StreamError::Closed) => Ok(0),
            Err(StreamError::LastOperationFailed(e)) => {
                let what = match wasip2::http::types::http_error_code(&e) {
                    Some(ErrorCode::ConnectionReadTimeout) => "the server stopped sending (timed out)".to_string(),
                    Some(code) => format!("{code:?}"),
                    None => e.to_debug_string(),
                };
                Err(io::Error::other(what))
            }
        }
    }
}

/// `https://user:pass@host/p` → `https://host/p`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

/// GETs `url`, following up to [`MAX_REDIRECTS`] redirects, and returns the
/// first non-redirect answer if it is a success (2xx).
pub fn get(url: &str) -> Result<Response, FetchError> {
    request(url, &[], None)
}

/// Like [`get`], with extra headers, or a POST when `body` is given (POSTs
/// are not redirected to another host).
pub fn request(url: &str, extra: &[(String, String)], body: Option<&[u8]>) -> Result<Response, FetchError> {
    let r = send(url, extra, body)?;
    if !(200..300).contains(&r.status) {
        let msg =
            format!("{} {}: the server answered HTTP {}", if body.is_some() { "POST" } else { "GET" }, r.url, r.status);
        return Err(if matches!(r.status, 404 | 410) { FetchError::NotFound(msg) } else { FetchError::Network(msg) });
    }
    Ok(r)
}

/// Like [`request`], but any final status is returned, not turned into an
/// error: for protocols that answer 401 with what to do next.
pub fn send(url: &str, extra: &[(String, String)], body: Option<&[u8]>) -> Result<Response, FetchError> {
    let mut current = url::Url::parse(url).map_err(|e| FetchError::InvalidSource(format!("{}: {e}", redact(url))))?;
    let origin_host = current.host_str().map(str::to_string);
    let auth = basic_auth(&current);
    for _ in 0..=MAX_REDIRECTS {
        let shown = redact(current.as_str());
        let same_host = current.host_str().map(str::to_string) == origin_host;
        let response = send_one(&current, if same_host { auth.as_deref() } else { None }, extra, body)
            .map_err(|e| error(&shown, &e))?;
        let status = response.status();
        let headers: Vec<(String, String)> = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        if matches!(status, 301 | 302 | 303 | 307 | 308) && body.is_none() {
            let location =
                headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone()).ok_or_else(
                    || FetchError::Network(format!("GET {shown}: redirect {status} without a Location header")),
                )?;
            current = current
                .join(&location)
                .map_err(|e| FetchError::Network(format!("GET {shown}: redirect to a bad URL {location:?}: {e}")))?;
            continue;
        }
        let body = response.consume().map_err(|_| FetchError::Network(format!("GET {shown}: no response body")))?;
        let stream = body.stream().map_err(|_| FetchError::Network(format!("GET {shown}: no response body")))?;
        return Ok(Response { status, url: shown, headers, stream, _body: body, _response: response });
    }
    Err(FetchError::Network(format!("GET {}: more than {MAX_REDIRECTS} redirects", redact(url))))
}

fn send_one(
    url: &url::Url,
    auth: Option<&str>,
    extra: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<IncomingResponse, ErrorCode> {
    let headers = Fields::new();
    let _ = headers.append("user-agent", format!("attune/{}", env!("CARGO_PKG_VERSION")).as_bytes());
    if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
        let _ = headers.append("accept", b"*/*");
    }
    for (k, v) in extra {
        let _ = headers.append(&k.to_ascii_lowercase(), v.as_bytes());
    }
    if let Some(a) = auth {
        let _ = headers.append("authorization", a.as_bytes());
    }
    // A known length, not chunked: CGI servers (git http-backend) need it.
    if let Some(b) = body {
        let _ = headers.append("content-length", b.len().to_string().as_bytes());
    }
    let request = OutgoingRequest::new(headers);
    let _ = request.set_method(if body.is_some() { &Method::Post } else { &Method::Get });
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => Scheme::Other(other.to_string()),
    };
    let _ = request.set_scheme(Some(&scheme));
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(ErrorCode::HttpRequestUriInvalid),
    };
    let _ = request.set_authority(Some(&authority));
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let _ = request.set_path_with_query(Some(&path));
    // The body is written after `handle`: writing it first can stall.
    let outgoing = match body {
        Some(_) => Some(request.body().map_err(|_| ErrorCode::InternalError(Some("no request body".into())))?),
        None => None,
    };
    let future = outgoing_handler::handle(request, None)?;
    if let (Some(out), Some(data)) = (outgoing, body) {
        {
            let stream = out.write().map_err(|_| ErrorCode::InternalError(Some("no body stream".into())))?;
            for chunk in data.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|_| ErrorCode::InternalError(Some("writing the request body failed".into())))?;
            }
        }
        wasip2::http::types::OutgoingBody::finish(out, None)?;
    }
    future.subscribe().block();
    match future.get() {
        Some(Ok(r)) => r,
        _ => Err(ErrorCode::InternalError(Some("the response was lost".into()))),
    }
}

fn error(url: &str, e: &ErrorCode) -> FetchError {
    match e {
        ErrorCode::HttpRequestDenied => FetchError::Denied(format!("GET {url}: refused by attune's outbound policy")),
        ErrorCode::DestinationIpProhibited => FetchError::Denied(format!("GET {url}: the address is not allowed")),
        ErrorCode::ConnectionRefused => FetchError::Network(format!("GET {url}: connection refused")),
        ErrorCode::ConnectionTimeout => FetchError::Network(format!("GET {url}: timed out connecting")),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            FetchError::Network(format!("GET {url}: timed out waiting for the server"))
        }
        ErrorCode::DnsError(_) | ErrorCode::DnsTimeout | ErrorCode::DestinationNotFound => {
            FetchError::Network(format!("GET {url}: the host name does not resolve"))
        }
        ErrorCode::TlsCertificateError | ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => {
            FetchError::Network(format!("GET {url}: TLS failed ({e:?})"))
        }
        other => FetchError::Network(format!("GET {url}: {other:?}")),
    }
}

fn basic_auth(url: &url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode(url.username());
    let pass = url.password().map(percent_decode).unwrap_or_default();
    Some(basic_authorization(&user, &pass))
}

/// An `Authorization` header value for HTTP basic auth.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("https://u:secret@example.com/a?b"), "https://example.com/a?b");
        assert_eq!(redact("https://example.com/a"), "https://example.com/a");
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(base64(b"Aladdin:open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        let u = url::Url::parse("https://us%40r:p%3Ass@h/").unwrap();
        assert_eq!(basic_auth(&u).unwrap(), format!("Basic {}", base64(b"us@r:p:ss")));
    }
}
