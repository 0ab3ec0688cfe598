//! Hostile and slow clients: a body trickled byte by byte (total body deadline, minimum
//! body rate), a client that reads a large response slowly (backpressure to the origin,
//! bounded memory), and a thousand pipelined requests (answered in order, bounded memory).

use ringway_test_support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn gateway_with(origin: &Origin, sections: &str, d: Driver) -> Gateway {
    Gateway::start(
        &Config::proxy_all(origin.addr()).section(sections).render(),
        d,
    )
}

/// Writes `bytes` one every 100 ms (each read is quick: only a total deadline or a rate
/// can stop it) until ringway has answered or closed, or `give_up` has passed.
fn trickle(c: &mut TcpStream, bytes: &[u8], give_up: Duration) {
    let started = Instant::now();
    c.set_nonblocking(true).expect("nonblocking");
    let mut probe = [0u8; 1];
    for b in bytes {
        // Stop as soon as ringway has answered (writing on could reset the connection
        // before its answer is read).
        match c.peek(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => break,
        }
        if c.write_all(&[*b]).is_err() || started.elapsed() > give_up {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    c.set_nonblocking(false).expect("blocking");
}

/// Sends a POST head declaring 1000 body bytes, then trickles the body. Returns the
/// response and when it came.
fn trickle_body(addr: SocketAddr, give_up: Duration) -> (Option<Response>, Duration) {
    let mut c = connect(addr);
    let started = Instant::now();
    c.write_all(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .expect("head");
    trickle(&mut c, &[b'x'; 1000], give_up);
    let mut r = Reader::new(c);
    let resp = r.response();
    let at = started.elapsed();
    assert!(
        r.closes_within(Duration::from_secs(2)),
        "the trickler must be closed"
    );
    (resp, at)
}

/// Normal requests on their own connections, all answered while `busy` runs.
fn served_meanwhile(addr: SocketAddr, busy: impl FnOnce() + Send + 'static) -> usize {
    let handle = thread::spawn(busy);
    let mut served = 0;
    while !handle.is_finished() {
        let r = roundtrip(
            addr,
            b"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(
            r.map(|r| r.status),
            Some(200),
            "a normal client must be served"
        );
        served += 1;
        thread::sleep(Duration::from_millis(50));
    }
    handle.join().expect("trickler");
    served
}

/// A body trickled in gets 408 within `within` (and is closed) while normal requests on
/// other connections are answered; returns how many were.
fn trickler_gets_408_while_others_are_served(addr: SocketAddr, within: Duration) -> usize {
    let served = served_meanwhile(addr, move || {
        let (resp, at) = trickle_body(addr, within * 4);
        assert_eq!(resp.map(|r| r.status), Some(408));
        assert!(at < within, "took {at:?}");
    });
    assert!(served >= 3, "only {served} normal requests were served");
    served
}

both_drivers! {
    fn a_second_head_trickled_on_a_kept_alive_connection_gets_408_within_the_header_deadline(d) {
        let origin = Origin::ok("x");
        let gw = gateway_with(&origin, "[timeouts]\nheader = \"1s\"\nidle = \"30s\"", d);
        let mut c = Reader::new(connect(gw.addr()));
        c.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(c.response().map(|r| r.status), Some(200));
        // The deadline runs from the second request's first byte, for the whole head.
        let started = Instant::now();
        let head = b"GET /second HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        trickle(&mut c.s, head, Duration::from_secs(4));
        assert_eq!(c.response().map(|r| r.status), Some(408));
        assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
        assert!(c.closes_within(Duration::from_secs(1)));
        assert_eq!(origin.requests().len(), 1);
    }

    fn a_trickled_body_gets_408_within_the_total_body_deadline_while_others_are_served(d) {
        let origin = Origin::start(Reply::echo);
        let gw = gateway_with(&origin, "[timeouts]\nbody = \"1s\"", d);
        let served = trickler_gets_408_while_others_are_served(gw.addr(), Duration::from_millis(2500));
        // The origin got every normal request whole, and never a complete slow one.
        let reqs = origin.requests();
        assert!(reqs.iter().all(|r| r.target == "/fast" && r.body == b"hello"));
        assert_eq!(reqs.len(), served);
    }

    fn a_body_below_the_minimum_rate_gets_408_long_before_the_body_deadline(d) {
        let origin = Origin::start(|req| Reply::ok(&req.body.len().to_string()));
        let gw = gateway_with(
            &origin,
            "[timeouts]\nbody = \"60s\"\n[limits]\nmax_body_bytes = 0\nmin_body_rate = 1000\nmin_body_rate_grace = \"500ms\"",
            d,
        );
        let addr = gw.addr();
        // Half a second of grace plus a few bytes' worth: far below the 60 s deadline.
        trickler_gets_408_while_others_are_served(addr, Duration::from_secs(3));
        // A large body sent at full speed (spliced) is well above the rate.
        let big = 4 * 1024 * 1024;
        let mut c = Reader::new(connect(addr));
        c.send(format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: {big}\r\n\r\n").as_bytes());
        c.send(&vec![b'b'; big]);
        let r = c.response().expect("big upload");
        assert_eq!(r.status, 200);
        assert_eq!(r.body_text(), big.to_string());
    }
}

/// An origin that answers one request with a `total`-byte body (chunked, or with a
/// Content-Length), written 64 KiB at a time into a small send buffer.
struct StreamingOrigin {
    addr: SocketAddr,
    /// Body bytes it managed to hand to its socket.
    written: Arc<AtomicU64>,
    /// Its connection is over (ringway closed it, or a write failed).
    gone: Arc<AtomicBool>,
}

impl StreamingOrigin {
    fn start(total: usize, chunked: bool) -> StreamingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let written = Arc::new(AtomicU64::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let (count, over) = (written.clone(), gone.clone());
        thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                stream_body(s, total, chunked, &count);
            }
            over.store(true, Ordering::SeqCst);
        });
        StreamingOrigin {
            addr,
            written,
            gone,
        }
    }
}

/// Reads one request head from `s`, answers it, and holds the connection until ringway is
/// done with it.
fn stream_body(mut s: TcpStream, total: usize, chunked: bool, count: &AtomicU64) {
    let _ = socket2::SockRef::from(&s).set_send_buffer_size(64 * 1024);
    let mut head = Vec::new();
    let mut tmp = [0u8; 4096];
    while find(&head, b"\r\n\r\n").is_none() {
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => head.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    }
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n");
    if s.write_all(head.as_bytes()).is_err() {
        return;
    }
    let block = vec![b's'; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len());
        let ok = if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
                && s.write_all(&block[..n]).is_ok()
                && s.write_all(b"\r\n").is_ok()
        } else {
            s.write_all(&block[..n]).is_ok()
        };
        if !ok {
            return;
        }
        left -= n;
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
    if chunked {
        let _ = s.write_all(b"0\r\n\r\n");
    }
    while matches!(s.read(&mut tmp), Ok(n) if n > 0) {}
}

/// ringway (one worker, no body limit) in front of `origin`, with `sections` added.
fn gateway_for(origin: &StreamingOrigin, sections: &str, d: Driver) -> Gateway {
    let config = Config::new()
        .upstream("app", &[origin.addr])
        .route("path_prefix = \"/\"\nupstream = \"app\"")
        .section(&format!("[limits]\nmax_body_bytes = 0\n{sections}"))
        .render();
    Gateway::start(&config, d)
}

/// A client socket whose receive buffer stays at 64 KiB (no autotuning), so what it has
/// not read piles up on ringway's side.
fn small_receive_buffer_client(addr: SocketAddr) -> std::net::TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    sock.connect(&addr.into()).expect("connect");
    let c: std::net::TcpStream = sock.into();
    c.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    c
}

/// Waits (bounded) until `value()` has not moved for 300 ms; returns it (the last value
/// seen if it never settles).
fn settled(value: impl Fn() -> u64) -> u64 {
    let mut last = value();
    let mut since = Instant::now();
    eventually("a value to settle for 300 ms").try_until(|| {
        let now = value();
        if now != last {
            last = now;
            since = Instant::now();
        }
        since.elapsed() >= Duration::from_millis(300)
    });
    last
}

/// Reads one response of which the body carries `total` payload bytes, without keeping
/// it: (head, its last bytes, the bytes after the head).
fn drain_response(c: &mut TcpStream, total: usize, chunked: bool) -> (String, Vec<u8>, usize) {
    let mut buf = vec![0u8; 1024 * 1024];
    let mut seen = Vec::new();
    let head_end = loop {
        let n = c.read(&mut buf).expect("response bytes");
        assert!(n > 0, "closed before the head");
        seen.extend_from_slice(&buf[..n]);
        if let Some(p) = find(&seen, b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).into_owned();
    let mut tail = seen.split_off(head_end);
    let mut after_head = tail.len();
    let done = |tail: &[u8], n: usize| {
        if chunked {
            n > total && tail.ends_with(b"\r\n0\r\n\r\n")
        } else {
            n >= total
        }
    };
    while !done(&tail, after_head) {
        let n = c.read(&mut buf).expect("response bytes");
        assert!(n > 0, "closed after {after_head} body bytes");
        after_head += n;
        tail.extend_from_slice(&buf[..n]);
        let keep = tail.len().saturating_sub(16);
        tail.drain(..keep);
    }
    (head, tail, after_head)
}

/// A client that has not read a byte of a 64 MiB response holds the origin back: ringway
/// read no more of the body than what fits in socket buffers and its own bounded buffer,
/// and its memory did not grow by the body. Then the client reads it all.
fn slow_reader_holds_back_the_origin(d: Driver, chunked: bool) {
    const TOTAL: usize = 64 * 1024 * 1024;
    let origin = StreamingOrigin::start(TOTAL, chunked);
    let written = &origin.written;
    let gw = gateway_for(&origin, "", d);
    let rss_before = gw.rss_kib();
    let mut c = small_receive_buffer_client(gw.addr());
    c.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("request");
    let stalled_at = settled(|| written.load(Ordering::SeqCst));
    let rss_stalled = gw.rss_kib();
    // Loopback socket buffers can grow to a few MiB each (the kernel tunes ringway's);
    // reading the whole body would be 64 MiB.
    assert!(
        stalled_at < 16 * 1024 * 1024,
        "the origin wrote {stalled_at} bytes to a client that read nothing"
    );
    assert!(
        rss_stalled.saturating_sub(rss_before) < 8 * 1024,
        "ringway grew from {rss_before} KiB to {rss_stalled} KiB"
    );
    // Backpressure releases: the client now reads everything (its last bytes end the
    // message: the Content-Length body's, or the last chunk).
    let (head, tail, body_and_framing) = drain_response(&mut c, TOTAL, chunked);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    if chunked {
        assert!(
            tail.ends_with(b"\r\n0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&tail)
        );
        assert!(body_and_framing > TOTAL);
    } else {
        assert_eq!(body_and_framing, TOTAL);
    }
    // The origin counts a block once its write returned, which may be after the client
    // already read it.
    eventually("the origin to count every byte it wrote").until(|| {
        let w = written.load(Ordering::SeqCst);
        if w == TOTAL as u64 {
            Ok(())
        } else {
            Err(w)
        }
    });
}

both_drivers! {
    fn a_slow_reader_of_a_large_chunked_response_holds_back_the_origin(d) {
        slow_reader_holds_back_the_origin(d, true);
    }

    fn a_slow_reader_of_a_large_spliced_response_holds_back_the_origin(d) {
        slow_reader_holds_back_the_origin(d, false);
    }

    fn a_client_that_stops_reading_a_chunked_response_is_dropped_after_the_write_timeout(d) {
        // Chunked bodies go through ringway's own buffers (no splice): its write to the
        // client stalls once the socket buffers are full, and `write` gives up on it.
        let origin = StreamingOrigin::start(64 * 1024 * 1024, true);
        let gw = gateway_for(&origin, "[timeouts]\nwrite = \"1s\"", d);
        let mut c = small_receive_buffer_client(gw.addr());
        c.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").expect("request");
        eventually("ringway to give up on the stalled client")
            .within(Duration::from_secs(8))
            .until(|| origin.gone.load(Ordering::SeqCst));
        assert!(origin.written.load(Ordering::SeqCst) < 16 * 1024 * 1024);
        // The client's connection was closed too: after what was buffered, EOF.
        let mut r = Reader::new(c);
        let rest = r.read_to_close();
        assert!(rest.len() < 16 * 1024 * 1024, "{} bytes", rest.len());
    }

    fn a_thousand_pipelined_requests_are_answered_in_order_with_bounded_memory(d) {
        const N: usize = 1000;
        // 64 KiB answers: a client that reads none of them stops ringway once the socket
        // buffers between them are full (about 5 MiB here; the kernel's limit is 4 MiB for
        // ringway's send buffer by default), long before the thousandth.
        let pad = "r".repeat(64 * 1024);
        let origin = Origin::start(move |req| Reply::ok(&format!("{} {pad}", req.target)));
        let gw = Gateway::start(&Config::proxy_all(origin.addr()).render(), d);
        let rss_before = gw.rss_kib();
        let c = small_receive_buffer_client(gw.addr());
        let mut w = c.try_clone().expect("clone");
        // The writer runs on its own: it blocks once ringway stops reading.
        let writer = thread::spawn(move || {
            let batch: Vec<u8> = (0..N)
                .flat_map(|i| format!("GET /p{i} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes())
                .collect();
            w.write_all(&batch).expect("pipelined batch");
        });
        // Nothing read yet: ringway must not work through (and buffer) the whole batch.
        let last = settled(|| origin.requests().len() as u64);
        assert!(last < N as u64 / 2, "{last} requests went upstream while the client read nothing");
        let rss_stalled = gw.rss_kib();
        assert!(
            rss_stalled.saturating_sub(rss_before) < 8 * 1024,
            "ringway grew from {rss_before} KiB to {rss_stalled} KiB"
        );
        let mut r = Reader::new(c);
        for i in 0..N {
            let resp = r.response().unwrap_or_else(|| panic!("response {i}"));
            assert_eq!(resp.status, 200);
            let body = resp.body_text();
            assert!(body.starts_with(&format!("/p{i} ")), "response {i} out of order");
        }
        writer.join().expect("writer");
        let reqs = origin.requests();
        assert_eq!(reqs.len(), N);
        assert!(reqs.iter().enumerate().all(|(i, q)| q.target == format!("/p{i}")));
    }
}
