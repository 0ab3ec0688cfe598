//! One access log line: the fields of one answered request and their JSON form. Secrets
//! never get here: the path has no query, no field value is logged (the request id and a
//! valid `traceparent` excepted), the consumer is a name.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use super::json::{put_key, put_ms, put_str, put_u64};
use super::time::put_rfc3339;

/// The request id a line shows.
#[derive(Clone, Copy, Debug)]
pub enum RequestId<'a> {
    /// The client's own id, forwarded as it was.
    Client(&'a [u8]),
    /// ringway's id, sent upstream as 16 hex digits.
    Own(u64),
}

/// The fields of one line (see docs/operations.md, "Access log").
#[derive(Debug)]
pub struct Line<'a> {
    pub time: SystemTime,
    pub request_id: RequestId<'a>,
    pub trace_id: &'a [u8],
    pub client_ip: IpAddr,
    pub method: &'a [u8],
    /// The normalised path, without the query.
    pub path: &'a [u8],
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream_connect: Option<Duration>,
    pub upstream_header: Option<Duration>,
    pub route: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    pub consumer: Option<&'a [u8]>,
    pub tls: bool,
    /// The protocol the request came with (`HTTP/1.1`, `HTTP/2`...); empty for a head
    /// that did not parse.
    pub protocol: &'a [u8],
    /// The gRPC status of a gRPC answer (see `RequestLog::grpc_status`).
    pub grpc_status: Option<u16>,
}

impl Line<'_> {
    /// Appends the line, newline included.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        put_key(out, "time");
        out.push(b'"');
        put_rfc3339(out, self.time);
        out.extend_from_slice(b"\",");
        put_key(out, "request_id");
        match self.request_id {
            RequestId::Client(v) => put_str(out, v),
            RequestId::Own(n) => {
                let _ = write!(out, "\"{n:016x}\"");
            }
        }
        out.push(b',');
        put_key(out, "trace_id");
        put_str(out, self.trace_id);
        out.push(b',');
        put_key(out, "client_ip");
        let _ = write!(out, "\"{}\",", self.client_ip);
        put_key(out, "method");
        put_str(out, self.method);
        out.push(b',');
        put_key(out, "path");
        put_str(out, self.path);
        out.push(b',');
        for (key, n) in [
            ("status", u64::from(self.status)),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
        ] {
            put_key(out, key);
            put_u64(out, n);
            out.push(b',');
        }
        put_key(out, "duration_ms");
        put_ms(out, self.duration);
        for (key, d) in [
            ("upstream_connect_ms", self.upstream_connect),
            ("upstream_header_ms", self.upstream_header),
        ] {
            out.push(b',');
            put_key(out, key);
            match d {
                Some(d) => put_ms(out, d),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b',');
        put_key(out, "route");
        put_opt(out, self.route.map(str::as_bytes));
        put_key(out, "upstream");
        match self.upstream {
            Some(a) => {
                let _ = write!(out, "\"{a}\",");
            }
            None => out.extend_from_slice(b"null,"),
        }
        put_key(out, "consumer");
        put_opt(out, self.consumer);
        put_key(out, "tls");
        out.extend_from_slice(if self.tls { b"true," } else { b"false," });
        put_key(out, "protocol");
        put_str(out, self.protocol);
        out.push(b',');
        put_key(out, "grpc_status");
        match self.grpc_status {
            Some(n) => put_u64(out, u64::from(n)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}\n");
    }
}

/// A string or null, then a comma.
fn put_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => put_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let line = Line {
            time: SystemTime::UNIX_EPOCH,
            request_id: RequestId::Client(b"a\"b"),
            trace_id: b"0123456789abcdef0123456789abcdef",
            client_ip: "::1".parse().expect("ip"),
            method: b"GET",
            path: b"/p\xff",
            status: 200,
            bytes_in: 3,
            bytes_out: 120,
            duration: Duration::from_micros(1500),
            upstream_connect: Some(Duration::from_micros(250)),
            upstream_header: None,
            route: Some("api"),
            upstream: Some("127.0.0.1:9".parse().expect("addr")),
            consumer: None,
            tls: true,
            protocol: b"HTTP/2",
            grpc_status: Some(7),
        };
        let mut out = Vec::new();
        line.write_to(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["request_id"], "a\"b");
        assert_eq!(v["client_ip"], "::1");
        assert_eq!(v["path"], "/p\u{fffd}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_connect_ms"], 0.25);
        assert!(v["upstream_header_ms"].is_null());
        assert_eq!(v["route"], "api");
        assert_eq!(v["upstream"], "127.0.0.1:9");
        assert!(v["consumer"].is_null());
        assert_eq!(v["tls"], true);
        assert_eq!(v["protocol"], "HTTP/2");
        assert_eq!(v["grpc_status"], 7);
        assert_eq!(v.as_object().map(|o| o.len()), Some(18));
    }
}
