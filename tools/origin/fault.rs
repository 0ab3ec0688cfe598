//! Fault modes of `ringway-origin`: broken answers a real backend can give (closes, resets,
//! trickles, malformed or ambiguous heads and bodies, interim storms, silence), chosen per
//! request by an `X-Fault: MODE` request field or a `/fault/MODE[/N]` path, or injected at
//! random (`--fault-rate`, seeded) for soak tests. Every fault is counted; the counts are
//! served at `/origin/stats` and printed when the origin exits.
//!
//! Invariant: a fault only ever affects the connection it is served on; the origin keeps
//! serving healthy answers on every other connection.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BufMut;
use monoio::io::AsyncWriteRentExt;

use super::{Conn, Res};

/// The fault modes, in the order of their counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    CloseBeforeHead,
    CloseMidHead,
    CloseMidBody,
    Reset,
    ResetMidBody,
    Trickle,
    Garbage,
    HugeHead,
    LengthTooLong,
    LengthTooShort,
    StrayAfterBody,
    ConflictingLength,
    BadChunking,
    InterimStorm,
    NeverAnswer,
}

pub const ALL: [Mode; 15] = [
    Mode::CloseBeforeHead,
    Mode::CloseMidHead,
    Mode::CloseMidBody,
    Mode::Reset,
    Mode::ResetMidBody,
    Mode::Trickle,
    Mode::Garbage,
    Mode::HugeHead,
    Mode::LengthTooLong,
    Mode::LengthTooShort,
    Mode::StrayAfterBody,
    Mode::ConflictingLength,
    Mode::BadChunking,
    Mode::InterimStorm,
    Mode::NeverAnswer,
];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::CloseBeforeHead => "close-before-head",
            Mode::CloseMidHead => "close-mid-head",
            Mode::CloseMidBody => "close-mid-body",
            Mode::Reset => "reset",
            Mode::ResetMidBody => "reset-mid-body",
            Mode::Trickle => "trickle",
            Mode::Garbage => "garbage",
            Mode::HugeHead => "huge-head",
            Mode::LengthTooLong => "length-too-long",
            Mode::LengthTooShort => "length-too-short",
            Mode::StrayAfterBody => "stray-after-body",
            Mode::ConflictingLength => "conflicting-length",
            Mode::BadChunking => "bad-chunking",
            Mode::InterimStorm => "1xx-storm",
            Mode::NeverAnswer => "never-answer",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One fault to serve: the mode and, for `trickle`, the pause before each byte.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub mode: Mode,
    pub gap: Duration,
}

/// Pause of `trickle` between bytes unless `trickle:MS` says otherwise.
const TRICKLE_GAP: Duration = Duration::from_millis(2);
/// Pause between the parts of a response broken in the middle, so that the proxy reads the
/// first part (and relays it) before the break.
const PART_PAUSE: Duration = Duration::from_millis(30);
/// Interim responses sent by `1xx-storm` before the final one.
const STORM: usize = 100;
/// Filler fields of `huge-head` (64 bytes each: about 256 KiB of head).
const HUGE_FIELDS: usize = 4096;

impl Fault {
    /// `MODE` or `trickle:MS`.
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let (name, arg) = match spec.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (spec, None),
        };
        let mode = Mode::parse(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|m| m.name()).collect();
            format!("unknown fault mode {name:?} (one of {})", names.join(", "))
        })?;
        let gap = match arg {
            None => TRICKLE_GAP,
            Some(ms) if mode == Mode::Trickle => ms
                .trim()
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| format!("trickle:{ms}: not a number of milliseconds"))?,
            Some(_) => return Err(format!("fault mode {name} takes no argument")),
        };
        Ok(Fault { mode, gap })
    }
}

static INJECTED: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];
/// Faults served to their end (all their bytes written, or the connection given up).
static DONE: AtomicU64 = AtomicU64::new(0);

/// `faults=N faults_done=N mode=count ...` (modes served at least once).
pub fn counts() -> String {
    let mut total = 0;
    let mut each = String::new();
    for (m, c) in ALL.iter().zip(&INJECTED) {
        let c = c.load(Ordering::Relaxed);
        total += c;
        if c > 0 {
            each.push_str(&format!(" {}={c}", m.name()));
        }
    }
    let done = DONE.load(Ordering::Relaxed);
    format!("faults={total} faults_done={done}{each}")
}

/// Random injection on one origin thread: `rate` of the requests get a fault drawn from
/// `modes`, from a seeded xorshift generator (same seed, same sequence).
pub struct Injector {
    rate: f64,
    modes: Vec<Mode>,
    state: Cell<u64>,
}

impl Injector {
    pub fn new(rate: f64, modes: Vec<Mode>, seed: u64) -> Injector {
        Injector {
            rate,
            modes,
            state: Cell::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        }
    }

    fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.set(x);
        x
    }

    /// The fault for the next request, if it draws one.
    pub fn draw(&self) -> Option<Fault> {
        if self.rate <= 0.0 || self.modes.is_empty() {
            return None;
        }
        let roll = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.rate {
            return None;
        }
        let mode = self.modes[(self.next() % self.modes.len() as u64) as usize];
        Some(Fault {
            mode,
            gap: TRICKLE_GAP,
        })
    }
}

/// The fault a request asks for: `X-Fault: MODE` or a `/fault/MODE[/N]` path.
pub fn requested(field: Option<&str>, path: &str) -> Option<Result<Fault, String>> {
    if let Some(spec) = field {
        return Some(Fault::parse(spec));
    }
    let rest = path.strip_prefix("/fault/")?;
    Some(Fault::parse(rest.split('/').next().unwrap_or("")))
}

impl Conn {
    /// Serves `fault` in place of a healthy `size`-byte answer. Ok(true): keep reading
    /// requests on this connection (the proxy must be the one to give it up).
    pub(super) async fn fault(&mut self, fault: Fault, size: u64, target: &str) -> Res<bool> {
        INJECTED[fault.mode as usize].fetch_add(1, Ordering::Relaxed);
        let served = self.serve_fault(fault, size, target).await;
        DONE.fetch_add(1, Ordering::Relaxed);
        served
    }

    async fn serve_fault(&mut self, fault: Fault, size: u64, target: &str) -> Res<bool> {
        let n = size.clamp(16, super::STREAM_CHUNK as u64) as usize;
        let name = fault.mode.name();
        match fault.mode {
            Mode::CloseBeforeHead => Ok(false),
            Mode::CloseMidHead => {
                self.put_length_response(name, n, 0, target);
                self.wbuf.truncate(self.wbuf.len() / 2);
                self.flush().await?;
                Ok(false)
            }
            Mode::CloseMidBody | Mode::ResetMidBody => {
                self.put_length_response(name, n, n / 2, target);
                self.flush().await?;
                self.after_pause(&super::pattern()[n / 2..n * 3 / 4])
                    .await?;
                monoio::time::sleep(PART_PAUSE).await;
                if fault.mode == Mode::ResetMidBody {
                    self.reset()?;
                }
                Ok(false)
            }
            Mode::Reset => {
                self.reset()?;
                Ok(false)
            }
            Mode::Trickle => {
                self.put_length_response(name, n, n, target);
                let all = std::mem::take(&mut self.wbuf);
                for &b in all.iter() {
                    monoio::time::sleep(fault.gap).await;
                    let (res, _) = self.s.write_all(vec![b]).await;
                    res.map_err(|e| e.to_string())?;
                }
                self.wbuf = all;
                self.wbuf.clear();
                Ok(true)
            }
            Mode::Garbage => {
                self.wbuf
                    .put_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP\r\n\r\n");
                self.wbuf.put_slice(&super::pattern()[..n]);
                self.flush().await?;
                Ok(true)
            }
            Mode::HugeHead => {
                let filler = format!("{:-<47}", "");
                let mut fields = Vec::with_capacity(HUGE_FIELDS);
                for i in 0..HUGE_FIELDS {
                    fields.push((format!("X-Filler-{i:05}"), filler.clone()));
                }
                let mut extra: Vec<(&str, &str)> = vec![("X-Fault", name)];
                extra.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                extra.push(("Content-Length", "0"));
                self.head(200, &extra, target);
                self.flush().await?;
                Ok(true)
            }
            Mode::LengthTooLong | Mode::LengthTooShort => {
                let declared = if fault.mode == Mode::LengthTooLong {
                    n + 1000
                } else {
                    n - 10
                };
                self.put_length_response(name, declared, n, target);
                self.flush().await?;
                Ok(true)
            }
            Mode::StrayAfterBody => {
                self.put_length_response(name, n, n, target);
                self.flush().await?;
                self.after_pause(b"stray bytes after the body\r\n").await?;
                Ok(true)
            }
            Mode::ConflictingLength => {
                let (a, b) = (n.to_string(), (n + 1).to_string());
                let extra = [
                    ("X-Fault", name),
                    ("Content-Length", &a),
                    ("Content-Length", &b),
                ];
                self.head(200, &extra, target);
                self.wbuf.put_slice(&super::pattern()[..n]);
                self.flush().await?;
                Ok(true)
            }
            Mode::BadChunking => {
                self.head(
                    200,
                    &[("X-Fault", name), ("Transfer-Encoding", "chunked")],
                    target,
                );
                self.wbuf.put_slice(format!("{:x}\r\n", n / 2).as_bytes());
                self.wbuf.put_slice(&super::pattern()[..n / 2]);
                self.wbuf.put_slice(b"\r\n");
                self.flush().await?;
                self.after_pause(b"zz\r\nnot a chunk\r\n0\r\n\r\n").await?;
                Ok(true)
            }
            Mode::InterimStorm => {
                for _ in 0..STORM {
                    self.wbuf.put_slice(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
                    );
                }
                self.put_length_response(name, n, n, target);
                self.flush().await?;
                Ok(true)
            }
            Mode::NeverAnswer => {
                // Hold the connection, reading and dropping, until the peer gives up.
                while self.fill().await? {
                    self.rbuf.clear();
                }
                Ok(false)
            }
        }
    }

    /// Puts a 200 head declaring `declared` body bytes, then the first `body` bytes of the
    /// body pattern, into the write buffer.
    fn put_length_response(&mut self, fault: &str, declared: usize, body: usize, target: &str) {
        let declared = declared.to_string();
        let fields = [("X-Fault", fault), ("Content-Length", declared.as_str())];
        self.head(200, &fields, target);
        self.wbuf.put_slice(&super::pattern()[..body]);
    }

    /// Sends `bytes` after `PART_PAUSE`: the proxy has read (and maybe relayed) what came before.
    async fn after_pause(&mut self, bytes: &[u8]) -> Res<()> {
        monoio::time::sleep(PART_PAUSE).await;
        self.wbuf.put_slice(bytes);
        self.flush().await
    }

    /// Makes this connection end with a reset when it is dropped.
    fn reset(&self) -> Res<()> {
        use std::os::fd::AsRawFd;
        ringway::sys::reset_on_close(self.s.as_raw_fd()).map_err(|e| e.to_string())
    }
}
