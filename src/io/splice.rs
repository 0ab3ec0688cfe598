//! Zero-copy body relay: socket -> kernel pipe -> socket, for bodies whose length is known
//! ahead (a Content-Length body, or one chunk's payload between the framing lines ringway
//! writes itself). Bytes never enter user space.
//!
//! Each worker keeps a small pool of pipes. A pipe goes back to the pool only when it is
//! empty (every byte spliced in was spliced out); after any failure it may hold bytes of
//! somebody's body, so it is closed instead. Splicing stops exactly at the body's end, so a
//! keep-alive connection is never read past its message (`monoio::io::zero_copy` would read
//! to EOF).

use std::cell::RefCell;
use std::io;
use std::time::{Duration, Instant};

use monoio::io::{OwnedReadHalf, OwnedWriteHalf};
use monoio::net::unix::new_pipe;
use monoio::net::Pipe;

use super::deadline::BodyDeadline;
use super::Stream;

/// Most bytes asked of one splice: a default pipe holds 64 KiB.
const STEP: u32 = 64 * 1024;
/// Idle pipes kept per worker (two descriptors each).
const KEEP: usize = 64;

/// A pipe's two ends.
pub struct PipePair {
    r: Pipe,
    w: Pipe,
}

/// A worker's idle, empty pipes.
#[derive(Default)]
pub struct Pipes {
    idle: RefCell<Vec<PipePair>>,
}

impl Pipes {
    /// An empty pipe: a pooled one, or a new one. None (logged) when the process is out of
    /// descriptors: the caller copies instead.
    pub fn take(&self) -> Option<PipePair> {
        if let Some(p) = self.idle.borrow_mut().pop() {
            return Some(p);
        }
        match new_pipe() {
            Ok((r, w)) => Some(PipePair { r, w }),
            Err(e) => {
                log::warn!("no pipe for a spliced body ({e}); copying instead");
                None
            }
        }
    }

    /// Returns an empty pipe for reuse.
    pub fn give(&self, pipe: PipePair) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < KEEP {
            idle.push(pipe);
        }
    }
}

/// How long the source may take to deliver.
#[derive(Clone, Copy, Debug)]
pub enum ReadLimit {
    /// The request body deadline, with this many body bytes received before the relay.
    By(BodyDeadline, u64),
    /// Each read within this (the upstream response timeout).
    Each(Duration),
}

impl ReadLimit {
    /// The deadline of the next read, `moved` bytes into the relay.
    fn deadline(self, moved: u64) -> Instant {
        match self {
            ReadLimit::By(body, before) => body.at(before + moved),
            ReadLimit::Each(d) => Instant::now() + d,
        }
    }
}

/// Why a splice relay stopped early. The pipe was closed, not pooled.
#[derive(Debug)]
pub enum SpliceFail {
    /// The source closed before the body ended.
    SourceEof,
    /// The source did not deliver within its limit.
    SourceTimeout,
    SourceError(io::Error),
    /// The destination did not take the bytes (error or write timeout).
    Destination,
}

/// Moves exactly `len` bytes from `src` to `dst` through `pipe` (from `pipes.take()`), and
/// gives the pipe back to `pipes` if that worked.
pub async fn relay<A: Stream, B: Stream>(
    pipes: &Pipes,
    mut pipe: PipePair,
    src: &mut OwnedReadHalf<A>,
    dst: &mut OwnedWriteHalf<B>,
    len: u64,
    read: ReadLimit,
    write: Duration,
) -> Result<(), SpliceFail> {
    let mut left = len;
    while left > 0 {
        let want = left.min(u64::from(STEP)) as u32;
        let fut = A::splice_in(src, &mut pipe.w, want);
        let mut inflight =
            match monoio::time::timeout_at(read.deadline(len - left).into(), fut).await {
                Err(_) => return Err(SpliceFail::SourceTimeout),
                Ok(Err(e)) => return Err(SpliceFail::SourceError(e)),
                Ok(Ok(0)) => return Err(SpliceFail::SourceEof),
                Ok(Ok(n)) => n,
            };
        left -= u64::from(inflight);
        while inflight > 0 {
            let fut = B::splice_out(dst, &mut pipe.r, inflight);
            match monoio::time::timeout(write, fut).await {
                Ok(Ok(n)) if n > 0 => inflight -= n.min(inflight),
                _ => return Err(SpliceFail::Destination),
            }
        }
    }
    pipes.give(pipe);
    Ok(())
}

/// How a `burst` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Burst {
    /// A splice moved less than a full step: the source had no more bytes waiting.
    Drained,
    /// The source reached its end.
    SourceEof,
}

/// Splices from `src` to `dst` (no length known: a tunnel) for as long as each splice
/// fills a whole step, and stops after the first short one. A burst starts only after a
/// read filled its whole buffer, so bytes are likely waiting; once the source has caught
/// up, the caller goes back to a readiness-based read: on io_uring a splice always runs in
/// a kernel worker thread, and one from an idle socket would hold that thread until bytes
/// came. `moved` is set to the time of each move; the source has no deadline of its own
/// (the caller's idle timer ends an idle relay), each write must finish within `write`.
pub async fn burst<A: Stream, B: Stream>(
    pipes: &Pipes,
    src: &mut OwnedReadHalf<A>,
    dst: &mut OwnedWriteHalf<B>,
    write: Duration,
    moved: &std::cell::Cell<Instant>,
) -> Result<Burst, SpliceFail> {
    let Some(mut pipe) = pipes.take() else {
        return Ok(Burst::Drained);
    };
    loop {
        let n = match A::splice_in(src, &mut pipe.w, STEP).await {
            Err(e) => return Err(SpliceFail::SourceError(e)),
            Ok(0) => {
                pipes.give(pipe);
                return Ok(Burst::SourceEof);
            }
            Ok(n) => n,
        };
        moved.set(Instant::now());
        let mut inflight = n;
        while inflight > 0 {
            let fut = B::splice_out(dst, &mut pipe.r, inflight);
            match monoio::time::timeout(write, fut).await {
                Ok(Ok(m)) if m > 0 => inflight -= m.min(inflight),
                _ => return Err(SpliceFail::Destination),
            }
        }
        if n < STEP {
            pipes.give(pipe);
            return Ok(Burst::Drained);
        }
    }
}

/// Whether a body of which `remaining` bytes are still to come is worth splicing between
/// these two stream types under `threshold` (0 = never).
pub fn worth_it<A: Stream, B: Stream>(remaining: u64, threshold: u64) -> bool {
    worth(A::SPLICE && B::SPLICE, remaining, threshold)
}

/// `worth_it` for two ends that `both` can splice.
pub fn worth(both: bool, remaining: u64, threshold: u64) -> bool {
    both && threshold > 0 && remaining >= threshold
}
