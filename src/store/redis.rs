//! A worker's Redis client: one connection on the worker's own runtime, commands queued
//! without blocking (a bounded queue; a full one refuses at once), sent in pipelined batches,
//! each batch's answers awaited within `command_timeout`. A failure of any kind (connect,
//! TLS, `AUTH`, a timeout, a protocol error) closes the connection, fails the commands in
//! flight and queued, marks the client down (the request path then decides without Redis),
//! and reconnects with backoff (100 ms doubling to 2 s); an idle connection is PINGed each
//! second, so a lost server shows before a request needs it; global counting resumes by itself
//! once a connection is up again. Lost and regained connections are logged once per
//! process and transition, not per worker.
//!
//! The one command is the lease script (`LEASE_SCRIPT`, loaded with `SCRIPT LOAD` on each
//! connection and run with `EVALSHA`): atomically, on Redis' own clock, it takes up to
//! `want` tokens of a key's GCRA budget (or gives `-want` back) and says how many it took
//! and, when none are left, how long until the next.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::resp::{self, Reply};
use crate::config::{ConfigError, RedisConfig};
use crate::metrics::{bump, Histogram};
use crate::notify::LocalNotify;
use crate::tls::UpstreamTls;

/// GCRA over a key holding the theoretical arrival time (TAT) in microseconds of Redis
/// TIME. ARGV: emission interval T, tolerance L = T × burst, want (> 0: take up to that
/// many; < 0: give that many back), reserve (µs). Returns {taken, microseconds until one
/// more token, reserved}: when none could be taken and the next token comes within
/// `reserve`, that token is taken ahead (reserved = 1, valid after the wait), so that a key
/// at its limit costs one call per token and no request waits for it.
pub const LEASE_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local L = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local reserve = tonumber(ARGV[4] or '0')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local got = 0
if want >= 0 then
  got = math.floor((L - (tat - now)) / T)
  if got > want then got = want end
  if got < 0 then got = 0 end
  tat = tat + got * T
else
  tat = tat + want * T
  if tat < now then tat = now end
end
local wait = tat + T - L - now
if wait < 0 then wait = 0 end
local reserved = 0
if want > 0 and got == 0 and wait <= reserve then
  tat = tat + T
  reserved = 1
end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return {got, wait, reserved}
"#;

/// Commands waiting to be sent, at most: they go out as one batch (a few milliseconds of
/// Redis' work at most).
const MAX_QUEUE: usize = 1024;
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// An idle connection is checked with a PING this often.
const IDLE_PING: Duration = Duration::from_secs(1);
/// Read buffer: replies are a few dozen bytes each.
const READ_BUF: usize = 16 * 1024;

/// Workers of this process whose connection is down (for logging once per transition).
static DOWN: AtomicUsize = AtomicUsize::new(0);

/// `[redis]` as built for a worker.
pub struct Settings {
    pub config: RedisConfig,
    /// `config.address` resolved (off the workers, like upstream servers' names).
    addr: SocketAddr,
    /// Its host: the TLS server name unless `tls.server_name` says otherwise.
    host: String,
    tls: Option<UpstreamTls>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("address", &self.config.address)
            .finish_non_exhaustive()
    }
}

impl Settings {
    pub fn build(
        cfg: &RedisConfig,
        addr: SocketAddr,
        host: String,
        base: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> Settings {
        let tls = cfg
            .tls
            .as_ref()
            .and_then(|t| UpstreamTls::build("redis.tls", t, base, false, errors));
        Settings {
            config: cfg.clone(),
            addr,
            host,
            tls,
        }
    }

    /// Connections made with `other` would be made the same way (a reload that leaves
    /// `[redis]` and its address alone keeps the connections).
    pub fn same_as(&self, other: &Settings) -> bool {
        self.config == other.config && self.addr == other.addr
    }

    pub fn command_timeout(&self) -> Duration {
        self.config.command_timeout.0
    }
}

/// What became of one command: `Some((taken, wait_us, reserved))`, or None (no answer).
pub type Answer = Option<(i64, i64, bool)>;

/// Where answers go: the command's tag and its answer.
pub type OnAnswer = Box<dyn Fn(u64, Answer)>;

/// Commands waiting to be sent: their bytes, one after the other, and their tags in the
/// same order.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    tags: Vec<u64>,
}

/// This worker's counters, read at scrape time.
#[derive(Default)]
pub struct Stats {
    /// Decisions taken without Redis (`on_store_error`): the request path counts these.
    pub fallbacks: Cell<u64>,
    /// Requests that waited for a lease (a new key, or one whose tokens ran out before
    /// the next lease came): the request path counts these.
    pub waits: Cell<u64>,
    pub errors: Cell<u64>,
    pub leases: Cell<u64>,
    pub rtt: RefCell<Histogram>,
}

/// One worker's client (see the module doc).
pub struct Client {
    settings: Rc<Settings>,
    queue: RefCell<Queue>,
    wake: LocalNotify,
    up: Cell<bool>,
    /// Counted in `DOWN`.
    counted_down: Cell<bool>,
    stopped: Cell<bool>,
    /// The lease script's name, as `SCRIPT LOAD` answered.
    sha: RefCell<Vec<u8>>,
    stats: Rc<Stats>,
    on_answer: OnAnswer,
}

impl Client {
    /// Starts the connection task on the current (worker's) runtime.
    /// `stats` outlive the client (a reload may replace it).
    pub fn start(settings: Rc<Settings>, stats: Rc<Stats>, on_answer: OnAnswer) -> Rc<Client> {
        let c = Rc::new(Client {
            settings,
            queue: RefCell::default(),
            wake: LocalNotify::default(),
            up: Cell::new(false),
            counted_down: Cell::new(false),
            stopped: Cell::new(false),
            sha: RefCell::new(Vec::new()),
            stats,
            on_answer,
        });
        monoio::spawn(run(c.clone()));
        c
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A connection is up and set up: commands can be answered.
    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Queues the lease script for `key` (see `LEASE_SCRIPT` for the arguments); false
    /// (nothing queued) when the client is down or its queue is full.
    pub fn lease(
        &self,
        tag: u64,
        key: &[u8],
        interval_us: u64,
        tolerance_us: u64,
        want: i64,
        reserve_us: u64,
    ) -> bool {
        let mut q = self.queue.borrow_mut();
        if !self.up.get() || q.tags.len() >= MAX_QUEUE {
            return false;
        }
        let num = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut bufs = [[0u8; 20]; 4];
        let [t, l, w, r] = &mut bufs;
        let args: [&[u8]; 8] = [
            b"EVALSHA",
            &self.sha.borrow(),
            b"1",
            key,
            resp::decimal(t, num(interval_us)),
            resp::decimal(l, num(tolerance_us)),
            resp::decimal(w, want),
            resp::decimal(r, num(reserve_us)),
        ];
        resp::encode(&mut q.bytes, &args);
        q.tags.push(tag);
        drop(q);
        self.wake.notify_all();
        true
    }

    /// Ends the connection task (a reload with other `[redis]` settings, or none).
    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify_all();
    }

    fn set_up(&self, up: bool, why: &str) {
        self.up.set(up);
        let addr = &self.settings.config.address;
        // Counted down before this call, and now.
        let was_down = self.counted_down.replace(!up);
        if up && was_down && DOWN.fetch_sub(1, Ordering::SeqCst) == 1 {
            log::warn!("redis {addr}: reachable again; global rate limits count globally");
        }
        if !up && !was_down && DOWN.fetch_add(1, Ordering::SeqCst) == 0 {
            log::warn!(
                "redis {addr}: unreachable ({why}); global rate limits follow on_store_error"
            );
        }
    }

    /// Fails every queued command.
    fn fail_queued(&self) {
        let failed = {
            let mut q = self.queue.borrow_mut();
            q.bytes.clear();
            std::mem::take(&mut q.tags)
        };
        for tag in failed {
            (self.on_answer)(tag, None);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.counted_down.get() {
            DOWN.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn run(c: Rc<Client>) {
    let mut backoff = BACKOFF_FIRST;
    while !c.stopped.get() {
        let why = match session(&c).await {
            Ok(()) => break,
            Err(why) => why,
        };
        if c.up.get() {
            // That connection had been set up: start backing off afresh.
            backoff = BACKOFF_FIRST;
        }
        bump(&c.stats.errors);
        c.set_up(false, &why);
        log::debug!("redis {}: {why}", c.settings.config.address);
        c.fail_queued();
        monoio::select! {
            _ = monoio::time::sleep(backoff) => {},
            _ = c.wake.notified() => {},
        }
        c.fail_queued();
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    c.up.set(false);
    c.fail_queued();
}

/// One connection's life: Ok when stopped, Err(why) when it failed.
async fn session(c: &Rc<Client>) -> Result<(), String> {
    let s = &c.settings;
    let (addr, deadline) = (s.addr, Instant::now() + s.config.connect_timeout.0);
    let timed_out = |_| format!("connect {addr}: timed out");
    match &s.tls {
        None => {
            let tcp = monoio::time::timeout_at(deadline.into(), TcpStream::connect_addr(addr))
                .await
                .map_err(timed_out)?
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            serve(c, tcp, deadline).await
        }
        Some(tls) => {
            let (stream, _) =
                monoio::time::timeout_at(deadline.into(), tls.connect(addr, &s.host, &[]))
                    .await
                    .map_err(timed_out)?
                    .map_err(|e| format!("connect {addr}: {e}"))?;
            serve(c, stream, deadline).await
        }
    }
}

/// Sets the connection up (`AUTH`, `SELECT`, `SCRIPT LOAD`) by `deadline`, then sends the
/// queue in batches until stopped or failed.
async fn serve<S: AsyncReadRent + AsyncWriteRent>(
    c: &Rc<Client>,
    mut s: S,
    deadline: Instant,
) -> Result<(), String> {
    let cfg = &c.settings.config;
    let mut rbuf = Reader::new();
    let mut setup = Vec::new();
    let mut expect = 0;
    if let Some(pass) = &cfg.password {
        match &cfg.username {
            Some(user) => resp::encode(&mut setup, &[b"AUTH", user.as_bytes(), pass.as_bytes()]),
            None => resp::encode(&mut setup, &[b"AUTH", pass.as_bytes()]),
        }
        expect += 1;
    }
    if cfg.db != 0 {
        resp::encode(&mut setup, &[b"SELECT", cfg.db.to_string().as_bytes()]);
        expect += 1;
    }
    resp::encode(&mut setup, &[b"SCRIPT", b"LOAD", LEASE_SCRIPT.as_bytes()]);
    expect += 1;
    let (res, _) = s.write_all(setup).await;
    res.map_err(|e| format!("write: {e}"))?;
    for i in 0..expect {
        let reply = rbuf.next(&mut s, deadline).await?;
        match reply {
            Reply::Error(e) => {
                let what = if i + 1 == expect {
                    "SCRIPT LOAD"
                } else {
                    "set-up"
                };
                return Err(format!("{what}: {}", String::from_utf8_lossy(&e)));
            }
            Reply::Bulk(Some(sha)) if i + 1 == expect => *c.sha.borrow_mut() = sha,
            _ if i + 1 == expect => return Err("SCRIPT LOAD: unexpected answer".into()),
            _ => {}
        }
    }
    c.set_up(true, "");
    // The batch in flight: swapped with the queue's, so neither is copied.
    let mut batch = Vec::new();
    let mut out = Vec::new();
    loop {
        if c.stopped.get() {
            return Ok(());
        }
        if c.queue.borrow().tags.is_empty() {
            let idle = monoio::time::timeout(IDLE_PING, c.wake.notified()).await;
            if idle.is_err() {
                // Nothing to send for a while: make sure the connection still answers, so
                // that a lost Redis shows (and is logged) before a request needs it.
                let mut ping = Vec::new();
                resp::encode(&mut ping, &[b"PING"]);
                let (res, _) = s.write_all(ping).await;
                res.map_err(|e| format!("write: {e}"))?;
                let deadline = Instant::now() + c.settings.command_timeout();
                match rbuf.next(&mut s, deadline).await? {
                    Reply::Simple(p) if p == b"PONG" => {}
                    _ => return Err("PING: unexpected answer".into()),
                }
            }
            continue;
        }
        batch.clear();
        out.clear();
        {
            let mut q = c.queue.borrow_mut();
            std::mem::swap(&mut q.bytes, &mut out);
            std::mem::swap(&mut q.tags, &mut batch);
        }
        let started = Instant::now();
        let deadline = started + c.settings.command_timeout();
        let result = exchange(&mut s, &mut rbuf, &mut out, &batch, deadline, c).await;
        c.stats.rtt.borrow_mut().observe(started.elapsed());
        if let Err((answered, why)) = result {
            // Failed once the client is marked down (`run`), so that the requests waiting
            // on them decide without Redis rather than ask again.
            c.queue
                .borrow_mut()
                .tags
                .extend_from_slice(&batch[answered..]);
            return Err(why);
        }
    }
}

/// Writes `out` and hands each answer of `batch` to the client's callback; on failure, how
/// many were answered and why.
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
    s: &mut S,
    rbuf: &mut Reader,
    out: &mut Vec<u8>,
    batch: &[u64],
    deadline: Instant,
    c: &Client,
) -> Result<(), (usize, String)> {
    let bytes = std::mem::take(out);
    let write = s.write_all(bytes);
    let (res, bytes) = match monoio::time::timeout_at(deadline.into(), write).await {
        Ok(r) => r,
        Err(_) => return Err((0, "command timed out (write)".into())),
    };
    *out = bytes;
    res.map_err(|e| (0, format!("write: {e}")))?;
    for (i, &tag) in batch.iter().enumerate() {
        let reply = rbuf.next(s, deadline).await.map_err(|e| (i, e))?;
        match reply {
            Reply::Array(Some(items)) => match items.as_slice() {
                [Reply::Int(got), Reply::Int(wait), Reply::Int(reserved)] => {
                    if tag != 0 {
                        bump(&c.stats.leases);
                    }
                    (c.on_answer)(tag, Some((*got, *wait, *reserved == 1)));
                }
                _ => return Err((i, "unexpected script answer".into())),
            },
            Reply::Error(e) if e.starts_with(b"NOSCRIPT") => {
                return Err((i, "script no longer loaded".into()));
            }
            Reply::Error(e) => {
                bump(&c.stats.errors);
                log::debug!("redis: {}", String::from_utf8_lossy(&e));
                (c.on_answer)(tag, None);
            }
            _ => return Err((i, "unexpected answer".into())),
        }
    }
    Ok(())
}

/// Buffered replies off one connection.
struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
        }
    }

    /// The next reply, read by `deadline`.
    async fn next<S: AsyncReadRent>(
        &mut self,
        s: &mut S,
        deadline: Instant,
    ) -> Result<Reply, String> {
        loop {
            match resp::parse(&self.buf[self.start..self.end]) {
                Ok(Some((reply, used))) => {
                    self.start += used;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            if self.end == self.buf.len() {
                if self.start == 0 {
                    if self.buf.len() >= resp::MAX_BULK + READ_BUF {
                        return Err("reply too long".into());
                    }
                    self.buf.resize(self.buf.len() * 2, 0);
                } else {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
            }
            let buf = std::mem::take(&mut self.buf);
            let len = buf.len();
            let read = s.read(buf.slice_mut(self.end..len));
            let (res, b) = match monoio::time::timeout_at(deadline.into(), read).await {
                Ok(r) => r,
                Err(_) => {
                    // The buffer went with the dropped read: start a fresh one.
                    self.buf = vec![0; READ_BUF];
                    return Err("command timed out".into());
                }
            };
            self.buf = b.into_inner();
            if self.buf.len() < len {
                self.buf.resize(len, 0);
            }
            match res {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.end += n,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}
