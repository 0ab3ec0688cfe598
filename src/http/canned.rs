//! ringway's own short responses (errors, `respond` routes, 100 Continue). Bodies never
//! reveal anything about backends.

use bytes::{BufMut, BytesMut};

/// Standard reason phrase for `status` ("Unknown" if not known).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends `n` in decimal without allocating.
pub fn put_u64(out: &mut impl BufMut, n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put_slice(&tmp[i..]);
}

/// One response of ringway's own (an error, a `respond` route).
#[derive(Clone, Copy, Debug)]
pub struct Canned<'a> {
    pub status: u16,
    /// None: `"{status} {reason}\n"`.
    pub body: Option<&'a [u8]>,
    /// None: `text/plain; charset=utf-8`.
    pub content_type: Option<&'a [u8]>,
    /// `Server` value; None: no `Server` field.
    pub server: Option<&'a [u8]>,
    /// Further fields (name, value), written after the others.
    pub extra: &'a [(&'a [u8], &'a [u8])],
    /// Adds `Connection: close`.
    pub close: bool,
    /// Adds `Connection: keep-alive` (unless `close`): an HTTP/1.0 client that asked for it.
    pub keep_alive: bool,
    /// Omit the body bytes (response to HEAD) but keep the Content-Length.
    pub head_only: bool,
}

impl<'a> Canned<'a> {
    /// A short error: default body, no `Server`, no extra fields, kept open, with body.
    pub fn status(status: u16) -> Canned<'a> {
        Canned {
            status,
            body: None,
            content_type: None,
            server: None,
            extra: &[],
            close: false,
            keep_alive: false,
            head_only: false,
        }
    }
}

/// Appends a complete response: status line, `Server` when set, `Content-Type`,
/// `Content-Length`, `Connection: close` when `close`, the `extra` fields, the empty line
/// and the body (unless `head_only`). 1xx, 204 and 304 get neither a body nor a
/// Content-Length.
pub fn write_response(r: &Canned<'_>, out: &mut BytesMut) {
    let Canned {
        status,
        body,
        content_type,
        server,
        extra,
        close,
        keep_alive,
        head_only,
    } = *r;
    let reason = reason(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    put_u64(out, u64::from(status));
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(server) = server {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(server);
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status == 204 || status == 304 || status < 200;
    if !bodiless {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.unwrap_or(b"text/plain; charset=utf-8"));
        out.extend_from_slice(b"\r\nContent-Length: ");
        let len = match body {
            Some(b) => b.len(),
            // "{status} {reason}\n"
            None => 3 + 1 + reason.len() + 1,
        };
        put_u64(out, len as u64);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if keep_alive {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    for (name, value) in extra {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if head_only || bodiless {
        return;
    }
    match body {
        Some(b) => out.extend_from_slice(b),
        None => {
            put_u64(out, u64::from(status));
            out.extend_from_slice(b" ");
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(b"\n");
        }
    }
}

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
