//! The HTTP/2 mode: client streams built frame by frame (the preface, SETTINGS, one to four
//! requests as HEADERS, CONTINUATION and DATA with control frames between them, a closing
//! GOAWAY), then mutated as frames (dropped, duplicated, swapped, re-typed, re-flagged,
//! moved to another stream, given a wrong length, an oversized or edited payload) or as
//! bytes; and the strict reading of the frames ringway sends back.

use std::collections::HashSet;

use super::seeded::{mutate, Rng};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// One frame to send; `length` overrides the true payload length (a lying header).
#[derive(Clone, Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
    length: Option<usize>,
}

impl Frame {
    fn new(kind: u8, flags: u8, stream: u32, payload: Vec<u8>) -> Frame {
        Frame {
            kind,
            flags,
            stream,
            payload,
            length: None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = self.length.unwrap_or(self.payload.len()) & 0xff_ffff;
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// An HPACK integer with an `n`-bit prefix, the prefix byte's other bits from `first`.
fn int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// The static table entries the encoder may refer to: (index, name, value).
const STATIC: &[(usize, &str, &str)] = &[
    (1, ":authority", ""),
    (2, ":method", "GET"),
    (3, ":method", "POST"),
    (4, ":path", "/"),
    (6, ":scheme", "http"),
    (32, "cookie", ""),
    (28, "content-length", ""),
];

/// One field in one of HPACK's representations, drawn at random: indexed (a static entry
/// that matches whole), literal with an indexed name, or a literal with a new name, each
/// without indexing, never indexed or with incremental indexing (which grows the dynamic
/// table). No Huffman: the harness reads its own blocks.
fn field(rng: &mut Rng, out: &mut Vec<u8>, name: &str, value: &str) {
    if let Some((i, _, _)) = STATIC.iter().find(|(_, n, v)| *n == name && *v == value) {
        if rng.below(3) > 0 {
            int(out, 0x80, 7, *i);
            return;
        }
    }
    let (first, bits) = match rng.below(3) {
        0 => (0x00, 4),
        1 => (0x10, 4),
        _ => (0x40, 6),
    };
    match STATIC.iter().find(|(_, n, _)| *n == name) {
        Some((i, _, _)) if rng.below(2) == 0 => int(out, first, bits, *i),
        _ => {
            out.push(first);
            string(out, name.as_bytes());
        }
    }
    string(out, value.as_bytes());
}

/// A request: method, path, fields, body.
type Template = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

const REQUESTS: &[Template] = &[
    ("GET", "/", &[], None),
    (
        "GET",
        "/v1/users?id=3",
        &[("x-debug", "1"), ("cookie", "a=1"), ("cookie", "b=2")],
        None,
    ),
    ("POST", "/submit", &[("content-length", "5")], Some("hello")),
    ("POST", "/c", &[], Some("hello")),
    ("GET", "/deny/x", &[], None),
    ("HEAD", "/h", &[], None),
    (
        "PUT",
        "/p",
        &[("expect", "100-continue"), ("content-length", "3")],
        Some("abc"),
    ),
    ("GET", "/te", &[("te", "trailers"), ("accept", "*/*")], None),
    ("OPTIONS", "*", &[], None),
    ("POST", "/deny/body", &[("content-length", "2")], Some("hi")),
    ("DELETE", "/v1/d", &[], None),
    ("GET", "/a/./b/../c", &[("user-agent", "mutation")], None),
    // gRPC calls: one forwarded with its deadline reduced, one ringway refuses (answered
    // trailers-only), one whose 1 ms deadline may pass before it is forwarded.
    (
        "POST",
        "/pkg.Svc/Call",
        &[
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "5S"),
        ],
        Some("\0\0\0\0\x01x"),
    ),
    (
        "POST",
        "/deny/pkg.Svc/Call",
        &[("content-type", "application/grpc+proto")],
        Some("\0\0\0\0\0"),
    ),
    (
        "POST",
        "/pkg.Svc/Soon",
        &[("content-type", "application/grpc"), ("grpc-timeout", "1m")],
        Some("\0\0\0\0\0"),
    ),
];

/// The tag a request on `stream` carries (and the origin echoes).
pub fn tag(stream: u32) -> String {
    format!("s{stream}")
}

/// A control frame that may come between a request's frames.
fn control(rng: &mut Rng, streams: &[u32]) -> Frame {
    let on = |rng: &mut Rng| streams.get(rng.below(streams.len())).copied().unwrap_or(1);
    match rng.below(7) {
        0 => Frame::new(PING, 0, 0, (rng.next()).to_be_bytes().to_vec()),
        1 => {
            let stream = if rng.one_in(2) { 0 } else { on(rng) };
            let inc = 1 + rng.below(1 << 20) as u32;
            Frame::new(WINDOW_UPDATE, 0, stream, inc.to_be_bytes().to_vec())
        }
        2 => {
            let mut p = Vec::new();
            for _ in 0..=rng.below(2) {
                let (id, v): (u16, u32) = match rng.below(4) {
                    0 => (0x1, rng.below(8192) as u32),
                    1 => (0x2, 0),
                    2 => (0x4, rng.below(1 << 20) as u32),
                    _ => (0x5, 16_384 + rng.below(16_384) as u32),
                };
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&v.to_be_bytes());
            }
            Frame::new(SETTINGS, 0, 0, p)
        }
        3 => Frame::new(SETTINGS, ACK, 0, Vec::new()),
        4 => {
            let dep = on(rng) + 2;
            let mut p = dep.to_be_bytes().to_vec();
            p.push(rng.next() as u8);
            Frame::new(PRIORITY, 0, on(rng), p)
        }
        5 => Frame::new(RST_STREAM, 0, on(rng), 8u32.to_be_bytes().to_vec()),
        _ => Frame::new(WINDOW_UPDATE, 0, 0, 65_535u32.to_be_bytes().to_vec()),
    }
}

/// The frames of one valid client connection.
fn frames(rng: &mut Rng) -> Vec<Frame> {
    let mut out = vec![
        Frame::new(SETTINGS, 0, 0, Vec::new()),
        Frame::new(SETTINGS, ACK, 0, Vec::new()),
    ];
    let mut opened = Vec::new();
    for i in 0..=rng.below(3) as u32 {
        let stream = 1 + 2 * i;
        opened.push(stream);
        let (method, path, fields, body) = *rng.pick(REQUESTS);
        let mut block = Vec::new();
        let tag = tag(stream);
        let mut list: Vec<(&str, &str)> = vec![
            (":method", method),
            (":scheme", "http"),
            (":authority", "a.example"),
            (":path", path),
        ];
        if rng.one_in(4) {
            list.swap(0, 3);
        }
        list.extend_from_slice(fields);
        list.push(("x-tag", &tag));
        for (n, v) in &list {
            field(rng, &mut block, n, v);
        }
        let end = if body.is_none() { END_STREAM } else { 0 };
        let mut prio = Vec::new();
        let mut flags = end;
        if rng.one_in(5) {
            flags |= PRIORITY_FLAG;
            prio.extend_from_slice(&0u32.to_be_bytes());
            prio.push(15);
        }
        if block.len() > 4 && rng.one_in(4) {
            let rest = block.split_off(rng.below(block.len()));
            prio.extend_from_slice(&block);
            out.push(Frame::new(HEADERS, flags, stream, prio));
            out.push(Frame::new(CONTINUATION, END_HEADERS, stream, rest));
        } else {
            prio.extend_from_slice(&block);
            out.push(Frame::new(HEADERS, flags | END_HEADERS, stream, prio));
        }
        if rng.one_in(3) {
            out.push(control(rng, &opened));
        }
        if let Some(body) = body {
            let b = body.as_bytes();
            let cut = if rng.one_in(2) {
                rng.below(b.len())
            } else {
                b.len()
            };
            if cut < b.len() {
                out.push(Frame::new(DATA, 0, stream, b[..cut].to_vec()));
            }
            let mut last = b[cut.min(b.len())..].to_vec();
            let mut flags = END_STREAM;
            if rng.one_in(4) {
                let pad = rng.below(8);
                let mut p = vec![pad as u8];
                p.append(&mut last);
                p.extend_from_slice(&vec![0u8; pad]);
                last = p;
                flags |= PADDED;
            }
            out.push(Frame::new(DATA, flags, stream, last));
        }
        if rng.one_in(3) {
            out.push(control(rng, &opened));
        }
    }
    out.push(Frame::new(GOAWAY, 0, 0, vec![0; 8]));
    out
}

/// One to three frame edits.
fn mutate_frames(rng: &mut Rng, frames: &mut Vec<Frame>) {
    for _ in 0..=rng.below(2) {
        let n = frames.len();
        if n == 0 {
            return;
        }
        let i = rng.below(n);
        match rng.below(9) {
            0 => {
                frames.remove(i);
            }
            1 => {
                let f = frames[i].clone();
                frames.insert(rng.below(n + 1), f);
            }
            2 if n > 1 => frames.swap(i, (i + 1) % n),
            3 => frames[i].flags = rng.next() as u8,
            4 => {
                frames[i].stream = match rng.below(3) {
                    0 => 0,
                    1 => frames[i].stream + 2,
                    _ => rng.next() as u32 & 0x7fff_ffff,
                }
            }
            5 => frames[i].kind = rng.below(12) as u8,
            6 => {
                let real = frames[i].payload.len();
                frames[i].length = Some(match rng.below(3) {
                    0 => real + 1 + rng.below(4),
                    1 => real.saturating_sub(1 + rng.below(4)),
                    _ => 16_385 + rng.below(1 << 20),
                });
            }
            7 => {
                let grown = frames[i].payload.len() + 16_385 + rng.below(4096);
                frames[i].payload.resize(grown, b'x');
            }
            _ => mutate(rng, &mut frames[i].payload),
        }
    }
}

/// One case's client bytes: the frames, mutated as frames, as bytes, or not at all.
pub fn client(rng: &mut Rng, mutated: bool) -> Vec<u8> {
    let mut frames = frames(rng);
    let bytewise = mutated && rng.one_in(3);
    if mutated && !bytewise {
        mutate_frames(rng, &mut frames);
    }
    let mut out = PREFACE.to_vec();
    for f in &frames {
        f.write(&mut out);
    }
    if bytewise {
        mutate(rng, &mut out);
    }
    out
}

/// A frame as read: type, flags, stream, payload.
type Read = (u8, u8, u32, Vec<u8>);

/// Splits `bytes` into whole frames (after the preface when `preface`); the rest, if any,
/// is a frame cut short.
fn split(bytes: &[u8], preface: bool) -> (Vec<Read>, usize) {
    let mut at = 0;
    if preface {
        if !bytes.starts_with(PREFACE) {
            return (Vec::new(), bytes.len());
        }
        at = PREFACE.len();
    }
    let mut out = Vec::new();
    while bytes.len() - at >= 9 {
        let h = &bytes[at..at + 9];
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        if bytes.len() - at - 9 < len {
            break;
        }
        let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
        out.push((h[3], h[4], stream, bytes[at + 9..at + 9 + len].to_vec()));
        at += 9 + len;
    }
    (out, bytes.len() - at)
}

/// The client's own view of its byte stream: the streams its HEADERS frames open and
/// each header block (a HEADERS frame's payload with the CONTINUATIONs after it).
pub struct Sent {
    streams: HashSet<u32>,
    /// Every stream the client sent any frame on (a reset may answer any of them).
    touched: HashSet<u32>,
    blocks: Vec<Vec<u8>>,
}

pub fn sent(client: &[u8]) -> Sent {
    let (frames, _) = split(client, true);
    let mut s = Sent {
        streams: HashSet::new(),
        touched: HashSet::new(),
        blocks: Vec::new(),
    };
    let mut in_block = false;
    for (kind, _, stream, payload) in frames {
        s.touched.insert(stream);
        match kind {
            HEADERS => {
                s.streams.insert(stream);
                s.blocks.push(payload);
                in_block = true;
            }
            CONTINUATION if in_block => {
                s.streams.insert(stream);
                if let Some(b) = s.blocks.last_mut() {
                    b.extend_from_slice(&payload);
                }
            }
            _ => in_block = false,
        }
    }
    s
}

impl Sent {
    /// Header blocks sent: no more streams than this can have been opened.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// How many header blocks carry `tag` as a plain literal (as `field` writes it); None
    /// when none does (a mutation made it, say, Huffman-coded: only the total bounds it).
    pub fn carrying(&self, tag: &[u8]) -> Option<usize> {
        if tag.len() > 126 {
            return None;
        }
        let mut lit = vec![tag.len() as u8];
        lit.extend_from_slice(tag);
        let n = self
            .blocks
            .iter()
            .filter(|b| b.windows(lit.len()).any(|w| w == lit))
            .count();
        (n > 0).then_some(n)
    }
}

/// What the client-side check saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Streams the server ended with END_STREAM (answered).
    pub answered: usize,
    /// Streams the server reset.
    pub reset: usize,
    /// Connections that ended with the server's GOAWAY.
    pub goaway: usize,
}

impl Seen {
    pub fn add(&mut self, o: &Seen) {
        self.answered += o.answered;
        self.reset += o.reset;
        self.goaway += o.goaway;
    }
}

/// Checks what ringway sent: whole frames only, SETTINGS first (or a lone GOAWAY), never a push, stream
/// frames only on streams the client opened, none on a stream after the server ended or
/// reset it, DATA only after a HEADERS.
pub fn check(received: &[u8], sent: &Sent) -> Result<Seen, String> {
    let (frames, rest) = split(received, false);
    if rest != 0 {
        return Err(format!("{rest} bytes of a frame cut short at the end"));
    }
    let mut seen = Seen::default();
    // (A preface that is not one gets a lone GOAWAY.)
    let refused = frames.len() == 1 && frames[0].0 == GOAWAY;
    if let Some((kind, flags, _, _)) = frames.first().filter(|_| !refused) {
        if *kind != SETTINGS || flags & ACK != 0 {
            return Err(format!("the first frame is of type {kind}, not SETTINGS"));
        }
    }
    let mut open: HashSet<u32> = HashSet::new();
    let mut ended: HashSet<u32> = HashSet::new();
    for (kind, flags, stream, _) in &frames {
        match *kind {
            PUSH_PROMISE => return Err("a PUSH_PROMISE".into()),
            HEADERS | DATA | RST_STREAM | CONTINUATION => {
                let known = if *kind == RST_STREAM {
                    &sent.touched
                } else {
                    &sent.streams
                };
                if *stream == 0 || !known.contains(stream) {
                    return Err(format!(
                        "frame type {kind} on stream {stream}, never opened"
                    ));
                }
                // (RST_STREAM NO_ERROR after a whole response stops an unread request body.)
                if ended.contains(stream) && *kind != RST_STREAM {
                    return Err(format!(
                        "frame type {kind} on stream {stream} after its end"
                    ));
                }
                if *kind == DATA && !open.contains(stream) {
                    return Err(format!("DATA on stream {stream} before any HEADERS"));
                }
                if *kind == RST_STREAM {
                    seen.reset += usize::from(ended.insert(*stream));
                } else {
                    open.insert(*stream);
                    if flags & END_STREAM != 0 && *kind != CONTINUATION {
                        ended.insert(*stream);
                        seen.answered += 1;
                    }
                }
            }
            GOAWAY => seen.goaway += 1,
            _ => {}
        }
    }
    Ok(seen)
}
