//! Strict readers for what crossed each wire, all built on ringway's own strict parsers:
//! the requests the origin received, the model of what ringway must do with each request
//! of the client's stream, and the check of the responses the client received against it.

use bytes::{Buf, BytesMut};

use ringway::compiled::{Action, Compiled};
use ringway::http::chunked::{ChunkEvent, ChunkedDecoder};
use ringway::http::{
    parse_request, parse_response, BodyFraming, Limits, RequestHead, ResponseFraming, ResponseHead,
};

/// The field a client request carries so its answer can be told apart, and the field the
/// origin echoes it in.
pub const TAG: &[u8] = b"x-tag";
pub const TAG_ECHO: &[u8] = b"x-tag-echo";

/// Limits for reading what ringway sent: generous, since ringway's own limits are
/// checked by ringway.
fn loose() -> Limits {
    Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 256,
        max_uri_bytes: 16 * 1024,
        ..Limits::default()
    }
}

/// How a message body at the front of a buffer ended.
pub enum Body {
    /// Complete: consumed from the buffer.
    Complete,
    /// The buffer ended inside the body.
    Truncated,
    Invalid(String),
}

/// Skips a chunked body, decoding it strictly with `dec`.
fn skip_chunked(buf: &mut BytesMut, mut dec: ChunkedDecoder) -> Body {
    loop {
        match dec.step(buf) {
            Ok(ChunkEvent::Data { end, .. }) => buf.advance(end),
            Ok(ChunkEvent::Trailer { consumed, .. }) => buf.advance(consumed),
            Ok(ChunkEvent::Done { consumed }) => {
                buf.advance(consumed);
                return Body::Complete;
            }
            Ok(ChunkEvent::NeedMore { consumed }) => {
                buf.advance(consumed);
                return if buf.is_empty() {
                    Body::Truncated
                } else {
                    Body::Invalid("stuck chunked body".into())
                };
            }
            Err(e) => return Body::Invalid(format!("bad chunked body: {e}")),
        }
    }
}

fn skip_length(buf: &mut BytesMut, n: u64) -> Body {
    let have = buf.len();
    buf.advance((n as usize).min(have));
    if (have as u64) < n {
        Body::Truncated
    } else {
        Body::Complete
    }
}

/// Skips the body the head announced, strictly decoding a chunked one.
pub fn skip_body(buf: &mut BytesMut, framing: BodyFraming) -> Body {
    match framing {
        BodyFraming::None => Body::Complete,
        BodyFraming::Length(n) => skip_length(buf, n),
        BodyFraming::Chunked => skip_chunked(buf, ChunkedDecoder::new(4096, 64 * 1024)),
    }
}

/// The tags of the strictly valid requests that make up `bytes`, in order. A final
/// message whose body is cut short (the client aborted) counts; anything invalid is an error.
pub fn strict_messages(bytes: &[u8]) -> Result<Vec<Option<Vec<u8>>>, String> {
    Ok(strict_requests(bytes)?.into_iter().map(|r| r.tag).collect())
}

/// One request the origin received, as `strict_requests` read it.
pub struct Forwarded {
    pub tag: Option<Vec<u8>>,
    /// Idempotent and without a body: ringway may send it a second time.
    pub replayable: bool,
}

/// `strict_messages`, with whether each request may be replayed.
pub fn strict_requests(bytes: &[u8]) -> Result<Vec<Forwarded>, String> {
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let count = out.len();
        match parse_request(&mut buf, &loose(), &mut head) {
            Ok(true) => out.push(Forwarded {
                tag: head.header(TAG).map(<[u8]>::to_vec),
                replayable: head.framing == BodyFraming::None
                    && matches!(
                        head.method(),
                        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
                    ),
            }),
            Ok(false) => return Err(format!("truncated head after {count} messages")),
            Err(e) => return Err(format!("message {count} invalid: {e}")),
        }
        match skip_body(&mut buf, head.framing) {
            Body::Complete => {}
            Body::Truncated => return Ok(out),
            Body::Invalid(e) => return Err(format!("message {count}: {e}")),
        }
    }
    Ok(out)
}

/// How many of the `forwarded` requests (by tag) were second attempts ringway may make:
/// an idempotent request without a body is sent once more, on a fresh connection, when a
/// reused connection answers with no valid response head (a stale keep-alive, or leftovers
/// of an earlier answer). Err if some request reached the origin more often than that, or
/// one ringway never proxies reached it at all.
pub fn retries(forwarded: &[Option<Vec<u8>>], fates: &[Fate]) -> Result<usize, String> {
    let mut retries = 0;
    let mut seen: Vec<&Option<Vec<u8>>> = Vec::new();
    for tag in forwarded {
        if seen.contains(&tag) {
            continue;
        }
        seen.push(tag);
        let sent = forwarded.iter().filter(|t| *t == tag).count();
        let (mut proxied, mut replayable) = (0, 0);
        for fate in fates {
            match fate {
                Fate::Answer(o) if o.own.is_none() && &o.tag == tag => {
                    proxied += 1;
                    replayable += usize::from(o.replayable);
                }
                Fate::BodyCut { tag: t, .. } if t == tag => proxied += 1,
                _ => {}
            }
        }
        if sent > proxied + replayable {
            return Err(format!(
                "tag {:?} reached the origin {sent} times for {proxied} proxied requests \
                 ({replayable} of them retryable): {fates:?}",
                tag.as_deref().map(String::from_utf8_lossy)
            ));
        }
        retries += sent.saturating_sub(proxied);
    }
    Ok(retries)
}

/// Number of requests at the front of `bytes` that the strict parser accepts.
pub fn valid_prefix(bytes: &[u8]) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut n = 0;
    while let Ok(true) = parse_request(&mut buf, &Limits::default(), &mut head) {
        n += 1;
        if !matches!(skip_body(&mut buf, head.framing), Body::Complete) {
            break;
        }
    }
    n
}

/// One whole request the origin received.
pub struct Received {
    pub is_head: bool,
    pub tag: Option<Vec<u8>>,
}

/// The whole requests at the front of `bytes`, up to the first incomplete or invalid one.
pub fn whole_requests(bytes: &[u8]) -> Vec<Received> {
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut out = Vec::new();
    while let Ok(true) = parse_request(&mut buf, &loose(), &mut head) {
        if !matches!(skip_body(&mut buf, head.framing), Body::Complete) {
            break;
        }
        out.push(Received {
            is_head: head.is_head(),
            tag: head.header(TAG).map(<[u8]>::to_vec),
        });
    }
    out
}

/// What ringway owes a request that it answers.
#[derive(Debug)]
pub struct Owed {
    pub is_head: bool,
    /// ringway answers itself with this status (a `respond` route, 404, 413); None: the
    /// request is proxied and the answer is the origin's, or 502/504, or cut short.
    pub own: Option<u16>,
    /// The answer must say `Connection: close` (the client asked for it, or a body is left
    /// unread).
    pub must_close: bool,
    /// The request's tag: a relayed answer echoing a tag must echo this one.
    pub tag: Option<Vec<u8>>,
    /// Idempotent and without a body: ringway may send it upstream a second time.
    pub replayable: bool,
}

/// What ringway must do with one request of the client's stream, in order.
#[derive(Debug)]
pub enum Fate {
    /// A whole request (or one answered without reading its body): exactly one final
    /// response. Only a proxied one may be cut short, and only as the last bytes sent.
    Answer(Owed),
    /// The client's stream ended inside the body of a proxied request: no final response
    /// (a `100 Continue` if `continue_ok`), then close.
    BodyCut {
        continue_ok: bool,
        tag: Option<Vec<u8>>,
    },
    /// A head that does not parse, or a proxied request whose body does not: exactly one
    /// response with this status and `Connection: close`.
    Refused(u16),
    /// The stream ended inside a head: nothing.
    HeadCut,
}

/// The status ringway answers itself for a request it parsed, if it does not proxy it
/// (the order of `ClientConn::handle`; this config has no policy).
fn own_answer(cfg: &Compiled, head: &RequestHead, scratch: &mut Vec<u8>) -> Option<u16> {
    match cfg.route_for(head, scratch).map(|r| &r.action) {
        None => Some(404),
        Some(Action::Respond { status, .. }) => Some(*status),
        Some(Action::Proxy { .. }) => match head.framing {
            BodyFraming::Length(n) if cfg.max_body_bytes > 0 && n > cfg.max_body_bytes => Some(413),
            _ => None,
        },
    }
}

/// The fate of every request ringway reads from `bytes` (sent at once, then EOF), in order,
/// up to the one after which ringway must close.
pub fn fates(bytes: &[u8], cfg: &Compiled) -> Vec<Fate> {
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    while !buf.is_empty() {
        match parse_request(&mut buf, &cfg.limits, &mut head) {
            Ok(true) => {}
            Ok(false) => {
                out.push(Fate::HeadCut);
                break;
            }
            Err(e) => {
                out.push(Fate::Refused(e.status()));
                break;
            }
        }
        let has_body = head.framing != BodyFraming::None;
        let tag = head.header(TAG).map(<[u8]>::to_vec);
        let mut owed = Owed {
            is_head: head.is_head(),
            own: own_answer(cfg, &head, &mut scratch),
            must_close: !head.keep_alive,
            replayable: !has_body
                && matches!(
                    head.method(),
                    b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
                ),
            tag,
        };
        if let Some(status) = owed.own {
            // Its body is never read: the connection closes after the answer.
            owed.must_close |= has_body || status == 413;
            let close = owed.must_close;
            out.push(Fate::Answer(owed));
            if close {
                break;
            }
            continue;
        }
        let body_arrived = !buf.is_empty();
        let body = match head.framing {
            BodyFraming::None => Body::Complete,
            BodyFraming::Length(n) => skip_length(&mut buf, n),
            // The decoder ringway's request side uses (`request_body::BodyState::new`).
            BodyFraming::Chunked => skip_chunked(
                &mut buf,
                ChunkedDecoder::new(4096, cfg.limits.max_header_bytes),
            ),
        };
        match body {
            Body::Complete => out.push(Fate::Answer(owed)),
            Body::Truncated => {
                out.push(Fate::BodyCut {
                    continue_ok: head.expect_continue && !body_arrived,
                    tag: owed.tag,
                });
                break;
            }
            Body::Invalid(_) => {
                out.push(Fate::Refused(400));
                break;
            }
        }
        if !head.keep_alive {
            break;
        }
    }
    out
}

/// How many of these requests ringway forwards (the last one's body perhaps cut short).
pub fn proxied(fates: &[Fate]) -> usize {
    fates
        .iter()
        .filter(|f| match f {
            Fate::Answer(owed) => owed.own.is_none(),
            Fate::BodyCut { .. } => true,
            Fate::Refused(_) | Fate::HeadCut => false,
        })
        .count()
}

/// What the client-side checks saw, summed over cases: evidence that each rule was used.
#[derive(Debug, Default)]
pub struct Tally {
    /// Final responses read (whole or cut short).
    pub responses: usize,
    /// Relayed responses cut short by an abort.
    pub cut: usize,
    /// Errors answering a request that did not parse (head or body).
    pub refused: usize,
    /// Relayed responses echoing their request's tag.
    pub echoed: usize,
    /// `100 Continue` interim responses.
    pub continues: usize,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.responses += o.responses;
        self.cut += o.cut;
        self.refused += o.refused;
        self.echoed += o.echoed;
        self.continues += o.continues;
    }
}

/// One response as the client read it.
#[derive(Debug)]
enum Got {
    /// No final response (interim ones aside) before the stream ended.
    Nothing,
    Whole {
        status: u16,
        /// It says the connection closes after it.
        closes: bool,
        echo: Option<Vec<u8>>,
    },
    /// The stream ended inside it (an abort once bytes went out).
    Cut,
}

/// Reads the next final response from `buf`, strictly: interim responses are allowed only
/// as one `100 Continue` when `continue_ok`; a head is never cut short.
fn next_response(
    buf: &mut BytesMut,
    is_head: bool,
    mut continue_ok: bool,
    tally: &mut Tally,
) -> Result<Got, String> {
    let mut r = ResponseHead::default();
    loop {
        if buf.is_empty() {
            return Ok(Got::Nothing);
        }
        match parse_response(buf, &loose(), is_head, &mut r) {
            Ok(true) if r.is_informational() => {
                if !(continue_ok && r.status == 100) {
                    return Err(format!("unexpected interim response {}", r.status));
                }
                continue_ok = false;
                tally.continues += 1;
            }
            Ok(true) => break,
            Ok(false) => return Err("response head cut short".into()),
            Err(e) => return Err(format!("invalid response head: {e}")),
        }
    }
    let body = match r.framing {
        ResponseFraming::None => Body::Complete,
        ResponseFraming::Length(n) => skip_length(buf, n),
        ResponseFraming::Chunked => skip_chunked(buf, ChunkedDecoder::new(4096, 64 * 1024)),
        ResponseFraming::CloseDelimited => {
            // Ends with the connection: whole by definition.
            buf.clear();
            Body::Complete
        }
    };
    match body {
        Body::Complete => Ok(Got::Whole {
            status: r.status,
            closes: !r.keep_alive,
            echo: r.header(TAG_ECHO).map(<[u8]>::to_vec),
        }),
        Body::Truncated => Ok(Got::Cut),
        Body::Invalid(e) => Err(format!("response {}: {e}", r.status)),
    }
}

/// Checks a whole answer against what was owed; Ok(true) if the connection closes after it.
fn check_answer(
    owed: &Owed,
    status: u16,
    closes: bool,
    echo: &Option<Vec<u8>>,
) -> Result<bool, String> {
    if let Some(own) = owed.own {
        if status != own {
            return Err(format!("status {status}, expected ringway's own {own}"));
        }
    }
    if owed.must_close && !closes {
        return Err(format!("{status} does not say Connection: close"));
    }
    if echo.is_some() && (owed.own.is_some() || echo != &owed.tag) {
        return Err(format!(
            "{status} answers another request: echoes tag {:?}, the request's is {:?}",
            echo.as_deref().map(String::from_utf8_lossy),
            owed.tag.as_deref().map(String::from_utf8_lossy),
        ));
    }
    Ok(closes)
}

/// Checks everything the client received against the fates of its requests: each answered
/// request got exactly one final response, strictly valid, in order; a refused one got
/// exactly its error and `Connection: close`; nothing follows a response that closes or
/// one that was cut short. Adds what it saw to `tally`.
pub fn check_responses(bytes: &[u8], fates: &[Fate], tally: &mut Tally) -> Result<(), String> {
    let mut buf = BytesMut::from(bytes);
    for (i, fate) in fates.iter().enumerate() {
        let (is_head, continue_ok) = match fate {
            Fate::Answer(owed) => (owed.is_head, false),
            Fate::BodyCut { continue_ok, .. } => (false, *continue_ok),
            Fate::Refused(_) | Fate::HeadCut => (false, false),
        };
        let got = next_response(&mut buf, is_head, continue_ok, tally)
            .map_err(|e| format!("request {i} ({fate:?}): {e}"))?;
        let closed = match (fate, &got) {
            (Fate::HeadCut | Fate::BodyCut { .. }, Got::Nothing) => true,
            (Fate::Refused(s), Got::Whole { status, closes, .. }) if s == status && *closes => true,
            (
                Fate::Answer(owed),
                Got::Whole {
                    status,
                    closes,
                    echo,
                },
            ) => check_answer(owed, *status, *closes, echo)
                .map_err(|e| format!("request {i} ({fate:?}): {e}"))?,
            // An abort after response bytes went out: only a relayed response, and its
            // bytes ran to the end of the stream (`next_response` consumed them all).
            (Fate::Answer(owed), Got::Cut) if owed.own.is_none() => true,
            _ => return Err(format!("request {i} ({fate:?}): got {got:?}")),
        };
        match (fate, &got) {
            (_, Got::Nothing) => {}
            (Fate::Refused(_), _) => tally.refused += 1,
            (_, Got::Cut) => tally.cut += 1,
            (_, Got::Whole { echo: Some(_), .. }) => tally.echoed += 1,
            _ => {}
        }
        tally.responses += usize::from(!matches!(got, Got::Nothing));
        if closed {
            break;
        }
    }
    if !buf.is_empty() {
        return Err(format!(
            "{} bytes after the last response ringway owed ({} requests): {:?}",
            buf.len(),
            fates.len(),
            String::from_utf8_lossy(&buf)
        ));
    }
    Ok(())
}
