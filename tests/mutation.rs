//! Seeded random-mutation test of the connection state machine (stable Rust, no fuzzing
//! crates): mutated client byte streams go through `front::http1::serve` over real Unix socket
//! pairs to an in-process scripted origin, and mutated origin responses come back.
//!
//! For every case: no panic; no hang; every byte the origin receives parses with the
//! strict parser as a sequence of valid requests (a final body may be cut short when the
//! client aborted); only requests ringway proxies reach the origin, each once — an
//! idempotent one without a body at most twice, ringway's one retry on a fresh connection
//! after a reused one answered junk (`wire::retries`) — so, retries aside, the origin never
//! receives more requests than the client sent valid ones; and what the client receives
//! is, strictly parsed, exactly one final response per
//! request ringway answers, in order (see `wire::fates` for what ringway owes each request
//! and `wire::check_responses` for the rules), nothing after a response that closes the
//! connection, and a relayed response is the origin's answer to that very request (each
//! client request carries an `X-Tag`, which the origin echoes). The origin answers each
//! whole request it receives, sometimes in two writes, and closes when its answer says so.
//!
//! The HTTP/2 mode (`mutation/h2.rs`) sends mutated frame sequences through
//! `front::http2::serve` instead, with the same origin and the same checks on the origin's
//! side (strictly valid HTTP/1.1, each client stream at most once upstream, retries aside);
//! on the client's side, the frames ringway sends must be whole and belong to streams the
//! client opened, with nothing on a stream after its end.
//!
//! The HTTP/2 upstream mode (`mutation/h2_upstream.rs`) turns it around: one valid HTTP/1.1
//! request goes to an `h2c` upstream, a real TCP listener of the case's own whose origin
//! answers with a mutated frame sequence. ringway must not panic or hang, must send the
//! request upstream at most twice (once more after the server refused it), and the client
//! must get exactly one strictly valid final response (`wire::check_responses`): the
//! origin's relayed, ringway's own error, or a relayed one cut short by closing the
//! connection — never none, two, or bytes after one.
//!
//! `RINGWAY_MUTATION_CASES` (default 100 000; a fifth of it for HTTP/2, a fiftieth for
//! HTTP/2 upstreams) sets the number of cases, `RINGWAY_MUTATION_SEED` the run seed; a
//! failure prints the run seed, the case's own seed and the command that replays that case
//! alone (`RINGWAY_MUTATION_CASE_SEED`). The serialiser round trip lives in
//! `mutation/roundtrip.rs`.

#[path = "mutation/h2.rs"]
mod h2;
#[path = "mutation/h2_upstream.rs"]
mod h2_upstream;
#[path = "mutation/roundtrip.rs"]
mod roundtrip;
#[path = "mutation/seeded.rs"]
mod seeded;
#[path = "mutation/wire.rs"]
mod wire;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, UnixStream};

use ringway::compiled::Compiled;
use ringway::config::GatewayConfig;
use ringway::front::http1::serve;
use ringway::http::response::parse_response_at;
use ringway::http::{Limits, ResponseHead};
use ringway::io::{Connector, TcpConnector};
use ringway::notify::LocalNotify;
use ringway::pipeline::Shared;

use seeded::{mutate, Rng, Run};

/// The client always sends its whole stream and then EOF, and always reads, so the client
/// timeouts never fire on their own; they are long so that a loaded machine cannot fire
/// them either (a header timeout before ringway first reads would close the connection
/// unanswered). The upstream response timeout does fire, on purpose: an origin that sends
/// a response cut short keeps its connection open, and ringway answers 504 or aborts.
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
[timeouts]
header = "2s"
body = "2s"
idle = "2s"
write = "2s"
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
    b"GET /close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET /old HTTP/1.0\r\n\r\n",
    b"POST /deny/body HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    b"PUT /wait HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
];

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy",
];

/// How the origin behaves on one case's connections.
struct Script {
    /// Its answer to every whole request (before the request's tag is added).
    response: Vec<u8>,
    /// Closes after sending an answer that does not parse (else waits for more).
    close_after_garbage: bool,
    /// Sends each answer in two writes, this many bytes first, with a pause between.
    split_at: Option<usize>,
}

/// `response` with `X-Tag-Echo: <tag>` added after the status line of its final head
/// (the first line after the last interim head, or the first line).
fn tagged(response: &[u8], tag: Option<&[u8]>) -> Vec<u8> {
    let Some(tag) = tag else {
        return response.to_vec();
    };
    let find = |from: usize, what: &[u8]| {
        response[from..]
            .windows(what.len())
            .position(|w| w == what)
            .map(|p| from + p)
    };
    let last_head = (0..response.len())
        .rev()
        .find(|&i| response[i..].starts_with(b"\r\n\r\nHTTP/1."))
        .map_or(0, |i| i + 4);
    let Some(line_end) = find(last_head, b"\r\n") else {
        return response.to_vec();
    };
    let at = line_end + 2;
    let mut out = response[..at].to_vec();
    out.extend_from_slice(b"X-Tag-Echo: ");
    out.extend_from_slice(tag);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&response[at..]);
    out
}

/// Whether a server that sent `response` closes the connection after it: when its final
/// head says so (close-delimited, `Connection: close`, HTTP/1.0 without keep-alive), or
/// when the response is garbage and the script says so.
fn closes_after(response: &[u8], is_head: bool, script: &Script) -> bool {
    let limits = Limits::default();
    let mut head = ResponseHead::default();
    let mut pos = 0;
    loop {
        match parse_response_at(&response[pos..], &limits, is_head, &mut head) {
            Ok(Some(n)) if head.is_informational() => pos += n,
            Ok(Some(_)) => return !head.keep_alive,
            _ => return script.close_after_garbage,
        }
    }
}

/// Origin side of one upstream connection: answers each whole request (head and body, as
/// the strict parser reads them) with the script's response tagged with the request's tag,
/// and records every byte it received.
async fn scripted_origin(mut s: UnixStream, script: Rc<Script>, log: ConnLog) {
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
        let whole = wire::whole_requests(&log.borrow());
        for req in &whole[answered..] {
            answered += 1;
            let mut answer = tagged(&script.response, req.tag.as_deref());
            if let Some(at) = script.split_at.filter(|&at| at < answer.len()) {
                let rest = answer.split_off(at);
                let (res, _) = s.write_all(answer).await;
                if res.is_err() {
                    return;
                }
                monoio::time::sleep(Duration::from_millis(1)).await;
                answer = rest;
            }
            let (res, _) = s.write_all(answer).await;
            if res.is_err() || closes_after(&script.response, req.is_head, &script) {
                return;
            }
        }
    }
}

/// Bytes one scripted origin connection received.
type ConnLog = Rc<RefCell<Vec<u8>>>;

/// Hands out socket pairs whose far end runs `scripted_origin`.
struct ScriptedConnector {
    script: Rc<Script>,
    logs: Rc<RefCell<Vec<ConnLog>>>,
    /// The case, for a panic in an origin task.
    case: Rc<str>,
}

impl Connector for ScriptedConnector {
    type Conn = UnixStream;
    async fn connect(&self, _addr: SocketAddr) -> io::Result<UnixStream> {
        let (near, far) = UnixStream::pair()?;
        let log = Rc::new(RefCell::new(Vec::new()));
        self.logs.borrow_mut().push(log.clone());
        let origin = scripted_origin(far, self.script.clone(), log);
        monoio::spawn(Named::new(self.case.clone(), origin));
        Ok(near)
    }
}

/// A future that names its case when it panics (the panic then goes on as before), so a
/// panic anywhere in ringway prints the seeds that reproduce it.
struct Named<F> {
    case: Rc<str>,
    fut: Pin<Box<F>>,
}

impl<F: Future> Named<F> {
    fn new(case: Rc<str>, fut: F) -> Self {
        Named {
            case,
            fut: Box::pin(fut),
        }
    }
}

impl<F: Future> Future for Named<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        match catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                eprintln!("PANIC in {}", this.case);
                resume_unwind(panic)
            }
        }
    }
}

/// What one case checked (and, summed, a whole run): requests forwarded, retries, and
/// what the client saw (`wire::Tally` for HTTP/1.1, `h2::Seen` for HTTP/2).
#[derive(Default)]
struct Checked<S = wire::Tally> {
    forwarded: usize,
    retries: usize,
    client: S,
}

/// A client-side count that sums.
trait Sums: Default + 'static {
    fn sum(&mut self, other: &Self);
}

impl Sums for wire::Tally {
    fn sum(&mut self, other: &Self) {
        self.add(other);
    }
}

impl Sums for h2::Seen {
    fn sum(&mut self, other: &Self) {
        self.add(other);
    }
}

impl Sums for h2_upstream::Answers {
    fn sum(&mut self, other: &Self) {
        self.add(other);
    }
}

/// One case ready to run: its client stream and origin response as text (for a failure
/// message), and the run itself.
type Case<S> = (
    String,
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Checked<S>, String>>>>,
);

/// Runs cases `0..total` of `test`, `in_flight` at a time so that the ones waiting on a
/// timeout overlap (a new case starts as soon as any ends), on a legacy-driver runtime
/// with the test config; `case(id, config, name)` draws case `id`. Fails the test on the
/// first property a case breaks, or on a case that hung; else returns the sum.
fn run_cases<S: Sums>(
    test: &str,
    run: &Run,
    total: u64,
    in_flight: usize,
    mut case: impl FnMut(u64, &Rc<Compiled>, Rc<str>) -> Case<S>,
) -> Checked<S> {
    let cfg = ringway::config::from_str(CONFIG, "mutation.toml").expect("test config parses");
    let compiled = Rc::new(Compiled::build(&cfg, "mutation.toml").expect("test config builds"));
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let done: Rc<RefCell<Vec<Outcome<S>>>> = Rc::default();
        let wake = Rc::new(LocalNotify::default());
        let mut running = 0;
        let mut checked = Checked::<S>::default();
        let mut settle_until = |running: &mut usize, limit: usize, done: &RefCell<Vec<_>>| {
            for outcome in done.borrow_mut().drain(..) {
                *running -= 1;
                settle(outcome, &mut checked);
            }
            *running < limit
        };
        for id in 0..total {
            while !settle_until(&mut running, in_flight, &done) {
                wake.notified().await;
            }
            let name: Rc<str> = run.describe(test, id).into();
            let (shown, shown_resp, fut) = case(id, &compiled, name.clone());
            let (done, wake) = (done.clone(), wake.clone());
            let task = async move {
                let started = Instant::now();
                let res = fut.await;
                let slow = started.elapsed() > Duration::from_secs(5);
                done.borrow_mut().push((name, res, slow, shown, shown_resp));
                wake.notify_all();
            };
            monoio::spawn(Named::new(run.describe(test, id).into(), task));
            running += 1;
        }
        while !settle_until(&mut running, 1, &done) {
            wake.notified().await;
        }
        checked
    })
}

/// A worker's shared state whose upstream connections go to `scripted_origin`s playing
/// `script`, and the logs of what each of them received.
fn scripted(
    cfg: &Rc<Compiled>,
    script: Script,
    case: &Rc<str>,
) -> (Rc<Shared<ScriptedConnector>>, Rc<RefCell<Vec<ConnLog>>>) {
    let logs = Rc::new(RefCell::new(Vec::new()));
    let connector = ScriptedConnector {
        script: Rc::new(script),
        logs: logs.clone(),
        case: case.clone(),
    };
    (Rc::new(Shared::new(cfg.clone(), connector, 64, 0, 7)), logs)
}

/// Drives `serve` over a socket pair: the client sends `client_bytes`, then EOF, and reads
/// everything ringway sends until it closes (never blocking it on a full socket).
async fn exchange<C: Connector>(
    shared: &Rc<Shared<C>>,
    client_bytes: Vec<u8>,
    case: Rc<str>,
) -> Result<Vec<u8>, String> {
    let (near, mut far) = UnixStream::pair().map_err(|e| e.to_string())?;
    let peer: SocketAddr = "127.0.0.1:5555".parse().map_err(|_| "addr")?;
    let server = monoio::spawn(Named::new(
        case,
        serve(
            shared.clone(),
            near,
            peer,
            Instant::now(),
            Default::default(),
        ),
    ));
    let (_, _) = far.write_all(client_bytes).await;
    let _ = far.shutdown().await;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (res, b) = far.read(buf).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    server.await;
    Ok(received)
}

/// Runs one case; Err describes the violated property.
async fn run_case(
    cfg: &Rc<Compiled>,
    client_bytes: Vec<u8>,
    script: Script,
    case: Rc<str>,
) -> Result<Checked, String> {
    let (shared, logs) = scripted(cfg, script, &case);
    let sent_valid = wire::valid_prefix(&client_bytes);
    let fates = wire::fates(&client_bytes, cfg);
    let received = exchange(&shared, client_bytes, case).await?;
    drop(shared);
    let mut checked = Checked::default();
    let mut forwarded = Vec::new();
    for (i, log) in logs.borrow().iter().enumerate() {
        let bytes = log.borrow();
        forwarded.extend(wire::strict_messages(&bytes).map_err(|e| {
            format!(
                "upstream conn {i}: {e}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?);
    }
    checked.forwarded = forwarded.len();
    // Each request ringway proxies reaches the origin once, or twice for a retried
    // idempotent one (`wire::retries`); none it answers itself, none after a close.
    let retries = wire::retries(&forwarded, &fates)?;
    let first_attempts = checked.forwarded - retries;
    let proxied = wire::proxied(&fates);
    if first_attempts > sent_valid || first_attempts > proxied {
        return Err(format!(
            "{} requests forwarded ({retries} retries) for {sent_valid} valid client requests, \
             {proxied} of them proxied",
            checked.forwarded
        ));
    }
    checked.retries = retries;
    wire::check_responses(&received, &fates, &mut checked.client).map_err(|e| {
        let upstream: Vec<String> = logs
            .borrow()
            .iter()
            .map(|l| String::from_utf8_lossy(&l.borrow()).into_owned())
            .collect();
        format!(
            "client side: {e}\nringway sent: {:?}\norigin received: {upstream:?}",
            String::from_utf8_lossy(&received)
        )
    })?;
    Ok(checked)
}

/// Cases in flight at once.
const IN_FLIGHT: usize = 256;

/// How a case ended: its name, what it found, whether it took too long, and its client
/// stream and origin response as text.
type Outcome<S> = (Rc<str>, Result<Checked<S>, String>, bool, String, String);

/// Adds a case's findings to the total, or fails the test with the case's seeds.
fn settle<S: Sums>((name, res, slow, client, origin): Outcome<S>, checked: &mut Checked<S>) {
    match res {
        Ok(c) => {
            checked.forwarded += c.forwarded;
            checked.retries += c.retries;
            checked.client.sum(&c.client);
        }
        Err(e) => panic!("{name}\n{e}\nclient: {client:?}\norigin: {origin:?}"),
    }
    assert!(!slow, "{name}\nhung: client {client:?} origin {origin:?}");
}

/// One case drawn from its seed: a client byte stream (one to four requests, each with its
/// own `X-Tag`) and the origin's script, one or both mutated.
fn make_case(rng: &mut Rng) -> (Vec<u8>, Script) {
    let mut client = Vec::new();
    for i in 0..=rng.below(3) {
        let req = *rng.pick(REQUESTS);
        // The tag goes right after the request line.
        let at = req
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(0, |p| p + 2);
        client.extend_from_slice(&req[..at]);
        client.extend_from_slice(format!("X-Tag: {i}\r\n").as_bytes());
        client.extend_from_slice(&req[at..]);
    }
    let mut response = rng.pick(RESPONSES).to_vec();
    match rng.below(3) {
        0 => mutate(rng, &mut client),
        1 => mutate(rng, &mut response),
        _ => {
            mutate(rng, &mut client);
            mutate(rng, &mut response);
        }
    }
    let close_after_garbage = rng.one_in(2);
    let split_at = rng.one_in(3).then(|| rng.below(80));
    (
        client,
        Script {
            response,
            close_after_garbage,
            split_at,
        },
    )
}

const TEST: &str = "mutated_traffic_never_panics_and_only_valid_requests_reach_the_origin";

#[test]
fn mutated_traffic_never_panics_and_only_valid_requests_reach_the_origin() {
    let run = Run::from_env();
    let total = run.cases();
    let started = Instant::now();
    let checked = run_cases(TEST, &run, total, IN_FLIGHT, |id, compiled, name| {
        let (client, script) = make_case(&mut Rng::new(run.case_seed(id)));
        let shown = String::from_utf8_lossy(&client).into_owned();
        let shown_resp = String::from_utf8_lossy(&script.response).into_owned();
        let compiled = compiled.clone();
        let fut = async move { run_case(&compiled, client, script, name).await };
        (shown, shown_resp, Box::pin(fut))
    });
    let c = &checked.client;
    eprintln!(
        "{total} mutation cases (run seed {:#018x}) in {:?}: {} forwarded requests and {} \
         client responses checked ({} relayed with their request's tag, {} cut short by an \
         abort, {} refusing a request that did not parse; {} 100 Continue; {} retries)",
        run.seed,
        started.elapsed(),
        checked.forwarded,
        c.responses,
        c.echoed,
        c.cut,
        c.refused,
        c.continues,
        checked.retries,
    );
    // The properties are only meaningful if plenty of traffic got through and every rule
    // was put to use.
    if run.replay.is_none() && total >= 10_000 {
        let enough = (total / 2) as usize;
        assert!(
            checked.forwarded > enough
                && c.responses > enough
                && c.echoed > enough / 4
                && c.cut > 0
                && c.refused > 0
                && c.continues > 0,
            "too little exercised in {total} cases (run seed {:#018x}): {} forwarded, {c:?}",
            run.seed,
            checked.forwarded,
        );
    }
}

/// How long the HTTP/2 client waits for more from ringway before it closes its side.
const H2_QUIET: Duration = Duration::from_millis(400);

/// Runs one HTTP/2 case; Err describes the violated property.
async fn run_h2_case(
    cfg: &Rc<Compiled>,
    client_bytes: Vec<u8>,
    script: Script,
    case: Rc<str>,
) -> Result<Checked<h2::Seen>, String> {
    let (shared, logs) = scripted(cfg, script, &case);
    let (near, mut far) = UnixStream::pair().map_err(|e| e.to_string())?;
    let near = near.try_into_poll_io().map_err(|(e, _)| e.to_string())?;
    let peer: SocketAddr = "127.0.0.1:5555".parse().map_err(|_| "addr")?;
    let sent = h2::sent(&client_bytes);
    let server = monoio::spawn(Named::new(
        case,
        ringway::front::http2::serve(
            shared.clone(),
            near,
            peer,
            Instant::now(),
            Default::default(),
        ),
    ));
    // The whole stream goes at once and ends with GOAWAY, after which ringway closes once
    // its streams are done; a stream a mutation left waiting is cut off by the client
    // closing its side after a quiet spell (ringway's own timeouts would do it later).
    let (_, _) = far.write_all(client_bytes).await;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut shut = false;
    loop {
        let read = far.read(buf);
        let res = if shut {
            Ok(read.await)
        } else {
            monoio::time::timeout(H2_QUIET, read).await
        };
        match res {
            Ok((Ok(n), b)) if n > 0 => {
                buf = b;
                received.extend_from_slice(&buf[..n]);
            }
            Ok(_) => break,
            Err(_) => {
                // The read was dropped with the timeout: a fresh buffer.
                buf = vec![0u8; 64 * 1024];
                let _ = far.shutdown().await;
                shut = true;
            }
        }
    }
    server.await;
    drop(shared);
    let mut forwarded = Vec::new();
    for (i, log) in logs.borrow().iter().enumerate() {
        let bytes = log.borrow();
        forwarded.extend(wire::strict_requests(&bytes).map_err(|e| {
            format!(
                "upstream conn {i}: {e}: {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?);
    }
    // Each client stream reaches the origin at most once, an idempotent one without a body
    // at most twice (ringway's one retry); no more streams than header blocks were sent.
    let mut retries = 0;
    let mut counted: Vec<&Option<Vec<u8>>> = Vec::new();
    for f in &forwarded {
        if counted.contains(&&f.tag) {
            continue;
        }
        counted.push(&f.tag);
        let same: Vec<&wire::Forwarded> = forwarded.iter().filter(|g| g.tag == f.tag).collect();
        let Some(carrying) = f.tag.as_deref().and_then(|t| sent.carrying(t)) else {
            continue;
        };
        let replayable = same.iter().filter(|g| g.replayable).count();
        let once = same.len().min(carrying);
        if same.len() > carrying + replayable.min(carrying) {
            return Err(format!(
                "tag {:?} reached the origin {} times, sent in {carrying} header blocks",
                f.tag.as_deref().map(String::from_utf8_lossy),
                same.len()
            ));
        }
        retries += same.len() - once;
    }
    if forwarded.len() - retries > sent.blocks() {
        return Err(format!(
            "{} requests forwarded ({retries} retries) for {} header blocks",
            forwarded.len(),
            sent.blocks()
        ));
    }
    let client = h2::check(&received, &sent).map_err(|e| {
        format!(
            "client side: {e}\nringway sent: {:?}",
            String::from_utf8_lossy(&received)
        )
    })?;
    Ok(Checked {
        forwarded: forwarded.len(),
        retries,
        client,
    })
}

const TEST_H2: &str = "mutated_http2_frames_never_panic_and_only_valid_requests_reach_the_origin";

#[test]
fn mutated_http2_frames_never_panic_and_only_valid_requests_reach_the_origin() {
    let run = Run::from_env();
    let total = if run.replay.is_some() {
        1
    } else {
        (run.cases() / 5).max(1)
    };
    let started = Instant::now();
    let checked = run_cases(TEST_H2, &run, total, IN_FLIGHT, |id, compiled, name| {
        let mut rng = Rng::new(run.case_seed(id));
        let (mutate_client, mutate_origin) = match rng.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        let client = h2::client(&mut rng, mutate_client);
        let mut response = rng.pick(RESPONSES).to_vec();
        if mutate_origin {
            mutate(&mut rng, &mut response);
        }
        let script = Script {
            response,
            close_after_garbage: rng.one_in(2),
            split_at: rng.one_in(3).then(|| rng.below(80)),
        };
        let shown = format!("{:02x?}", client);
        let shown_resp = String::from_utf8_lossy(&script.response).into_owned();
        let compiled = compiled.clone();
        let fut = async move { run_h2_case(&compiled, client, script, name).await };
        (shown, shown_resp, Box::pin(fut))
    });
    let c = &checked.client;
    eprintln!(
        "{total} HTTP/2 mutation cases (run seed {:#018x}) in {:?}: {} forwarded requests \
         ({} retries); {} streams answered, {} reset, {} GOAWAYs",
        run.seed,
        started.elapsed(),
        checked.forwarded,
        checked.retries,
        c.answered,
        c.reset,
        c.goaway,
    );
    if run.replay.is_none() && total >= 2_000 {
        let enough = (total / 4) as usize;
        assert!(
            checked.forwarded > enough && c.answered > enough && c.reset > 0 && c.goaway > 0,
            "too little exercised in {total} HTTP/2 cases (run seed {:#018x}): {} forwarded, {c:?}",
            run.seed,
            checked.forwarded,
        );
    }
}

/// Cases in flight at once in the HTTP/2 upstream mode (each holds a listener and a TCP
/// connection or two).
const H2_UPSTREAM_IN_FLIGHT: usize = 64;

/// A case still running after this hung: ringway never closed the client's connection.
const HUNG: Duration = Duration::from_secs(4);

/// Runs one HTTP/2 upstream case; Err describes the violated property.
async fn run_h2_upstream_case(
    base: &GatewayConfig,
    case: h2_upstream::Case,
    name: Rc<str>,
) -> Result<Checked<h2_upstream::Answers>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let compiled = Rc::new(h2_upstream::compiled(base, addr)?);
    let fates = wire::fates(&case.client, &compiled);
    let logs: Rc<RefCell<Vec<ConnLog>>> = Rc::default();
    let ended = Rc::new(h2_upstream::Ended::default());
    let origin = h2_upstream::origin(
        listener,
        Rc::new(case.script),
        logs.clone(),
        ended.clone(),
        name.clone(),
    );
    let origin = monoio::spawn(Named::new(name.clone(), origin));
    let shared = Rc::new(Shared::new(compiled, TcpConnector, 64, 0, 7));
    let received = monoio::time::timeout(HUNG, exchange(&shared, case.client, name)).await;
    drop(shared);
    ended.set();
    origin.await;
    let received =
        received.map_err(|_| format!("ringway still had the client after {HUNG:?}"))??;
    let upstream = || -> Vec<String> {
        let logs = logs.borrow();
        logs.iter()
            .map(|l| format!("{:02x?}", l.borrow()))
            .collect()
    };
    let mut streams = 0;
    for log in logs.borrow().iter() {
        let opened = h2_upstream::streams_opened(&log.borrow())?;
        if opened > 1 {
            return Err(format!("{opened} streams on one upstream connection"));
        }
        streams += opened;
    }
    if streams > 2 {
        return Err(format!("the request went upstream {streams} times"));
    }
    let mut tally = wire::Tally::default();
    wire::check_responses(&received, &fates, &mut tally).map_err(|e| {
        format!(
            "client side: {e}\nringway sent: {:?}\norigin received: {:?}",
            String::from_utf8_lossy(&received),
            upstream()
        )
    })?;
    Ok(Checked {
        forwarded: streams,
        retries: streams.saturating_sub(1),
        client: h2_upstream::Answers::of(&received, case.head, &tally),
    })
}

const TEST_H2_UPSTREAM: &str =
    "mutated_http2_upstream_responses_never_panic_and_each_request_gets_one_answer";

#[test]
fn mutated_http2_upstream_responses_never_panic_and_each_request_gets_one_answer() {
    let run = Run::from_env();
    let total = (run.cases() / 50).max(1);
    let base = Rc::new(ringway::config::from_str(CONFIG, "mutation.toml").expect("config parses"));
    let started = Instant::now();
    let checked = run_cases(
        TEST_H2_UPSTREAM,
        &run,
        total,
        H2_UPSTREAM_IN_FLIGHT,
        |id, _, name| {
            let case = h2_upstream::case(&mut Rng::new(run.case_seed(id)));
            let shown = String::from_utf8_lossy(&case.client).into_owned();
            let shown_resp = format!("{:02x?}", case.script.bytes);
            let base = base.clone();
            let fut = async move { run_h2_upstream_case(&base, case, name).await };
            (shown, shown_resp, Box::pin(fut))
        },
    );
    let a = &checked.client;
    eprintln!(
        "{total} HTTP/2 upstream mutation cases (run seed {:#018x}) in {:?}: {} streams \
         upstream ({} sent again); {} answers relayed ({} 2xx), {} cut short by an abort, \
         by status {:?} without the origin's mark (ringway's own, or one a mutation garbled)",
        run.seed,
        started.elapsed(),
        checked.forwarded,
        checked.retries,
        a.relayed,
        a.relayed_2xx,
        a.aborted,
        a.own,
    );
    if run.replay.is_none() && total >= 2_000 {
        let own: usize = a.own.values().sum();
        assert!(
            a.relayed_2xx > total as usize / 5 && own > total as usize / 20 && a.aborted > 0,
            "too little exercised in {total} HTTP/2 upstream cases (run seed {:#018x}): {a:?}",
            run.seed,
        );
    }
}
