//! slowhttptest against ringway, the short form of `tools/attack.sh` run by `cargo test`:
//! slowloris (`-H`), slow body (`-B`) and slow read (`-X`), under both I/O drivers, with
//! 2 s deadlines. While an attack runs, a probe asks for `/small` on a fresh connection
//! every 100 ms and every answer must be a 200 within 2 s; slowhttptest's own probe must
//! never fail either. Every attacking connection must have been closed by its deadline:
//! - at ringway's end: a watcher reads /proc/net/tcp every 100 ms and times each connection
//!   on ringway's port that ringway still holds (ESTABLISHED or CLOSE_WAIT on its side: once
//!   ringway closes a socket it leaves those states). A connection first seen at sample i
//!   and gone at sample j was held for at most t(j) - t(i-1), which must be within the
//!   deadline + `SLACK`;
//! - at the attacker's end (`-H`, `-B`): slowhttptest's CSV gives its connection states each
//!   second. At every second as many connections must be closed as had been opened by the
//!   deadline + `SLACK` + 1 s (the CSV's granularity) earlier, and slowhttptest must end
//!   because no connection is left open, not on its time limit, within that lag after its
//!   last connection opened.
//!
//! A slow reader (`-X`) notices a close only after reading what its own kernel already
//! holds for it (about a KiB at 16 B/s: a minute, even after a reset), so its end is not
//! checked. ringway lets go of it at the write deadline and aborts the connection (a reset),
//! so the ~1.6 MB still in the socket's send queue is dropped: no socket of ringway's port may
//! still be flushing data to a reader 2 s after ringway let go (docs/performance.md, "Attack script").
//!
//! Afterwards ringway still answers and its open descriptors are back where they were.
//!
//! slowhttptest is a Debian package, which `.ci/run` installs. Without it these tests fail
//! with a message saying so; `RINGWAY_SKIP_ATTACK=1` skips them explicitly.

use ringway_test_support::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RATE: &str = "200";
/// slowhttptest's own time limit (s).
const LENGTH: u64 = 15;
/// Timer, scheduling and sampling slack on a loaded CI machine.
const SLACK: Duration = Duration::from_secs(2);
const SAMPLE: Duration = Duration::from_millis(100);

const HEADER_S: u64 = 2;
const BODY_S: u64 = 4;
const WRITE_S: u64 = 2;
const IDLE_S: u64 = 2;
const MIN_BODY_RATE: u64 = 1024;
const GRACE_S: u64 = 1;

fn deadlines() -> String {
    format!(
        "[timeouts]\nheader = \"{HEADER_S}s\"\nbody = \"{BODY_S}s\"\nidle = \"{IDLE_S}s\"\n\
         write = \"{WRITE_S}s\"\n[limits]\nmin_body_rate = {MIN_BODY_RATE}\n\
         min_body_rate_grace = \"{GRACE_S}s\""
    )
}

#[derive(Clone, Copy, Debug)]
enum Attack {
    /// `-H`: a head that never ends, a new field every second.
    Headers,
    /// `-B`: a POST body of a few bytes a second.
    Body,
    /// `-X`: a 2 MiB body (more than the kernel buffers for one such connection, about
    /// 1.6 MB, so that ringway's write stalls) read 32 bytes every 2 s through a tiny
    /// receive window.
    Read,
}

impl Attack {
    fn args(self, base: &str) -> Vec<String> {
        let mode = match self {
            Attack::Headers => format!("-H -i 1 -x 24 -u {base}/"),
            Attack::Body => format!("-B -i 1 -x 10 -s 8192 -u {base}/sink"),
            Attack::Read => format!("-X -w 512 -y 1024 -n 2 -z 32 -k 1 -u {base}/bytes/2097152"),
        };
        let conns = format!(" -c {}", self.conns());
        (mode + &conns)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    fn conns(self) -> usize {
        match self {
            // Fewer: each pins about 4 MiB of kernel socket buffers (truesize) until
            // slowhttptest exits, and a small CI machine has a few hundred MiB for TCP.
            Attack::Read => 50,
            _ => 200,
        }
    }

    /// When ringway must have closed an attacking connection, counted from its accept.
    fn deadline(self) -> Duration {
        match self {
            Attack::Headers => Duration::from_secs(HEADER_S),
            // The grace, then each byte buys 1/rate s: slowhttptest sends "foo=bar" with
            // the head and at most 22 bytes a second after it (-i 1 -x 10).
            Attack::Body => {
                let most = 7 + 22 * BODY_S;
                let paced = GRACE_S as f64 + most as f64 / MIN_BODY_RATE as f64;
                Duration::from_secs_f64(paced.min(BODY_S as f64))
            }
            // The first writes of the large response stall at once.
            Attack::Read => Duration::from_secs(WRITE_S),
        }
    }
}

/// False when the attack tests are to be skipped (`RINGWAY_SKIP_ATTACK=1`); panics when
/// slowhttptest is missing otherwise, so that a machine without it never passes silently.
fn slowhttptest_available() -> bool {
    if std::env::var("RINGWAY_SKIP_ATTACK").as_deref() == Ok("1") {
        eprintln!("attack tests skipped: RINGWAY_SKIP_ATTACK=1");
        return false;
    }
    let found = Command::new("slowhttptest")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "slowhttptest is not installed: `apt-get install -y slowhttptest` (.ci/run does), \
         or set RINGWAY_SKIP_ATTACK=1 to skip the attack tests"
    );
    true
}

/// What the watcher saw of the connections ringway held on its port.
#[derive(Default, Debug)]
struct Held {
    /// Per connection, an upper bound of how long ringway held it.
    spans: Vec<Duration>,
    /// Connections still held at the last sample.
    still: usize,
    peak: usize,
    /// Most sockets at once that ringway had closed and the kernel was still flushing.
    peak_flushing: usize,
}

/// Samples /proc/net/tcp every `SAMPLE` (see the module doc).
struct Watcher {
    stop: Arc<AtomicBool>,
    /// Connections held at the last sample, seen so far, and being flushed at the last
    /// sample.
    now: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
    flushing: Arc<AtomicUsize>,
    handle: thread::JoinHandle<Held>,
}

impl Watcher {
    fn start(port: u16) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let now = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let flushing = Arc::new(AtomicUsize::new(0));
        let (stop2, now2, seen2) = (stop.clone(), now.clone(), seen.clone());
        let flushing2 = flushing.clone();
        let handle = thread::spawn(move || {
            let mut held = Held::default();
            let mut since: HashMap<u16, Instant> = HashMap::new();
            let mut last = Instant::now();
            while !stop2.load(Ordering::SeqCst) {
                let t = Instant::now();
                let (current, closing) = sockets_on(port);
                for p in &current {
                    since.entry(*p).or_insert(last);
                }
                since.retain(|p, from| {
                    let keep = current.contains(p);
                    if !keep {
                        held.spans.push(t - *from);
                    }
                    keep
                });
                held.peak = held.peak.max(current.len());
                held.peak_flushing = held.peak_flushing.max(closing);
                now2.store(current.len(), Ordering::SeqCst);
                flushing2.store(closing, Ordering::SeqCst);
                seen2.store(held.spans.len() + since.len(), Ordering::SeqCst);
                last = t;
                thread::sleep(SAMPLE);
            }
            held.still = since.len();
            held
        });
        Watcher {
            stop,
            now,
            seen,
            flushing,
            handle,
        }
    }

    /// Waits (bounded) until the kernel flushes no socket ringway closed; how many it
    /// still flushes then.
    fn wait_none_flushing(&self, within: Duration) -> usize {
        eventually("the kernel to flush no socket ringway closed")
            .within(within)
            .try_until(|| self.flushing.load(Ordering::SeqCst) == 0);
        self.flushing.load(Ordering::SeqCst)
    }

    /// Whether ringway has seen `n` connections and holds none of them any more.
    fn all_let_go(&self, n: usize) -> bool {
        self.seen.load(Ordering::SeqCst) >= n && self.now.load(Ordering::SeqCst) == 0
    }

    /// Waits (bounded) until ringway holds no connection on its port.
    fn wait_none_held(&self, within: Duration) {
        eventually("ringway to hold no connection on its port")
            .within(within)
            .try_until(|| self.now.load(Ordering::SeqCst) == 0);
    }

    fn finish(self) -> Held {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("watcher")
    }
}

/// On local `port`: the client ports of the connections ringway holds (ESTABLISHED or
/// CLOSE_WAIT), and how many sockets ringway closed that the kernel still flushes
/// (FIN_WAIT1: the FIN waits behind unsent data).
fn sockets_on(port: u16) -> (Vec<u16>, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |addr: &str| {
        let hex = addr.rsplit(':').next()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let (mut held, mut flushing) = (Vec::new(), 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || port_of(f[1]) != Some(port) {
            continue;
        }
        match f[3] {
            "01" | "08" => held.extend(port_of(f[2])),
            "04" => flushing += 1,
            _ => {}
        }
    }
    (held, flushing)
}

/// `GET /small` on a fresh connection, answered 200 within 2 s.
fn probe_once(addr: SocketAddr) -> bool {
    let limit = Duration::from_secs(2);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    let sent = s.write_all(b"GET /small HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    sent.is_ok() && s.read_to_end(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 200 ")
}

/// Probes every 100 ms until stopped; (answered, asked).
fn probe(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<(usize, usize)> {
    thread::spawn(move || {
        let (mut ok, mut all) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            all += 1;
            ok += usize::from(probe_once(addr));
            thread::sleep(Duration::from_millis(100));
        }
        (ok, all)
    })
}

/// One row of slowhttptest's CSV.
#[derive(Debug, Clone, Copy)]
struct Row {
    second: u64,
    closed: u64,
    pending: u64,
    connected: u64,
    available: u64,
}

fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let v: Vec<u64> = l.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (v.len() == 5).then(|| Row {
                second: v[0],
                closed: v[1],
                pending: v[2],
                connected: v[3],
                available: v[4],
            })
        })
        .collect()
}

/// slowhttptest's "Exit status:" line, without its colours.
fn exit_status(log: &str) -> String {
    let mut plain = String::new();
    let mut esc = false;
    for c in log.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, c) if c.is_ascii_alphabetic() => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain
        .rsplit_once("Exit status:")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// When to stop slowhttptest (it is this test's own child).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// It ends by itself: no connection left open, or its time limit.
    ItsEnd,
    /// ringway has let go of every attacking connection.
    RingwayLetGo,
}

fn spawn_slowhttptest(attack: Attack, base: &str, out: &Path) -> Child {
    Command::new("slowhttptest")
        .args(attack.args(base))
        .args(["-r", RATE, "-l", &LENGTH.to_string(), "-p", "2", "-g", "-o"])
        .arg(out)
        .stdout(std::fs::File::create(out.with_extension("log")).expect("slowhttptest log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn slowhttptest")
}

/// Everything one attack run observed.
struct Outcome {
    attack: Attack,
    /// Probe requests answered 200, and sent.
    probes: (usize, usize),
    held: Held,
    rows: Vec<Row>,
    status: String,
    fds: (usize, usize),
    answers_after: bool,
    /// With `Until::RingwayLetGo`: sockets the kernel still flushed `SLACK` after ringway
    /// let go of the last attacking connection.
    flushing_after: usize,
}

impl Outcome {
    fn summary(&self) -> String {
        format!(
            "{:?}: probe {}/{}, slowhttptest exit status {:?}, {} connections seen by \
             ringway (peak {}, still {}), longest held {:?}, flushed by the kernel after \
             ringway closed them: peak {}, {} still {SLACK:?} after the last, fds {} -> {}, \
             last CSV row {:?}",
            self.attack,
            self.probes.0,
            self.probes.1,
            self.status,
            self.held.spans.len(),
            self.held.peak,
            self.held.still,
            self.held.spans.iter().max(),
            self.held.peak_flushing,
            self.flushing_after,
            self.fds.0,
            self.fds.1,
            self.rows.last()
        )
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Runs `attack` against a fresh ringway (in front of the bundled origin).
fn run(attack: Attack, d: Driver, until: Until) -> Outcome {
    let origin = BundledOrigin::start();
    let gw = Gateway::start(
        &Config::proxy_all(origin.addr)
            .section(&deadlines())
            .render(),
        d,
    );
    let addr = gw.addr();
    assert!(probe_once(addr), "ringway answers before the attack");
    let fds_before = open_fds(gw.pid());
    let dir = std::env::temp_dir().join(format!(
        "ringway-attack-{}-{attack:?}-{d:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let watcher = Watcher::start(addr.port());
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(addr, stop.clone());

    let out = dir.join("attack");
    let mut child = spawn_slowhttptest(attack, &format!("http://{addr}"), &out);
    // Until slowhttptest ends (`Some(false)`) or, if that is what the test waits for,
    // ringway let go of every attacking connection (`Some(true)`); `None` past the limit.
    let ended = eventually("slowhttptest to end")
        .within(Duration::from_secs(LENGTH + 15))
        .try_until(|| {
            if child.try_wait().expect("slowhttptest").is_some() {
                return Some(false);
            }
            let let_go = until == Until::RingwayLetGo && watcher.all_let_go(attack.conns());
            let_go.then_some(true)
        });
    let mut flushing_after = 0;
    if ended == Some(true) {
        // Still attacking (its sockets open): does the kernel let go too?
        flushing_after = watcher.wait_none_flushing(SLACK);
    }
    if ended != Some(false) {
        let _ = child.kill();
        let _ = child.wait();
    }
    stop.store(true, Ordering::SeqCst);
    let probes = prober.join().expect("probe");
    watcher.wait_none_held(attack.deadline() + SLACK);
    let held = watcher.finish();
    let log = std::fs::read_to_string(out.with_extension("log")).unwrap_or_default();
    let outcome = Outcome {
        attack,
        probes,
        held,
        rows: read_csv(&out.with_extension("csv")),
        status: exit_status(&log),
        fds: (fds_before, open_fds(gw.pid())),
        answers_after: probe_once(addr),
        flushing_after,
    };
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{}", outcome.summary());
    outcome
}

/// The probes were all answered, slowhttptest's own probe never failed, and ringway still
/// answers afterwards with its descriptors back where they were.
fn assert_available(o: &Outcome) {
    let (ok, asked) = o.probes;
    assert!(asked >= 5 && ok == asked, "probe failed: {}", o.summary());
    assert!(!o.rows.is_empty(), "no slowhttptest CSV: {}", o.summary());
    assert!(
        o.rows.iter().all(|r| r.available > 0),
        "slowhttptest's probe failed: {:?}",
        o.rows
    );
    assert!(o.answers_after, "ringway answers after the attack");
    assert!(o.fds.1 <= o.fds.0 + 8, "fds not back: {}", o.summary());
}

/// ringway held every attacking connection no longer than its deadline + `SLACK`.
fn assert_ringway_closed_in_time(o: &Outcome) {
    let limit = o.attack.deadline() + SLACK;
    assert!(
        o.held.spans.len() >= o.attack.conns() * 9 / 10,
        "too few connections seen: {}",
        o.summary()
    );
    assert_eq!(o.held.still, 0, "connections still held: {}", o.summary());
    let late = o.held.spans.iter().filter(|s| **s > limit).count();
    assert_eq!(
        late,
        0,
        "{late} held longer than {limit:?}: {}",
        o.summary()
    );
}

/// slowhttptest saw its connections closed in time: at every second, as many closed as
/// had been opened the deadline + `SLACK` + 1 s earlier, none left at its end, and that end
/// came no later than that lag after the last connection opened.
fn assert_attacker_saw_closes_in_time(o: &Outcome, notice: Duration) {
    let lag = (o.attack.deadline() + SLACK + Duration::from_secs(1) + notice).as_secs_f64();
    let lag = lag.ceil() as u64;
    let rows = &o.rows;
    let opened = |second: u64| {
        rows.iter()
            .take_while(|r| r.second <= second)
            .last()
            .map_or(0, |r| r.closed + r.connected)
    };
    for r in rows.iter().filter(|r| r.second >= lag) {
        assert!(
            r.closed >= opened(r.second - lag),
            "at {} s only {} closed, {} had opened {lag} s earlier: {rows:?}",
            r.second,
            r.closed,
            opened(r.second - lag)
        );
    }
    let last = rows[rows.len() - 1];
    assert!(
        o.status.starts_with("No open connections left") || last.connected + last.pending == 0,
        "slowhttptest still had open connections at its end: {}",
        o.summary()
    );
    // The last connection was closed no later than `lag` after the last one opened.
    let all_open = rows
        .iter()
        .find(|r| r.closed + r.connected >= o.attack.conns() as u64)
        .map_or(0, |r| r.second);
    assert!(
        last.second <= all_open + lag,
        "slowhttptest ran to {} s, more than {lag} s after its last connection opened \
         ({all_open} s): {}",
        last.second,
        o.summary()
    );
}

fn attack(attack: Attack, d: Driver, until: Until) -> Option<Outcome> {
    slowhttptest_available().then(|| run(attack, d, until))
}

both_drivers! {
    fn slowloris_connections_are_closed_by_the_header_deadline_while_others_are_served(d) {
        if let Some(o) = attack(Attack::Headers, d, Until::ItsEnd) {
            assert_available(&o);
            assert_ringway_closed_in_time(&o);
            assert_attacker_saw_closes_in_time(&o, Duration::ZERO);
        }
    }

    fn slow_body_connections_are_closed_by_the_body_rate_while_others_are_served(d) {
        if let Some(o) = attack(Attack::Body, d, Until::ItsEnd) {
            assert_available(&o);
            assert_ringway_closed_in_time(&o);
            assert_attacker_saw_closes_in_time(&o, Duration::ZERO);
        }
    }

    fn slow_readers_are_let_go_by_the_write_timeout_and_reset_while_others_are_served(d) {
        if let Some(o) = attack(Attack::Read, d, Until::RingwayLetGo) {
            assert_available(&o);
            assert_ringway_closed_in_time(&o);
            // Aborted (a reset), so the kernel keeps nothing queued for the reader.
            assert_eq!(o.flushing_after, 0, "{}", o.summary());
        }
    }
}
