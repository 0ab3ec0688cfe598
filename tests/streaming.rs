//! Streaming: 64 MiB through ringway in each direction, Content-Length and chunked, with the
//! gateway's memory staying bounded. The bundled origin (`ringway-origin`) is the far side.

use ringway_test_support::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

const SIZE: u64 = 64 * 1024 * 1024;
/// RSS ceiling for the gateway while it relays 64 MiB (it holds one buffer per direction).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn pattern_byte(i: u64) -> u8 {
    b'a' + (i % 26) as u8
}

/// Samples the gateway's RSS until `done`, returning the peak in KiB.
fn watch_rss(pid: u32, done: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut peak = 0;
        while !done.load(Ordering::SeqCst) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(rss);
            thread::sleep(std::time::Duration::from_millis(20));
        }
        peak
    })
}

/// Reads a response head from `s`; returns (head text, bytes already read past it).
fn read_head(s: &mut impl Read) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(p + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let n = s.read(&mut tmp).expect("read head");
        assert!(n > 0, "closed before a head");
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Streams a body (CL or chunked) from `s`, checking each byte against the pattern.
fn check_body(s: &mut impl Read, head: &str, mut pending: Vec<u8>) -> u64 {
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut got: u64 = 0;
    let mut tmp = vec![0u8; 256 * 1024];
    let mut fill = |pending: &mut Vec<u8>| {
        let n = s.read(&mut tmp).expect("read body");
        assert!(n > 0, "closed mid-body");
        pending.extend_from_slice(&tmp[..n]);
    };
    let verify = |data: &[u8], got: &mut u64| {
        for &b in data {
            assert_eq!(b, pattern_byte(*got), "byte {got} differs");
            *got += 1;
        }
    };
    if !chunked {
        let len: u64 = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        while got < len {
            if pending.is_empty() {
                fill(&mut pending);
            }
            let take = pending.len().min((len - got) as usize);
            verify(&pending[..take], &mut got);
            pending.drain(..take);
        }
        return got;
    }
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(p) = find(&pending[pos..], b"\r\n") {
                break pos + p;
            }
            fill(&mut pending);
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&pending[pos..line_end])
                .expect("size line")
                .split(';')
                .next()
                .expect("size"),
            16,
        )
        .expect("hex size");
        pos = line_end + 2;
        if size == 0 {
            while find(&pending[pos..], b"\r\n").is_none() {
                fill(&mut pending);
            }
            return got;
        }
        while pending.len() < pos + size + 2 {
            fill(&mut pending);
        }
        verify(&pending[pos..pos + size], &mut got);
        pos += size + 2;
        if pos > 1024 * 1024 {
            pending.drain(..pos);
            pos = 0;
        }
    }
}

/// Sends `SIZE` pattern bytes as the body, CL or chunked, from a separate thread.
fn upload_to(
    mut w: std::net::TcpStream,
    path: &'static str,
    chunked: bool,
    sent: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let te = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {SIZE}")
        };
        w.write_all(format!("POST {path} HTTP/1.1\r\nHost: a\r\n{te}\r\n\r\n").as_bytes())
            .expect("head");
        let block: Vec<u8> = (0..(26 * 10_000u64)).map(pattern_byte).collect();
        let mut off = 0u64;
        while off < SIZE {
            let n = (SIZE - off).min(block.len() as u64) as usize;
            if chunked {
                w.write_all(format!("{n:x}\r\n").as_bytes())
                    .expect("chunk line");
            }
            w.write_all(&block[..n]).expect("body");
            if chunked {
                w.write_all(b"\r\n").expect("chunk end");
            }
            off += n as u64;
            sent.store(off, Ordering::SeqCst);
        }
        if chunked {
            w.write_all(b"0\r\n\r\n").expect("last chunk");
        }
    })
}

fn config(origin: SocketAddr) -> String {
    Config::proxy_all(origin)
        .section("[limits]\nmax_body_bytes = 0")
        .render()
}

/// Runs `transfer` against a gateway in front of the bundled origin and checks that the
/// gateway's RSS stayed under the limit meanwhile.
fn with_bounded_memory(d: Driver, transfer: impl FnOnce(std::net::SocketAddr)) {
    let origin = BundledOrigin::start();
    let gw = Gateway::start(&config(origin.addr), d);
    let done = Arc::new(AtomicBool::new(false));
    let rss = watch_rss(gw.pid(), done.clone());
    transfer(gw.addr());
    done.store(true, Ordering::SeqCst);
    let peak = rss.join().expect("rss watcher");
    assert!(peak < RSS_LIMIT_KIB, "gateway RSS peaked at {peak} KiB");
}

fn download(d: Driver, path: &str) {
    with_bounded_memory(d, |addr| {
        let mut s = connect(addr);
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .expect("request");
        let (head, rest) = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(check_body(&mut s, &head, rest), SIZE);
    });
}

/// Uploads 64 MiB to the origin's `/sink`, which counts and checks every byte it received.
fn upload_sink(d: Driver, chunked: bool) {
    with_bounded_memory(d, |addr| {
        let s = connect(addr);
        let sent = Arc::new(AtomicU64::new(0));
        let writer = upload_to(
            s.try_clone().expect("clone"),
            "/sink",
            chunked,
            sent.clone(),
        );
        writer.join().expect("writer");
        assert_eq!(sent.load(Ordering::SeqCst), SIZE);
        let resp = Reader::new(s).response().expect("response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body_text(), format!("bytes={SIZE} pattern=ok\n"));
    });
}

/// Uploads 64 MiB to `/echo`, which answers while it is still reading: ringway must relay
/// both directions at once or the two would wait on each other.
fn upload_echo(d: Driver, chunked: bool) {
    with_bounded_memory(d, |addr| {
        let mut s = connect(addr);
        let sent = Arc::new(AtomicU64::new(0));
        let writer = upload_to(
            s.try_clone().expect("clone"),
            "/echo",
            chunked,
            sent.clone(),
        );
        let (head, rest) = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(check_body(&mut s, &head, rest), SIZE);
        writer.join().expect("writer");
        assert_eq!(sent.load(Ordering::SeqCst), SIZE);
    });
}

both_drivers! {
    fn a_64_mib_echo_streams_both_directions_at_once(d) {
        upload_echo(d, false);
    }
    fn a_64_mib_chunked_echo_streams_both_directions_at_once(d) {
        upload_echo(d, true);
    }
    fn a_64_mib_content_length_response_streams_with_bounded_memory(d) {
        download(d, &format!("/bytes/{SIZE}"));
    }
    fn a_64_mib_chunked_response_streams_with_bounded_memory(d) {
        download(d, &format!("/chunked/{SIZE}?chunk=65536"));
    }
    fn a_64_mib_content_length_request_streams_with_bounded_memory(d) {
        upload_sink(d, false);
    }
    fn a_64_mib_chunked_request_streams_with_bounded_memory(d) {
        upload_sink(d, true);
    }
}
