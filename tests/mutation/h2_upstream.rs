//! The HTTP/2 upstream mode: one HTTP/1.1 client request goes to an `h2c` upstream whose
//! server is a real TCP listener of the case's own, and the origin answers every connection
//! with the case's script: a frame sequence for stream 1 (server SETTINGS and the ACK of
//! ringway's, a HEADERS block split or not over CONTINUATION, DATA, trailers, control frames
//! between them), mutated as frames or as bytes, written in one or two parts, the connection
//! then held open (or closed at once) until the case's client side is done.
//!
//! What ringway sends the origin is read as frames: a connection opens at most one stream,
//! a case at most two (ringway sends a stream the server never processed again once, on a
//! fresh connection). The origin itself never parses what ringway sends beyond that: its
//! answer is fixed in advance, which is what makes a case replayable.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

use ringway::compiled::Compiled;
use ringway::config::{GatewayConfig, ServerEntry, UpstreamProtocol};
use ringway::http::response::parse_response_at;
use ringway::http::{Limits, ResponseHead};
use ringway::notify::LocalNotify;

use super::seeded::{mutate, Rng};
use super::{ConnLog, Named};

/// What ringway's HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6) the origin writes.
#[derive(Clone, Copy)]
enum Kind {
    Data = 0x0,
    Headers = 0x1,
    Priority = 0x2,
    Reset = 0x3,
    Settings = 0x4,
    Ping = 0x6,
    GoAway = 0x7,
    WindowUpdate = 0x8,
    Continuation = 0x9,
}

/// The field every answer of the origin carries: a response without it is ringway's own
/// (or one whose field a mutation garbled).
const MARK: &str = "x-from-origin";

/// Frame flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// Largest frame payload ringway's client accepts (SETTINGS_MAX_FRAME_SIZE's default).
const MAX_FRAME: usize = 16_384;

/// Cases' upstream timeouts: short, since a mutated answer often leaves a stream waiting.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(300);

/// Longest an origin connection stays open, whatever happens.
const HOLD: Duration = Duration::from_secs(2);

/// The client's requests; every one is proxied.
const REQUESTS: &[&[u8]] = &[
    b"GET /a HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /pkg.Svc/Call HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\nTE: trailers\r\n\
      Content-Length: 6\r\n\r\n\0\0\0\0\x01x",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /t HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
];

/// One frame of the origin's answer.
#[derive(Clone)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn new(kind: Kind, flags: u8, stream: u32, payload: Vec<u8>) -> Frame {
        Frame {
            kind: kind as u8,
            flags,
            stream,
            payload,
        }
    }

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// How the origin answers each connection of one case.
pub struct Script {
    pub bytes: Vec<u8>,
    /// Written in two parts, this many bytes first, with this pause between.
    split: Option<(usize, Duration)>,
    /// Closes right after writing (else holds the connection open).
    close: bool,
}

/// One case: the client's request and the origin's script.
pub struct Case {
    pub client: Vec<u8>,
    pub head: bool,
    pub script: Script,
}

/// One case drawn from its seed.
pub fn case(rng: &mut Rng) -> Case {
    let request = *rng.pick(REQUESTS);
    let client = request.to_vec();
    let head = request.starts_with(b"HEAD ");
    let grpc = request.windows(16).any(|w| w == b"application/grpc");
    let mut frames = answer(rng, head, grpc);
    let mutated = rng.one_in(2);
    let bytewise = mutated && rng.one_in(3);
    if mutated && !bytewise {
        for _ in 0..=rng.below(2) {
            edit(rng, &mut frames);
        }
    }
    let mut bytes = Vec::new();
    for f in &frames {
        f.put(&mut bytes);
    }
    if bytewise {
        mutate(rng, &mut bytes);
    }
    let split = rng.one_in(3).then(|| {
        (
            rng.below(bytes.len() + 1),
            Duration::from_millis(rng.below(30) as u64),
        )
    });
    Case {
        client,
        head,
        script: Script {
            bytes,
            split,
            close: rng.one_in(5),
        },
    }
}

/// The origin's answer before any mutation, every frame well formed: its SETTINGS and ACK,
/// then stream 1's response (a `head` request or a bodiless status mostly without DATA, a
/// `grpc` one mostly 200 with a message and `grpc-status` trailers; an empty body sometimes
/// ended by an empty DATA frame; now and then a `content-length` one too large, or DATA
/// after a 204 or 304), control frames in between.
fn answer(rng: &mut Rng, head: bool, grpc: bool) -> Vec<Frame> {
    let mut frames = vec![
        settings(rng),
        Frame::new(Kind::Settings, ACK, 0, Vec::new()),
    ];
    let status: u16 = if grpc && !rng.one_in(4) {
        200
    } else {
        *rng.pick(&[200, 200, 201, 204, 304, 404, 500, 503])
    };
    let bodiless = head || status == 204 || status == 304;
    let body: Vec<u8> = if (bodiless && !rng.one_in(6)) || rng.one_in(6) {
        Vec::new()
    } else if grpc {
        b"\0\0\0\0\x02ok".to_vec()
    } else {
        match rng.below(3) {
            0 => b"ok".to_vec(),
            1 => b"hello, world".to_vec(),
            _ => vec![b'x'; 20_000],
        }
    };
    let trailers_only = grpc && rng.one_in(5);
    let trailers = !trailers_only && (grpc || rng.one_in(4));
    let mut fields = vec![(":status", status.to_string())];
    if grpc || rng.one_in(2) {
        let kind = if grpc {
            "application/grpc"
        } else {
            "text/plain"
        };
        fields.push(("content-type", kind.into()));
    }
    match rng.below(8) {
        0 | 1 => {}
        2 => fields.push(("content-length", (body.len() + 1).to_string())),
        _ => fields.push(("content-length", body.len().to_string())),
    }
    fields.push((MARK, "1".into()));
    if rng.one_in(3) {
        fields.push(("x-pad", "m".repeat(rng.below(100))));
    }
    if trailers_only {
        fields.push(("grpc-status", (*rng.pick(&["0", "14"])).into()));
    }
    let ends_at_head = trailers_only || (body.is_empty() && !trailers && !rng.one_in(3));
    header_frames(rng, &mut frames, &fields, ends_at_head);
    if !ends_at_head {
        data_frames(rng, &mut frames, &body, !trailers);
    }
    if trailers {
        let fields = if grpc {
            vec![
                ("grpc-status", (*rng.pick(&["0", "3", "14"])).to_string()),
                ("grpc-message", "m".into()),
            ]
        } else {
            vec![("x-checksum", "abc".into())]
        };
        header_frames(rng, &mut frames, &fields, true);
    }
    for _ in 0..rng.below(3) {
        let at = 1 + rng.below(frames.len());
        frames.insert(at, control(rng));
    }
    frames
}

/// A server SETTINGS frame with zero to two settings.
fn settings(rng: &mut Rng) -> Frame {
    let mut payload = Vec::new();
    for _ in 0..rng.below(3) {
        let (id, value): (u16, u32) = *rng.pick(&[
            (0x1, 4096),
            (0x1, 0),
            (0x3, 100),
            (0x3, 1),
            (0x3, 0),
            (0x4, 16),
            (0x4, 65_535),
            (0x4, 1 << 20),
            (0x5, 16_384),
            (0x5, 1 << 20),
            (0x6, 8192),
        ]);
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    Frame::new(Kind::Settings, 0, 0, payload)
}

/// A frame that may come anywhere after the first: mostly one that leaves the stream be
/// (PING, an unasked PONG, WINDOW_UPDATE, SETTINGS, PRIORITY), else RST_STREAM, GOAWAY or
/// an unasked SETTINGS ACK (a connection error).
fn control(rng: &mut Rng) -> Frame {
    let which = if rng.one_in(4) {
        5 + rng.below(3)
    } else {
        rng.below(5)
    };
    match which {
        0 => Frame::new(Kind::Ping, 0, 0, rng.next().to_be_bytes().to_vec()),
        1 => Frame::new(Kind::Ping, ACK, 0, vec![0; 8]),
        2 => {
            let inc = 1 + rng.below(1 << 16) as u32;
            let stream = rng.below(2) as u32;
            Frame::new(Kind::WindowUpdate, 0, stream, inc.to_be_bytes().to_vec())
        }
        3 => settings(rng),
        4 => Frame::new(Kind::Priority, 0, 1, vec![0, 0, 0, 0, 15]),
        5 => {
            let code: u32 = *rng.pick(&[0, 2, 7, 8]);
            Frame::new(Kind::Reset, 0, 1, code.to_be_bytes().to_vec())
        }
        6 => {
            let last = rng.below(2) as u32;
            let code: u32 = *rng.pick(&[0, 2, 11]);
            let mut payload = last.to_be_bytes().to_vec();
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(b"bye");
            Frame::new(Kind::GoAway, 0, 0, payload)
        }
        _ => Frame::new(Kind::Settings, ACK, 0, Vec::new()),
    }
}

/// `:status` in HPACK's static table (RFC 7541 Appendix A).
const STATUS_INDEX: &[(&str, u8)] = &[
    ("200", 8),
    ("204", 9),
    ("206", 10),
    ("304", 11),
    ("400", 12),
    ("404", 13),
    ("500", 14),
];

/// An HPACK string, not Huffman-coded; every one here is short enough for a one-byte length.
fn hpack_string(block: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 127, "{s:?} needs a longer HPACK length");
    block.push(s.len() as u8);
    block.extend_from_slice(s.as_bytes());
}

/// A header block: `:status` indexed or as a literal with an indexed name, every other
/// field a literal with a new name, with incremental indexing (growing ringway's dynamic
/// table) or without.
fn header_block(rng: &mut Rng, fields: &[(&str, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        if *name == ":status" {
            match STATUS_INDEX.iter().find(|(s, _)| s == value) {
                Some((_, i)) if !rng.one_in(4) => block.push(0x80 | i),
                _ => {
                    block.push(0x08);
                    hpack_string(&mut block, value);
                }
            }
            continue;
        }
        block.push(if rng.one_in(3) { 0x40 } else { 0x00 });
        hpack_string(&mut block, name);
        hpack_string(&mut block, value);
    }
    block
}

/// A HEADERS frame on stream 1 carrying `fields`, sometimes with part of its block in a
/// CONTINUATION.
fn header_frames(rng: &mut Rng, frames: &mut Vec<Frame>, fields: &[(&str, String)], end: bool) {
    let mut block = header_block(rng, fields);
    let flags = if end { END_STREAM } else { 0 };
    if block.len() > 1 && rng.one_in(4) {
        let rest = block.split_off(1 + rng.below(block.len() - 1));
        frames.push(Frame::new(Kind::Headers, flags, 1, block));
        frames.push(Frame::new(Kind::Continuation, END_HEADERS, 1, rest));
    } else {
        frames.push(Frame::new(Kind::Headers, flags | END_HEADERS, 1, block));
    }
}

/// `body` as DATA frames on stream 1 (one empty frame for an empty body, some empty ones
/// between the pieces), some padded; the last one ends the stream when `end`.
fn data_frames(rng: &mut Rng, frames: &mut Vec<Frame>, body: &[u8], end: bool) {
    let size = if rng.one_in(2) {
        MAX_FRAME
    } else {
        1 + rng.below(body.len().clamp(1, MAX_FRAME))
    };
    let pieces: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(size).collect()
    };
    let last = pieces.len() - 1;
    for (i, piece) in pieces.into_iter().enumerate() {
        let mut flags = if end && i == last { END_STREAM } else { 0 };
        let mut payload = piece.to_vec();
        if piece.len() + 8 < MAX_FRAME && rng.one_in(4) {
            let pad = rng.below(8);
            flags |= PADDED;
            payload.insert(0, pad as u8);
            payload.resize(payload.len() + pad, 0);
        }
        frames.push(Frame::new(Kind::Data, flags, 1, payload));
        // An empty DATA frame is legal anywhere in a body.
        if i < last && rng.one_in(4) {
            frames.push(Frame::new(Kind::Data, 0, 1, Vec::new()));
        }
    }
}

/// One frame edit: drop, copy elsewhere, flip a flag, move to another stream, re-type, or
/// mutate the payload's bytes.
fn edit(rng: &mut Rng, frames: &mut Vec<Frame>) {
    if frames.is_empty() {
        return;
    }
    let i = rng.below(frames.len());
    match rng.below(6) {
        0 => {
            frames.remove(i);
        }
        1 => {
            let copy = frames[i].clone();
            frames.insert(rng.below(frames.len() + 1), copy);
        }
        2 => frames[i].flags ^= 1 << rng.below(8),
        3 => frames[i].stream = rng.below(4) as u32,
        4 => frames[i].kind = rng.below(10) as u8,
        _ => mutate(rng, &mut frames[i].payload),
    }
}

/// The test config (`base`) with its upstream at `addr`, spoken to in h2c, and short
/// upstream timeouts.
pub fn compiled(base: &GatewayConfig, addr: SocketAddr) -> Result<Compiled, String> {
    let mut cfg = base.clone();
    let up = &mut cfg.upstreams[0];
    up.servers = vec![ServerEntry::Address(addr.to_string())];
    up.protocol = UpstreamProtocol::H2c;
    cfg.timeouts.upstream_connect.0 = UPSTREAM_TIMEOUT;
    cfg.timeouts.upstream_response.0 = UPSTREAM_TIMEOUT;
    Compiled::build(&cfg, "mutation.toml").map_err(|e| e.to_string())
}

/// Set once a case's client side is done: its origin stops accepting and closes.
#[derive(Default)]
pub struct Ended {
    done: Cell<bool>,
    wake: LocalNotify,
}

impl Ended {
    pub fn set(&self) {
        self.done.set(true);
        self.wake.notify_all();
    }

    async fn wait(&self) {
        while !self.done.get() {
            self.wake.notified().await;
        }
    }
}

/// The case's origin: answers every connection to `listener` with `script` until the case
/// ends, recording what each received in `logs`.
pub async fn origin(
    listener: TcpListener,
    script: Rc<Script>,
    logs: Rc<RefCell<Vec<ConnLog>>>,
    ended: Rc<Ended>,
    case: Rc<str>,
) {
    let mut conns = Vec::new();
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r.ok(),
            _ = ended.wait() => None,
        };
        let Some((stream, _)) = accepted else { break };
        let log = ConnLog::default();
        logs.borrow_mut().push(log.clone());
        let conn = answer_conn(stream, script.clone(), log, ended.clone());
        conns.push(monoio::spawn(Named::new(case.clone(), conn)));
    }
    for conn in conns {
        conn.await;
    }
}

/// One origin connection: waits for ringway's preface, writes the script, then reads until
/// ringway closes, the case ends or `HOLD` passed (or closes at once if the script says so).
async fn answer_conn(mut s: TcpStream, script: Rc<Script>, log: ConnLog, ended: Rc<Ended>) {
    let until = Instant::now() + HOLD;
    while log.borrow().len() < PREFACE.len() {
        if !read_into(&mut s, &log, until).await {
            return;
        }
    }
    let at = script.split.map_or(script.bytes.len(), |(at, _)| at);
    let (first, rest) = script.bytes.split_at(at);
    for (i, part) in [first, rest].into_iter().enumerate() {
        if let (1, Some((_, pause))) = (i, script.split) {
            monoio::time::sleep(pause).await;
        }
        let (res, _) = s.write_all(part.to_vec()).await;
        if res.is_err() {
            return;
        }
    }
    if script.close {
        return;
    }
    loop {
        let more = monoio::select! {
            more = read_into(&mut s, &log, until) => more,
            _ = ended.wait() => false,
        };
        if !more {
            return;
        }
    }
}

/// One read into `log` before `until`; false at EOF, on an error or at the deadline.
async fn read_into(s: &mut TcpStream, log: &ConnLog, until: Instant) -> bool {
    match monoio::time::timeout_at(until.into(), s.read(vec![0u8; 16 * 1024])).await {
        Ok((Ok(n), buf)) if n > 0 => {
            log.borrow_mut().extend_from_slice(&buf[..n]);
            true
        }
        _ => false,
    }
}

/// The streams ringway opened on one origin connection (HEADERS frames' stream ids, from
/// the whole frames after the preface); Err if the connection does not start with the
/// preface.
pub fn streams_opened(log: &[u8]) -> Result<usize, String> {
    let Some(mut rest) = log.strip_prefix(PREFACE) else {
        return if PREFACE.starts_with(log) {
            Ok(0)
        } else {
            Err("the upstream connection does not start with the HTTP/2 preface".into())
        };
    };
    let mut streams = BTreeSet::new();
    while let [a, b, c, kind, _, s0, s1, s2, s3, after @ ..] = rest {
        let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
        if after.len() < len {
            break;
        }
        if *kind == Kind::Headers as u8 {
            streams.insert(u32::from_be_bytes([s0 & 0x7f, *s1, *s2, *s3]));
        }
        rest = &after[len..];
    }
    Ok(streams.len())
}

/// How the client's one request was answered, summed over cases.
#[derive(Debug, Default)]
pub struct Answers {
    /// The origin's answer relayed whole (it carries `MARK`), and how many of them were
    /// 2xx.
    pub relayed: usize,
    pub relayed_2xx: usize,
    /// ringway's own answers, by status.
    pub own: BTreeMap<u16, usize>,
    /// A relayed answer cut short: ringway closed the connection mid-body.
    pub aborted: usize,
}

impl Answers {
    pub fn add(&mut self, o: &Answers) {
        self.relayed += o.relayed;
        self.relayed_2xx += o.relayed_2xx;
        for (status, n) in &o.own {
            *self.own.entry(*status).or_default() += n;
        }
        self.aborted += o.aborted;
    }

    /// The answer to one request: `received` already passed `wire::check_responses`, which
    /// counted it in `tally` (whole, or cut short).
    pub fn of(received: &[u8], head: bool, tally: &super::wire::Tally) -> Answers {
        let mut a = Answers::default();
        let mut r = ResponseHead::default();
        if tally.cut > 0 {
            a.aborted = 1;
        } else if let Ok(Some(_)) = parse_response_at(received, &Limits::default(), head, &mut r) {
            if r.header(MARK.as_bytes()).is_some() {
                a.relayed = 1;
                a.relayed_2xx = usize::from((200..300).contains(&r.status));
            } else {
                a.own.insert(r.status, 1);
            }
        }
        a
    }
}
