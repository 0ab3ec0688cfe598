//! Seeded random-mutation test of the connection state machine (stable Rust, no fuzzing
//! crates): mutated client byte streams go through `proxy::serve` over real Unix socket
//! pairs to an in-process scripted origin, and mutated origin responses come back.
//!
//! For every case: no panic; every byte the origin receives parses with the strict parser
//! as a sequence of valid requests (a final body may be cut short when the client aborted);
//! and the origin never receives more requests than the client sent valid ones.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::UnixStream;

use ringway::compiled::Compiled;
use ringway::http::chunked::{ChunkEvent, ChunkedDecoder};
use ringway::http::{parse_request, BodyFraming, Limits, RequestHead};
use ringway::proxy::io::Connector;
use ringway::proxy::{serve, Shared};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
[timeouts]
header = "50ms"
body = "50ms"
idle = "20ms"
write = "200ms"
upstream_connect = "200ms"
upstream_response = "50ms"
[limits]
max_body_bytes = 4096
[[upstreams]]
name = "app"
servers = ["127.0.0.1:1"]
[[routes]]
path_prefix = "/deny"
respond = { status = 403 }
[[routes]]
path_prefix = "/v1/"
strip_prefix = true
upstream = "app"
request_headers = { set = { "X-Route" = "v1" }, remove = ["X-Debug"] }
[[routes]]
path_prefix = "/"
upstream = "app"
"#;

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"GET /v1/users?id=3 HTTP/1.1\r\nHost: a.example\r\nX-Debug: 1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: y\r\n\r\n",
    b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET /deny/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD /h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT /p HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET http://a/abs/../x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
];

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b":",
    b"chunked",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffffff",
    b"%2F",
    b"/../",
    b"\t",
    b"HTTP/1.1",
    b"Host: b\r\n",
    b";",
    b"\xff",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
];

/// xorshift64*: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(3) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input.remove(i);
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
            3 => {
                let i = rng.below(len + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                let i = rng.below(len);
                input.truncate(i);
            }
            5 if len > 2 => {
                let a = rng.below(len);
                let b = (a + rng.below(32)).min(len);
                let piece = input[a..b].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            _ => {}
        }
    }
}

/// How a message body at the front of a buffer ended.
enum Body {
    /// Complete: consumed from the buffer.
    Complete,
    /// The buffer ended inside the body.
    Truncated,
    Invalid(String),
}

/// Skips the body the head announced, strictly decoding a chunked one.
fn skip_body(buf: &mut BytesMut, framing: BodyFraming) -> Body {
    match framing {
        BodyFraming::None => Body::Complete,
        BodyFraming::Length(n) => {
            let have = buf.len();
            buf.advance((n as usize).min(have));
            if (have as u64) < n {
                Body::Truncated
            } else {
                Body::Complete
            }
        }
        BodyFraming::Chunked => {
            let mut dec = ChunkedDecoder::new(4096, 64 * 1024);
            loop {
                match dec.step(buf) {
                    Ok(ChunkEvent::Data { end, .. }) => buf.advance(end),
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
    }
}

/// Counts the strictly valid requests that make up `bytes`. A final message whose body is
/// cut short (the client aborted) counts; anything invalid is an error.
fn strict_messages(bytes: &[u8]) -> Result<usize, String> {
    let limits = Limits {
        max_header_bytes: 64 * 1024,
        max_headers: 256,
        max_uri_bytes: 16 * 1024,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut count = 0;
    while !buf.is_empty() {
        match parse_request(&mut buf, &limits, &mut head) {
            Ok(true) => count += 1,
            Ok(false) => return Err(format!("truncated head after {count} messages")),
            Err(e) => return Err(format!("message {count} invalid: {e}")),
        }
        match skip_body(&mut buf, head.framing) {
            Body::Complete => {}
            Body::Truncated => return Ok(count),
            Body::Invalid(e) => return Err(format!("message {count}: {e}")),
        }
    }
    Ok(count)
}

/// Origin side of one upstream connection: answers each received head with `response`
/// and records every byte it received.
async fn scripted_origin(mut s: UnixStream, response: Rc<Vec<u8>>, log: Rc<RefCell<Vec<u8>>>) {
    let mut answered = 0;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (res, b) = s.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        log.borrow_mut().extend_from_slice(&buf[..n]);
        let heads = log.borrow().windows(4).filter(|w| w == b"\r\n\r\n").count();
        while answered < heads {
            answered += 1;
            let (res, _) = s.write_all(response.to_vec()).await;
            if res.is_err() {
                return;
            }
        }
    }
}

/// Bytes one scripted origin connection received.
type ConnLog = Rc<RefCell<Vec<u8>>>;

/// Hands out socket pairs whose far end runs `scripted_origin`.
struct ScriptedConnector {
    response: Rc<Vec<u8>>,
    logs: Rc<RefCell<Vec<ConnLog>>>,
}

impl Connector for ScriptedConnector {
    type Conn = UnixStream;
    async fn connect(&self, _addr: SocketAddr) -> io::Result<UnixStream> {
        let (near, far) = UnixStream::pair()?;
        let log = Rc::new(RefCell::new(Vec::new()));
        self.logs.borrow_mut().push(log.clone());
        monoio::spawn(scripted_origin(far, self.response.clone(), log));
        Ok(near)
    }
}

/// Number of requests at the front of `bytes` that the strict parser accepts.
fn valid_prefix(bytes: &[u8]) -> usize {
    let limits = Limits::default();
    let mut buf = BytesMut::from(bytes);
    let mut head = RequestHead::default();
    let mut n = 0;
    while let Ok(true) = parse_request(&mut buf, &limits, &mut head) {
        n += 1;
        if !matches!(skip_body(&mut buf, head.framing), Body::Complete) {
            break;
        }
    }
    n
}

/// Runs one case; Err describes the violated property.
async fn run_case(
    cfg: &Rc<Compiled>,
    client_bytes: Vec<u8>,
    response: Vec<u8>,
) -> Result<usize, String> {
    let logs = Rc::new(RefCell::new(Vec::new()));
    let connector = ScriptedConnector {
        response: Rc::new(response),
        logs: logs.clone(),
    };
    let shared = Rc::new(Shared::new(cfg.clone(), connector, 64, 0, 7));
    let (near, mut far) = UnixStream::pair().map_err(|e| e.to_string())?;
    let peer: SocketAddr = "127.0.0.1:5555".parse().map_err(|_| "addr")?;
    let sent_valid = valid_prefix(&client_bytes);
    let server = monoio::spawn(serve(shared.clone(), near, peer, Instant::now(), false));
    let (_, _) = far.write_all(client_bytes).await;
    let _ = far.shutdown().await;
    // Drain the client side so the server never blocks on a full socket.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (res, b) = far.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            break;
        }
    }
    server.await;
    drop(shared);
    let mut forwarded = 0;
    for (i, log) in logs.borrow().iter().enumerate() {
        let bytes = log.borrow();
        forwarded += strict_messages(&bytes).map_err(|e| {
            format!(
                "upstream conn {i}: {e}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
    }
    if forwarded > sent_valid {
        return Err(format!(
            "{forwarded} requests forwarded for {sent_valid} valid client requests"
        ));
    }
    Ok(forwarded)
}

/// Cases in flight at once.
const BATCH: usize = 256;

/// A client byte stream and an origin response, one or both mutated.
fn make_case(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let mut client = Vec::new();
    for _ in 0..=rng.below(3) {
        client.extend_from_slice(REQUESTS[rng.below(REQUESTS.len())]);
    }
    let mut response = RESPONSES[rng.below(RESPONSES.len())].to_vec();
    match rng.below(3) {
        0 => mutate(rng, &mut client),
        1 => mutate(rng, &mut response),
        _ => {
            mutate(rng, &mut client);
            mutate(rng, &mut response);
        }
    }
    (client, response)
}

fn cases() -> usize {
    std::env::var("RINGWAY_MUTATION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[test]
fn mutated_traffic_never_panics_and_only_valid_requests_reach_the_origin() {
    let cfg = ringway::config::from_str(CONFIG, "mutation.toml").expect("test config parses");
    let compiled = Rc::new(Compiled::build(&cfg, "mutation.toml").expect("test config builds"));
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    let total = cases();
    let started = Instant::now();
    rt.block_on(async move {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let mut case = 0;
        let mut forwarded_total = 0;
        while case < total {
            // Cases run in concurrent batches so that the ones waiting on a timeout overlap.
            let mut batch = Vec::new();
            for _ in 0..BATCH.min(total - case) {
                let (client, response) = make_case(&mut rng);
                let compiled = compiled.clone();
                let id = case;
                case += 1;
                batch.push(monoio::spawn(async move {
                    let shown = String::from_utf8_lossy(&client).into_owned();
                    let shown_resp = String::from_utf8_lossy(&response).into_owned();
                    let started = Instant::now();
                    let res = run_case(&compiled, client, response).await;
                    let slow = started.elapsed() > Duration::from_secs(5);
                    (id, res, slow, shown, shown_resp)
                }));
            }
            for t in batch {
                let (id, res, slow, shown, shown_resp) = t.await;
                match res {
                    Ok(n) => forwarded_total += n,
                    Err(e) => panic!("case {id}: {e}\nclient: {shown:?}\norigin: {shown_resp:?}"),
                }
                assert!(
                    !slow,
                    "case {id} hung: client {shown:?} origin {shown_resp:?}"
                );
            }
        }
        // The property is only meaningful if plenty of traffic actually got through.
        assert!(
            forwarded_total > total / 2,
            "only {forwarded_total} requests reached the origin in {total} cases"
        );
        eprintln!("{forwarded_total} forwarded requests checked");
    });
    eprintln!("{total} mutation cases in {:?}", started.elapsed());
}
