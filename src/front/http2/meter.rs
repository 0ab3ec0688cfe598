//! Flood limits the codec does not keep: the client's bytes pass through `Meter` on their
//! way to `h2`, which reads each frame's 9-byte header (and nothing else) and counts, per
//! connection and per second, the frames that cost ringway work without carrying a
//! request: SETTINGS, PING (not acks), PRIORITY, RST_STREAM, empty DATA without
//! END_STREAM, and WINDOW_UPDATE (`[http2.flood]`). One past a limit trips the meter: it
//! stops feeding the codec and wakes the connection, which ends it with GOAWAY
//! ENHANCE_YOUR_CALM.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::FloodConfig;
use crate::notify::LocalNotify;

/// The kinds of frame counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Settings,
    Ping,
    Priority,
    RstStream,
    EmptyData,
    WindowUpdate,
}

impl Kind {
    const ALL: usize = 6;

    /// The counted kind of a frame with this header, if it is one.
    fn of(frame_type: u8, flags: u8, len: u32) -> Option<Kind> {
        const END_STREAM: u8 = 0x1;
        const ACK: u8 = 0x1;
        match frame_type {
            0x0 if len == 0 && flags & END_STREAM == 0 => Some(Kind::EmptyData),
            0x2 => Some(Kind::Priority),
            0x3 => Some(Kind::RstStream),
            0x4 => Some(Kind::Settings),
            0x6 if flags & ACK == 0 => Some(Kind::Ping),
            0x8 => Some(Kind::WindowUpdate),
            _ => None,
        }
    }

    fn limit(self, f: &FloodConfig) -> u32 {
        match self {
            Kind::Settings => f.settings,
            Kind::Ping => f.ping,
            Kind::Priority => f.priority,
            Kind::RstStream => f.rst_stream,
            Kind::EmptyData => f.empty_data,
            Kind::WindowUpdate => f.window_update,
        }
    }
}

/// A connection's flood counters, shared with its connection task.
pub struct Flood {
    limits: FloodConfig,
    counts: Cell<[u32; Kind::ALL]>,
    since: Cell<Option<Instant>>,
    /// The kind of frame that tripped the meter.
    pub tripped: Cell<Option<Kind>>,
    pub trip: LocalNotify,
}

impl Flood {
    pub fn new(limits: FloodConfig) -> Flood {
        Flood {
            limits,
            counts: Cell::new([0; Kind::ALL]),
            since: Cell::new(None),
            tripped: Cell::new(None),
            trip: LocalNotify::default(),
        }
    }

    /// Counts one frame of `kind` at `now`; true when it was one too many.
    fn count(&self, kind: Kind, now: Instant) -> bool {
        let mut counts = self.counts.get();
        match self.since.get() {
            Some(s) if now.duration_since(s) < Duration::from_secs(1) => {}
            _ => {
                counts = [0; Kind::ALL];
                self.since.set(Some(now));
            }
        }
        let i = kind as usize;
        counts[i] = counts[i].saturating_add(1);
        self.counts.set(counts);
        counts[i] > kind.limit(&self.limits)
    }
}

/// Where the frame parser stands in the client's byte stream.
struct Parse {
    /// Preface bytes still to pass before the first frame.
    preface: usize,
    /// The current frame header, `have` bytes of it so far.
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: usize,
}

/// The client's stream, counted on its way to the codec.
pub struct Meter<T> {
    io: T,
    flood: Rc<Flood>,
    parse: Parse,
}

impl<T> Meter<T> {
    /// Meters `io`, whose first bytes are the connection preface.
    pub fn new(io: T, flood: Rc<Flood>) -> Meter<T> {
        Meter {
            io,
            flood,
            parse: Parse {
                preface: super::PREFACE.len(),
                head: [0; 9],
                have: 0,
                skip: 0,
            },
        }
    }

    /// Walks the frame headers in `bytes`; false once a limit tripped.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        let p = &mut self.parse;
        let mut now = None;
        while !bytes.is_empty() {
            if p.preface > 0 {
                let n = p.preface.min(bytes.len());
                p.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if p.skip > 0 {
                let n = p.skip.min(bytes.len());
                p.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - p.have).min(bytes.len());
            p.head[p.have..p.have + n].copy_from_slice(&bytes[..n]);
            p.have += n;
            bytes = &bytes[n..];
            if p.have < 9 {
                break;
            }
            p.have = 0;
            let len = u32::from_be_bytes([0, p.head[0], p.head[1], p.head[2]]);
            p.skip = len as usize;
            if let Some(kind) = Kind::of(p.head[3], p.head[4], len) {
                let at = *now.get_or_insert_with(Instant::now);
                if self.flood.count(kind, at) {
                    self.flood.tripped.set(Some(kind));
                    self.flood.trip.notify_all();
                    return false;
                }
            }
        }
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Meter<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.flood.tripped.get().is_some() {
            // The connection is being ended: the codec gets nothing more to work on.
            return Poll::Pending;
        }
        let me = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut me.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            me.scan(&buf.filled()[before..]);
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Meter<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            t,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.resize(9 + len, 0);
        f
    }

    #[test]
    fn frames_are_counted_by_kind_across_reads_and_the_limit_trips() {
        let limits = FloodConfig {
            ping: 3,
            ..FloodConfig::default()
        };
        let mut m = Meter::new((), Rc::new(Flood::new(limits)));
        let mut stream = super::super::PREFACE.to_vec();
        stream.extend(frame(0x4, 0, 6)); // SETTINGS
        stream.extend(frame(0x0, 0, 100)); // DATA with a payload: not counted
        for _ in 0..3 {
            stream.extend(frame(0x6, 0, 8)); // PING
            stream.extend(frame(0x6, 0x1, 8)); // PING ack: not counted
        }
        // Fed one byte at a time: headers straddle reads.
        for b in &stream {
            assert!(m.scan(std::slice::from_ref(b)), "no limit reached yet");
        }
        assert_eq!(m.flood.counts.get()[Kind::Ping as usize], 3);
        assert_eq!(m.flood.counts.get()[Kind::Settings as usize], 1);
        assert!(!m.scan(&frame(0x6, 0, 8)), "the fourth PING trips");
        assert_eq!(m.flood.tripped.get(), Some(Kind::Ping));
    }
}
