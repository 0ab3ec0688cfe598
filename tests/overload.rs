//! The overload manager (`limits.memory_ceiling`), end to end under both I/O drivers: a
//! flood of slow heads (slowloris), slow bodies and silent connections together keeps
//! ringway's resident memory under the ceiling (it sheds from 90% of it), ringway never
//! leaves a connection accepted but silent, still serves between shedding episodes, closes
//! idle keep-alive connections and heads still arriving when it sheds, and serves normally
//! again once the flood ends.
//! Also: a ceiling set by a reload is followed, and one too small is refused with its field.

use ringway_test_support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CEILING: u64 = 128 << 20;
/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(4);
/// Connections each flooding thread keeps open at most (three threads, well under the
/// test process's file limit).
const PER_KIND: usize = 2500;

/// The floods of the two drivers' tests would add up: one at a time.
static ONE_FLOOD: Mutex<()> = Mutex::new(());

/// What a flooding connection sends and then keeps quiet about.
#[derive(Clone, Copy)]
enum Kind {
    /// 12 KB of a head that never ends (under `max_header_bytes`).
    SlowHead,
    /// A 1 MB body of which 30 KB came.
    SlowBody,
    /// Nothing at all.
    Silent,
}

impl Kind {
    fn bytes(self) -> Vec<u8> {
        match self {
            Kind::SlowHead => {
                let mut b = b"GET /flood HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
                b.resize(b.len() + 12_000, b'a');
                b
            }
            Kind::SlowBody => {
                let mut b =
                    b"POST /flood HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n".to_vec();
                b.resize(b.len() + 30_000, b'b');
                b
            }
            Kind::Silent => Vec::new(),
        }
    }
}

/// Opens connections of one kind (one every 3 ms) until `stop`, keeping them open; then
/// closes them all.
fn flood(addr: SocketAddr, kind: Kind, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let bytes = kind.bytes();
        let mut open = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if open.len() < PER_KIND {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                    // A connection ringway already closed may refuse the bytes: that is fine.
                    let _ = s.write_all(&bytes);
                    open.push(s);
                }
            }
            thread::sleep(Duration::from_millis(3));
        }
        open.len()
    })
}

/// One GET on a fresh connection: its status, or 0 when ringway closed the connection
/// without an answer (shedding a new connection). Panics if nothing at all happens within
/// 2 s: ringway never leaves a connection accepted but silent.
fn probe(addr: SocketAddr) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    if s.write_all(b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= 12 {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("a probe connection was left without an answer for 2 s")
            }
            Err(_) => break,
        }
    }
    if got.len() < 12 {
        return 0;
    }
    std::str::from_utf8(&got[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A metric's value from the admin listener (0 when absent).
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = get(admin, "/metrics").body_text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn config(origin: &Origin, ceiling: u64) -> String {
    Config::proxy_all(origin.addr())
        .section(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[timeouts]\nheader = \"30s\"\nbody = \"30s\"\n\
             [limits]\nmemory_ceiling = {ceiling}"
        ))
        .render()
}

both_drivers! {
    fn a_flood_of_slow_clients_stays_under_the_memory_ceiling_and_service_comes_back(d) {
        let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
        let origin = Origin::ok("fine");
        let gw = Gateway::start(&config(&origin, CEILING), d);
        let (addr, admin) = (gw.addr(), gw.admin_addr());
        let base = gw.rss_kib() << 10;
        assert!(base < CEILING * 8 / 10, "ringway alone uses {} MiB", base >> 20);
        // A keep-alive client from before the flood: its idle connection is closed when
        // ringway starts shedding.
        let mut idle = Reader::new(connect(addr));
        idle.send(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(idle.response().map(|r| r.status), Some(200));

        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak, pid) = (stop.clone(), peak.clone(), gw.pid());
            thread::spawn(move || {
                let rss = |pid: u32| {
                    std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .unwrap_or_default()
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                        .unwrap_or(0)
                        << 10
                };
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(rss(pid), Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(5));
                }
                peak.fetch_max(rss(pid), Ordering::SeqCst);
            })
        };
        let floods: Vec<_> = [Kind::SlowHead, Kind::SlowBody, Kind::Silent]
            .into_iter()
            .map(|k| flood(addr, k, stop.clone()))
            .collect();
        let started = Instant::now();
        let mut during = Vec::new();
        while started.elapsed() < FLOOD {
            during.push(probe(addr));
            thread::sleep(Duration::from_millis(40));
        }
        stop.store(true, Ordering::SeqCst);
        let opened: usize = floods.into_iter().map(|f| f.join().expect("flood")).sum();
        sampler.join().expect("sampler");

        let peak = peak.load(Ordering::SeqCst);
        let overloads = metric(admin, "ringway_overloads_total");
        let shed = metric(admin, "ringway_overload_shed_total");
        assert!(
            overloads >= 1 && shed >= 1,
            "the flood ({opened} connections held at the end) never reached the threshold: \
             peak {} MiB, {overloads} overloads, {shed} shed",
            peak >> 20
        );
        assert!(
            peak < CEILING,
            "resident memory reached {} MiB, over the {} MiB ceiling",
            peak >> 20,
            CEILING >> 20
        );
        let served = during.iter().filter(|s| **s == 200).count();
        assert!(
            during.iter().all(|s| matches!(s, 0 | 200 | 503)),
            "probes during the flood: {during:?}"
        );
        assert!(served > 0, "nothing was served during the flood: {during:?}");
        assert!(idle.closes_within(Duration::from_secs(1)), "the idle keep-alive connection stayed open");

        // The flood is over: service is back within a second and stays.
        eventually("service to come back")
            .within(Duration::from_secs(1))
            .until(|| probe(addr) == 200);
        for _ in 0..20 {
            assert_eq!(probe(addr), 200);
        }
        assert_eq!(metric(admin, "ringway_overloaded"), 0);
        // Keep-alive is on again.
        let mut ka = Reader::new(connect(addr));
        for _ in 0..3 {
            ka.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
            let r = ka.response().expect("a response");
            assert_eq!(r.status, 200);
            assert_ne!(r.header("Connection"), Some("close"));
        }
        eprintln!(
            "flood: base {} MiB, peak {} MiB of {} MiB, {overloads} overloads, {shed} shed, \
             {served}/{} probes served during",
            base >> 20,
            peak >> 20,
            CEILING >> 20,
            during.len()
        );
    }

    fn a_ceiling_set_by_a_reload_is_followed_and_closes_heads_still_arriving(d) {
        let _one = ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner());
        let origin = Origin::ok("fine");
        let gw = Gateway::start(&config(&origin, 0), d);
        let (addr, admin) = (gw.addr(), gw.admin_addr());
        assert_eq!(probe(addr), 200);
        // Connections that sent nothing yet hold memory (their head buffers and tasks).
        let mut silent: Vec<_> = (0..600).map(|_| Reader::new(connect(addr))).collect();
        eventually("600 connections to cost 24 MiB (they cost nothing?)")
            .until(|| gw.rss_kib() << 10 >= (24 << 20));
        // A ceiling under what ringway now uses: it sheds at once.
        let ceiling = (gw.rss_kib() << 10) * 9 / 10;
        std::fs::write(gw.config_path(), config(&origin, ceiling)).expect("rewrite config");
        gw.signal("HUP");
        gw.wait_log("config reloaded");
        gw.wait_log("shedding new requests and connections");
        // Each connection still waiting for its head is closed, unanswered (an answer
        // would cost memory).
        for r in silent.iter_mut() {
            assert!(r.closes_within(Duration::from_secs(2)), "a silent connection stayed open");
            assert!(r.leftover().is_empty(), "a shed connection was answered");
        }
        drop(silent);
        // The ceiling off again: served.
        std::fs::write(gw.config_path(), config(&origin, 0)).expect("rewrite config");
        gw.signal("HUP");
        eventually("service with the ceiling off (still shedding?)")
            .within(Duration::from_secs(5))
            .until(|| probe(addr) == 200);
        assert!(metric(admin, "ringway_overload_shed_total") >= 600);
        assert_eq!(metric(admin, "ringway_overloads_total"), 1);
    }
}

#[test]
fn a_ceiling_under_16_mib_is_refused_with_its_field() {
    let origin = Origin::ok("fine");
    let path = std::env::temp_dir().join(format!("ringway-overload-{}.toml", std::process::id()));
    std::fs::write(&path, config(&origin, 512)).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("ringway check");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("limits.memory_ceiling") && text.contains("not MiB"),
        "{text}"
    );
}
