//! ringway's own short responses (errors, `respond` routes, 100 Continue). Bodies never
//! reveal anything about backends.

use bytes::BytesMut;

/// Standard reason phrase for `status` ("Unknown" if not known).
pub fn reason(status: u16) -> &'static str {
    todo!()
}

/// Appends a complete response: status line, `Server`-less head with `Content-Type:
/// text/plain; charset=utf-8`, `Content-Length`, `Connection: close` when `close`, any
/// `extra` fields (name, value), the empty line and the body. When `body` is None the body
/// is `"{status} {reason}\n"`. `head_only` omits the body bytes (response to HEAD) but keeps
/// the Content-Length.
pub fn write_response(
    status: u16,
    body: Option<&[u8]>,
    content_type: Option<&[u8]>,
    extra: &[(&[u8], &[u8])],
    close: bool,
    head_only: bool,
    out: &mut BytesMut,
) {
    todo!()
}

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
