//! The request's life is protocol-neutral: it runs, unchanged, for a front end that is not
//! HTTP/1.1. This suite drives `pipeline::serve` with an in-memory front end (a head built
//! from parts with `http::request_from_parts`, a body handed over in pieces, a sink that
//! records what it is given, as an HTTP/2 stream would) in front of a real origin on
//! loopback, and checks both sides: what the origin received, and what the front end was
//! asked to send.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::io::OwnedWriteHalf;

use ringway::accesslog::RequestLog;
use ringway::compiled::Compiled;
use ringway::http::canned::Canned;
use ringway::http::chunked::{put_chunk_header, CHUNK_END, LAST_CHUNK};
use ringway::http::{request_from_parts, BodyFraming, ResponseHead};
use ringway::io::deadline::BodyDeadline;
use ringway::io::{IoFail, Stream, TcpConnector, UpConn};
use ringway::pipeline::{
    flush_upstream, serve, BodySource, Client, ConnMeta, Front, HeadOut, Next, Payload, Pump,
    Request, ResponseSink, SendFail, Shared, Tunnel,
};
use ringway_test_support::{dead_addr, Origin, Reply};

/// A body handed over in pieces, as DATA frames would be; relayed upstream as the
/// pipeline's framing says (chunked when its length is unknown).
#[derive(Default)]
struct Pieces {
    left: VecDeque<Vec<u8>>,
    framing: Option<BodyFraming>,
    relayed: u64,
}

impl BodySource for Pieces {
    fn begin(&mut self, framing: BodyFraming, _limit: u64, _max_trailer: usize) {
        self.framing = Some(framing);
    }

    fn stage(&mut self, _out: &mut BytesMut) -> Result<(), SendFail> {
        // Nothing is at hand before the pump asks for it.
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.framing == Some(BodyFraming::None)
    }

    async fn pump<U: Stream>(
        &mut self,
        out: &mut BytesMut,
        w: &mut OwnedWriteHalf<U>,
        p: Pump<'_>,
    ) -> Result<(), SendFail> {
        let chunked = self.framing == Some(BodyFraming::Chunked);
        while let Some(piece) = self.left.pop_front() {
            if chunked {
                put_chunk_header(piece.len(), out);
            }
            out.extend_from_slice(&piece);
            if chunked {
                out.extend_from_slice(CHUNK_END);
            }
            self.relayed += piece.len() as u64;
            flush_upstream(w, out, p.write).await?;
        }
        if chunked {
            out.extend_from_slice(LAST_CHUNK);
            flush_upstream(w, out, p.write).await?;
        }
        Ok(())
    }

    fn relayed(&self, _framing: BodyFraming) -> u64 {
        self.relayed
    }

    async fn next_payload(&mut self, _deadline: BodyDeadline) -> Result<Payload, SendFail> {
        Ok(match self.left.pop_front() {
            Some(piece) => {
                self.relayed += piece.len() as u64;
                Payload::Data(piece.into())
            }
            None => Payload::End(None),
        })
    }
}

/// What the pipeline asked the front end to send.
#[derive(Default)]
struct Record {
    log: RequestLog,
    /// ringway's own answers: status, `close`, body.
    answers: Vec<(u16, bool, Vec<u8>)>,
    /// A relayed response's head: status and fields.
    head: Option<(u16, Vec<(String, String)>)>,
    data: Vec<u8>,
    ended: bool,
}

impl ResponseSink for Record {
    fn log(&mut self) -> &mut RequestLog {
        &mut self.log
    }

    async fn answer(&mut self, a: &Canned<'_>, _write: Duration) -> Result<(), IoFail> {
        self.answers
            .push((a.status, a.close, a.body.unwrap_or_default().to_vec()));
        Ok(())
    }

    fn start(&mut self, resp: &ResponseHead, out: &HeadOut<'_>) -> bool {
        let fields = (0..resp.headers.len())
            .map(|i| resp.header_at(i))
            .map(|(n, v)| (text(n), text(v)))
            .collect();
        self.head = Some((resp.status, fields));
        out.close
    }

    fn join_head(&mut self, buf: &mut BytesMut, at: usize) -> usize {
        buf.advance(at);
        0
    }

    fn put(&mut self, payload: &[u8]) {
        self.data.extend_from_slice(payload);
    }

    fn begin_run(&mut self, _len: u64) {}

    fn end_run(&mut self) {}

    fn end(&mut self) {
        self.ended = true;
    }

    fn is_empty(&self) -> bool {
        true
    }

    fn holds_framing_only(&self) -> bool {
        false
    }

    async fn flush(&mut self, _write: Duration) -> Result<(), IoFail> {
        Ok(())
    }

    async fn send(&mut self, buf: &mut BytesMut, _write: Duration) -> Result<(), IoFail> {
        self.data.extend_from_slice(buf);
        buf.clear();
        Ok(())
    }
}

struct Memory {
    body: Pieces,
    sink: Record,
}

impl Front for Memory {
    type Body = Pieces;
    type Sink = Record;

    async fn forwarding(
        &mut self,
        _head: &ringway::http::RequestHead,
        _write: Duration,
    ) -> Result<(), IoFail> {
        Ok(())
    }

    fn body(&mut self) -> &mut Pieces {
        &mut self.body
    }

    fn sink(&mut self) -> &mut Record {
        &mut self.sink
    }

    fn split(&mut self) -> (&mut Pieces, &mut Record) {
        (&mut self.body, &mut self.sink)
    }

    async fn tunnel<U: Stream>(&mut self, _conn: &mut UpConn<U>, _t: Tunnel<'_>) -> Next {
        Next::Close
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn config(origin: SocketAddr) -> Rc<Compiled> {
    let toml = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{origin}\"]\n\n\
         [[upstreams]]\nname = \"dead\"\nservers = [\"{}\"]\n\n\
         [rules]\ndeny_paths = [{{ prefix = \"/internal\" }}]\n\n\
         [[routes]]\nhost = \"api.example\"\npath_prefix = \"/hello\"\n\
         respond = {{ status = 418, body = \"teapot\" }}\n\n\
         [[routes]]\nhost = \"api.example\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\n\
         [[routes]]\nhost = \"api.example\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        dead_addr()
    );
    let cfg = ringway::config::from_str(&toml, "contract.toml").expect("config parses");
    Rc::new(Compiled::build(&cfg, "contract.toml").expect("config compiles"))
}

/// One request through the pipeline: head from parts, body in `pieces`; returns what the
/// front end recorded and what the pipeline said the connection does next.
fn exchange(
    origin: SocketAddr,
    method: &str,
    target: &str,
    fields: &[(&str, &str)],
    framing: BodyFraming,
    pieces: &[&str],
) -> (Record, Next) {
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cfg = config(origin);
        let shared = Rc::new(Shared::new(cfg.clone(), TcpConnector, 16, 0, 7));
        let client = Client {
            peer: "192.0.2.9:40000".parse().expect("address"),
            meta: ConnMeta::default(),
        };
        let mut req = Request::default();
        let parts = fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let head = request_from_parts(
            method.as_bytes(),
            b"api.example",
            target.as_bytes(),
            parts,
            framing,
            &cfg.limits,
            &mut req.head,
        );
        let mut front = Memory {
            body: Pieces {
                left: pieces.iter().map(|p| p.as_bytes().to_vec()).collect(),
                ..Pieces::default()
            },
            sink: Record::default(),
        };
        let started = Instant::now();
        let next = serve(
            &shared,
            &cfg,
            &client,
            &mut req,
            &mut front,
            started,
            head.map_err(ringway::pipeline::ClientFault::Head),
        )
        .await;
        (front.sink, next)
    })
}

#[test]
fn a_request_from_parts_is_routed_forwarded_and_its_response_handed_to_the_sink() {
    let origin = Origin::ok("from the origin");
    let (rec, next) = exchange(
        origin.addr(),
        "GET",
        "/v1/./items?page=2",
        &[("accept", "text/plain"), ("x-trace", "1")],
        BodyFraming::None,
        &[],
    );
    assert_eq!(next, Next::KeepAlive);
    assert!(rec.answers.is_empty(), "no answer of ringway's own");
    let (status, fields) = rec.head.expect("a relayed head");
    assert_eq!(status, 200);
    assert!(fields
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
    assert_eq!(rec.data, b"from the origin");
    assert_eq!(rec.log.final_status(), 200);
    let seen = origin.wait_requests(1);
    assert_eq!(seen[0].target, "/v1/items?page=2", "normalised, query kept");
    assert_eq!(seen[0].header("host"), Some("api.example"));
    assert_eq!(seen[0].header("accept"), Some("text/plain"));
    assert_eq!(seen[0].header("x-forwarded-for"), Some("192.0.2.9"));
    assert!(seen[0].header("x-request-id").is_some());
}

#[test]
fn a_body_of_unknown_length_streams_upstream_chunked_and_the_answer_streams_back() {
    let origin = Origin::start(Reply::echo);
    let (rec, next) = exchange(
        origin.addr(),
        "POST",
        "/echo",
        &[("content-type", "text/plain")],
        BodyFraming::Chunked,
        &["one ", "two ", "three"],
    );
    assert_eq!(next, Next::KeepAlive);
    assert_eq!(rec.head.as_ref().map(|h| h.0), Some(200));
    assert_eq!(rec.data, b"one two three");
    assert_eq!(rec.log.bytes_in, 13);
    let seen = origin.wait_requests(1);
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].body, b"one two three");
}

#[test]
fn ringways_own_answers_go_to_the_sink_and_nothing_reaches_the_origin() {
    let origin = Origin::ok("never");
    let cases = [
        ("/hello", 418, Some("teapot")),
        ("/internal/x", 403, None),
        ("/dead/x", 502, None),
    ];
    for (target, status, body) in cases {
        let (rec, _) = exchange(origin.addr(), "GET", target, &[], BodyFraming::None, &[]);
        assert!(rec.head.is_none(), "{target}: nothing relayed");
        assert_eq!(rec.answers.len(), 1, "{target}: answered once");
        assert_eq!(rec.answers[0].0, status, "{target}");
        if let Some(b) = body {
            assert_eq!(rec.answers[0].2, b.as_bytes());
        }
        assert_eq!(rec.log.final_status(), status);
    }
    assert!(origin.requests().is_empty());
}

#[test]
fn a_head_that_breaks_the_rules_is_refused_by_the_pipeline_with_a_close() {
    let origin = Origin::ok("never");
    for (target, fields) in [
        ("/x/..%2fadmin", &[][..]),
        ("/ok", &[("bad name", "v")][..]),
        ("/ok", &[("content-length", "5")][..]),
        ("/ok", &[("x", "a\r\nInjected: 1")][..]),
    ] {
        let (rec, next) = exchange(origin.addr(), "GET", target, fields, BodyFraming::None, &[]);
        assert_eq!(next, Next::Close, "{target} {fields:?}");
        assert_eq!(rec.answers.len(), 1);
        assert_eq!(
            (rec.answers[0].0, rec.answers[0].1),
            (400, true),
            "{target} {fields:?}"
        );
    }
    assert!(origin.requests().is_empty());
}
