//! Forwarding rules: how a request head is re-serialised for the upstream and how a response
//! head is re-serialised for the client. Hop-by-hop fields are dropped, framing fields are
//! re-derived from the parsed framing, X-Forwarded-*, Via and the request id are set from
//! what ringway saw. Never copies raw head bytes: every line is rebuilt from parsed parts.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, BytesMut};

use crate::compiled::{Compiled, HeaderEdits};
use crate::http::canned::{self, put_u64};
use crate::http::{RequestHead, ResponseHead, Version};
use crate::policy::Grant;

/// How ringway frames a body it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFraming {
    /// No body and no framing field.
    None,
    Length(u64),
    Chunked,
    /// Body until close (HTTP/1.0 clients only).
    Close,
    /// No body, but keep the upstream's framing fields (responses to HEAD, 304).
    HeadersOnly,
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Where the fields of a response head go: HTTP/1.1 writes `name: value` lines; another
/// protocol (HTTP/2's header list) collects them. A value may be written in parts.
pub trait FieldWriter {
    fn begin(&mut self, name: &[u8]);
    fn part(&mut self, value: &[u8]);
    fn end(&mut self);
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.begin(name);
        self.part(value);
        self.end();
    }
}

impl FieldWriter for BytesMut {
    fn begin(&mut self, name: &[u8]) {
        self.put_slice(name);
        self.put_slice(b": ");
    }
    fn part(&mut self, value: &[u8]) {
        self.put_slice(value);
    }
    fn end(&mut self) {
        self.put_slice(b"\r\n");
    }
}

fn put_edits(out: &mut BytesMut, edits: &HeaderEdits) {
    for (name, _, value) in &edits.set {
        put_field(out, name, value);
    }
    for (name, value) in &edits.add {
        put_field(out, name, value);
    }
}

/// An IP address as text; IPv4 without the formatting machinery (once per request).
fn put_ip(out: &mut BytesMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(b'.');
                }
                put_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// `n` as 16 lowercase hex digits.
fn put_hex16(out: &mut BytesMut, n: u64) {
    out.put_slice(&crate::trace::hex16(n));
}

fn eq(a: &[u8], lower: &[u8]) -> bool {
    a.eq_ignore_ascii_case(lower)
}

/// Writes one Via field: the message's own Via values, then ringway's entry, whose
/// received-protocol is the version the message came with ("1.0 ringway" for 1.0 peers,
/// "2 ringway" for HTTP/2 ones).
fn put_via<'a>(
    out: &mut impl FieldWriter,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    via: &[u8],
    version: Version,
) {
    out.begin(b"Via");
    for (name, value) in fields {
        if eq(name, b"via") && !value.is_empty() {
            out.part(value);
            out.part(b", ");
        }
    }
    let pseudonym = via.strip_prefix(b"1.1 ").unwrap_or(via);
    out.part(match version {
        Version::Http10 => b"1.0 ",
        Version::Http11 => b"1.1 ",
        Version::Http2 => b"2 ",
    });
    out.part(pseudonym);
    out.end();
}

/// Writes the framing field for `framing` (none for bodiless or close-delimited bodies).
fn put_framing(out: &mut BytesMut, framing: OutFraming) {
    match framing {
        OutFraming::Length(n) => {
            out.put_slice(b"Content-Length: ");
            put_u64(out, n);
            out.put_slice(b"\r\n");
        }
        OutFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::None | OutFraming::Close | OutFraming::HeadersOnly => {}
    }
}

/// What the request head builder needs besides the parsed head.
pub struct RequestCtx<'a> {
    pub cfg: &'a Compiled,
    pub edits: &'a HeaderEdits,
    /// Path to forward (normalised, rewritten by the route).
    pub path: &'a [u8],
    pub peer: IpAddr,
    pub framing: OutFraming,
    /// The upstream server, used as Host when an HTTP/1.0 client sent none.
    pub upstream_addr: SocketAddr,
    /// Written as 16 hex digits when the client sent no request id.
    pub request_id: u64,
    /// What the policy decided: the identity to announce and whether to drop credentials.
    pub grant: Option<&'a Grant>,
    /// The client connection is TLS.
    pub tls: bool,
    /// A verified client certificate's identity, for `auth.client_cert_header`.
    pub client_cert: Option<&'a [u8]>,
    /// The protocol of an upgrade ringway will tunnel: sent as `Connection: Upgrade` and
    /// `Upgrade: <it>`. None: the request's own `Upgrade` is dropped like any hop-by-hop field.
    pub upgrade: Option<&'a [u8]>,
    /// A `traceparent` ringway made: sent instead of the client's `traceparent` and
    /// `tracestate` (None: the client's valid one passes through).
    pub traceparent: Option<&'a [u8]>,
    /// A gRPC call's `grpc-timeout`, reduced by the time already spent: sent instead of
    /// the client's (None: no gRPC deadline).
    pub grpc_timeout: Option<&'a [u8]>,
}

/// `Connection: Upgrade` and `Upgrade: <protocol>`, the only hop-by-hop fields ringway sends.
fn put_upgrade(out: &mut BytesMut, protocol: &[u8]) {
    out.put_slice(b"Connection: Upgrade\r\n");
    put_field(out, b"Upgrade", protocol);
}

/// Appends `query` (with its '?', or empty) without the parameter `drop`.
fn put_query_without(out: &mut BytesMut, query: &[u8], drop: &[u8]) {
    let mut first = true;
    for pair in query
        .strip_prefix(b"?")
        .unwrap_or(query)
        .split(|&b| b == b'&')
    {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if pair.is_empty() || name == drop {
            continue;
        }
        out.put_u8(if first { b'?' } else { b'&' });
        out.put_slice(pair);
        first = false;
    }
}

/// Appends the upstream request head for `req` to `out`.
pub fn request_head(out: &mut BytesMut, req: &RequestHead, ctx: &RequestCtx<'_>) {
    out.put_slice(req.method());
    out.put_u8(b' ');
    let policy = &ctx.cfg.policy;
    let strip = ctx.grant.is_some_and(|g| g.strip_credentials);
    if req.asterisk {
        out.put_u8(b'*');
    } else {
        out.put_slice(ctx.path);
        match policy.credential_query() {
            Some(param) if strip => put_query_without(out, req.query(), param),
            _ => out.put_slice(req.query()),
        }
    }
    out.put_slice(b" HTTP/1.1\r\n");

    let trusted = ctx.cfg.is_trusted_proxy(ctx.peer);
    let rid = ctx.cfg.request_id_header.as_deref();
    let mut have_rid = false;
    let mut have_host = false;
    let mut host_value: &[u8] = b"";
    for i in 0..req.headers.len() {
        let (name, value) = req.header_at(i);
        if eq(name, b"host") {
            have_host = true;
            host_value = value;
        } else if req.is_hop_by_hop(name)
            || eq(name, b"content-length")
            || eq(name, b"expect")
            || eq(name, b"x-forwarded-for")
            || eq(name, b"x-forwarded-proto")
            || eq(name, b"x-forwarded-host")
            || eq(name, b"via")
        {
            continue;
        }
        if ctx.edits.drops(name)
            || ctx.traceparent.is_some() && (eq(name, b"traceparent") || eq(name, b"tracestate"))
            || policy.reserved_fields().iter().any(|r| eq(name, r))
            || strip && policy.credential_fields().iter().any(|r| eq(name, r))
        {
            continue;
        }
        if rid.is_some_and(|r| name.eq_ignore_ascii_case(r)) {
            have_rid = true;
        }
        if let Some(left) = ctx.grpc_timeout.filter(|_| eq(name, b"grpc-timeout")) {
            put_field(out, name, left);
            continue;
        }
        put_field(out, name, value);
    }
    if !have_host {
        // An HTTP/1.0 request without Host: its absolute-form authority, else the server.
        match req.authority {
            Some(a) => put_field(out, b"Host", a.get(&req.buf)),
            None => {
                let _ = write!(out, "Host: {}\r\n", ctx.upstream_addr);
            }
        }
    }
    put_framing(out, ctx.framing);
    put_edits(out, ctx.edits);
    if let Some(id) = ctx.grant.and_then(|g| g.identity.as_deref()) {
        if let Some(h) = policy.consumer_header() {
            put_field(out, h, &id.consumer);
        }
        match policy.groups_header() {
            Some(h) if !id.groups_value.is_empty() => put_field(out, h, &id.groups_value),
            _ => {}
        }
        for (name, value) in &id.claims {
            put_field(out, name, value);
        }
    }

    out.put_slice(b"X-Forwarded-For: ");
    if trusted {
        for i in 0..req.headers.len() {
            let (name, value) = req.header_at(i);
            if eq(name, b"x-forwarded-for") && !value.is_empty() {
                out.put_slice(value);
                out.put_slice(b", ");
            }
        }
    }
    put_ip(out, ctx.peer);
    out.put_slice(if ctx.tls {
        &b"\r\nX-Forwarded-Proto: https\r\n"[..]
    } else {
        &b"\r\nX-Forwarded-Proto: http\r\n"[..]
    });
    if let (Some(name), Some(id)) = (policy.client_cert_header(), ctx.client_cert) {
        put_field(out, name, id);
    }
    if have_host {
        put_field(out, b"X-Forwarded-Host", host_value);
    }
    if let Some(via) = &ctx.cfg.via {
        put_via(
            out,
            (0..req.headers.len()).map(|i| req.header_at(i)),
            via,
            req.version,
        );
    }
    if let Some(tp) = ctx.traceparent {
        put_field(out, b"traceparent", tp);
    }
    if let (Some(name), false) = (rid, have_rid) {
        out.put_slice(name);
        out.put_slice(b": ");
        put_hex16(out, ctx.request_id);
        out.put_slice(b"\r\n");
    }
    if let Some(protocol) = ctx.upgrade {
        put_upgrade(out, protocol);
    }
    out.put_slice(b"\r\n");
}

/// What the response head builder needs besides the parsed head.
pub struct ResponseCtx<'a> {
    pub cfg: &'a Compiled,
    pub edits: &'a HeaderEdits,
    pub framing: OutFraming,
    /// The client connection closes after this response.
    pub close: bool,
    pub client_version: Version,
    /// `Strict-Transport-Security` value to send instead of the upstream's (TLS only).
    pub hsts: Option<&'a [u8]>,
    /// A 101 that starts a tunnel: the upstream's `Upgrade` value, sent with
    /// `Connection: Upgrade` (instead of any `Connection` option of ringway's own).
    pub upgrade: Option<&'a [u8]>,
}

/// Appends the client response head for upstream response `resp` to `out` (HTTP/1.1).
pub fn response_head(out: &mut BytesMut, resp: &ResponseHead, ctx: &ResponseCtx<'_>) {
    out.put_slice(b"HTTP/1.1 ");
    put_u64(out, u64::from(resp.status));
    out.put_u8(b' ');
    let reason = resp.reason();
    if reason.is_empty() {
        out.put_slice(canned::reason(resp.status).as_bytes());
    } else {
        out.put_slice(reason);
    }
    out.put_slice(b"\r\n");
    response_fields(out, resp, ctx, |out| put_framing(out, ctx.framing));
    if let Some(protocol) = ctx.upgrade {
        put_upgrade(out, protocol);
    } else if ctx.close {
        out.put_slice(b"Connection: close\r\n");
    } else if ctx.client_version == Version::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// The fields of the client response for `resp`, whatever the client's protocol: ringway's
/// `Server`, the upstream's fields minus hop-by-hop, framing and hidden ones, then the
/// caller's framing fields (`framing`), the route's edits, HSTS and `Via`. Connection
/// options are the caller's, after these.
pub fn response_fields<W: FieldWriter>(
    out: &mut W,
    resp: &ResponseHead,
    ctx: &ResponseCtx<'_>,
    framing: impl FnOnce(&mut W),
) {
    let protect = &ctx.cfg.protect;
    match &protect.server {
        // A route's own `response_headers` edit of `Server` wins over ours.
        Some(server) if !ctx.edits.drops(b"server") => out.field(b"Server", server),
        _ => {}
    }
    let keep_framing_fields = ctx.framing == OutFraming::HeadersOnly;
    for i in 0..resp.headers.len() {
        let (name, value) = resp.header_at(i);
        let is_te = eq(name, b"transfer-encoding");
        if keep_framing_fields && is_te && ctx.client_version == Version::Http11 {
            out.field(name, value);
            continue;
        }
        if (resp.is_hop_by_hop(name) || is_te)
            || (eq(name, b"content-length") && !keep_framing_fields)
            || eq(name, b"via")
            || ctx.edits.drops(name)
            || protect.hides(name)
            || (ctx.hsts.is_some() && eq(name, b"strict-transport-security"))
        {
            continue;
        }
        out.field(name, value);
    }
    framing(out);
    for (name, _, value) in &ctx.edits.set {
        out.field(name, value);
    }
    for (name, value) in &ctx.edits.add {
        out.field(name, value);
    }
    if let Some(hsts) = ctx.hsts {
        out.field(b"Strict-Transport-Security", hsts);
    }
    if let Some(via) = &ctx.cfg.via {
        put_via(
            out,
            (0..resp.headers.len()).map(|i| resp.header_at(i)),
            via,
            resp.version,
        );
    }
}

/// The fields of a relayed 1xx interim response (103 Early Hints' `Link`s, …): the
/// upstream's minus hop-by-hop, framing and hidden ones.
pub fn interim_fields<W: FieldWriter>(out: &mut W, resp: &ResponseHead, cfg: &Compiled) {
    for i in 0..resp.headers.len() {
        let (name, value) = resp.header_at(i);
        if resp.is_hop_by_hop(name)
            || eq(name, b"transfer-encoding")
            || eq(name, b"content-length")
            || cfg.protect.hides(name)
        {
            continue;
        }
        out.field(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::parse_response_at;
    use crate::http::Limits;

    /// The client head ringway writes for `upstream` (a response head) under `config`'s
    /// first route, with `hsts` as on a TLS connection; `switching`: as a tunnel's 101.
    fn client_head(config: &str, upstream: &str, hsts: Option<&[u8]>, switching: bool) -> String {
        let text = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{config}");
        let cfg = crate::config::from_str(&text, "t.toml").expect("config");
        let cfg = Compiled::build(&cfg, "t.toml").expect("build");
        let mut resp = ResponseHead::default();
        parse_response_at(upstream.as_bytes(), &Limits::default(), false, &mut resp)
            .expect("parses")
            .expect("complete");
        let ctx = ResponseCtx {
            cfg: &cfg,
            edits: &cfg.routes[0].response_edits,
            framing: if switching {
                OutFraming::None
            } else {
                OutFraming::Length(0)
            },
            close: false,
            client_version: Version::Http11,
            hsts,
            upgrade: resp.header(b"upgrade").filter(|_| switching),
        };
        let mut out = BytesMut::new();
        response_head(&mut out, &resp, &ctx);
        String::from_utf8_lossy(&out).into_owned()
    }

    const ROUTE: &str = "[[routes]]\npath_prefix = \"/\"\nrespond = { status = 200 }\n";
    const CHATTY: &str = "HTTP/1.1 200 OK\r\nServer: nginx/1.2\r\nx-powered-by: Express\r\nX-Runtime: 0.1\r\nStrict-Transport-Security: max-age=1\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn ringway_s_server_comes_first_and_the_upstream_s_software_is_dropped() {
        let head = client_head(ROUTE, CHATTY, None, false);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: ringway\r\nStrict-Transport-Security: max-age=1\r\n\
             X-Kept: 1\r\nContent-Length: 0\r\nVia: 1.1 ringway\r\n\r\n"
        );
    }

    #[test]
    fn a_route_s_own_server_edit_wins_and_hsts_replaces_the_upstream_s() {
        let route = format!("{ROUTE}response_headers = {{ set = {{ Server = \"mine\" }} }}\n");
        let head = client_head(&route, CHATTY, Some(b"max-age=600"), false);
        assert_eq!(head.matches("Server:").count(), 1, "{head}");
        assert!(head.contains("\r\nServer: mine\r\n"), "{head}");
        assert_eq!(
            head.matches("Strict-Transport-Security").count(),
            1,
            "{head}"
        );
        assert!(
            head.contains("Strict-Transport-Security: max-age=600\r\n"),
            "{head}"
        );
    }

    #[test]
    fn an_empty_server_header_writes_no_server_field() {
        let config = format!("[protect]\nserver_header = \"\"\n{ROUTE}");
        let head = client_head(&config, CHATTY, None, false);
        assert!(!head.contains("Server"), "{head}");
    }

    #[test]
    fn a_switching_101_says_upgrade_and_keeps_the_upstream_s_handshake_fields() {
        let upstream = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Accept: abc=\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            client_head(ROUTE, upstream, None, true),
            "HTTP/1.1 101 Switching Protocols\r\nServer: ringway\r\nSec-WebSocket-Accept: abc=\r\n\
             Via: 1.1 ringway\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
        );
    }

    #[test]
    fn addresses_and_request_ids_are_written_like_their_display_forms() {
        for ip in ["127.0.0.1", "0.0.0.0", "255.10.0.9", "::1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().expect("ip");
            let mut out = BytesMut::new();
            put_ip(&mut out, ip);
            assert_eq!(&out[..], ip.to_string().as_bytes());
        }
        for n in [0u64, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let mut out = BytesMut::new();
            put_hex16(&mut out, n);
            assert_eq!(&out[..], format!("{n:016x}").as_bytes());
        }
    }
}
