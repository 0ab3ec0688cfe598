//! Upgrade tunnels (WebSocket and the like). A GET without a body whose Connection lists
//! `upgrade` and whose first `Upgrade` protocol is in `server.upgrade_protocols` goes
//! upstream with `Connection: Upgrade` and that protocol; bytes the client sent after its
//! head stay in the client buffer meanwhile. A 101 naming the same protocol turns the
//! exchange into a tunnel: ringway's re-serialised 101 goes to the client, then bytes flow
//! both ways untouched (the ones already buffered first) until both directions end, one
//! fails, or nothing moved either way for `timeouts.tunnel_idle`. Any other answer is an
//! ordinary response and the client connection stays HTTP/1.1.
//!
//! Invariants: an upstream connection that tunnelled is never pooled, and the client
//! connection closes when the tunnel ends; an EOF in one direction shuts down the write
//! side of the other peer while the other direction goes on (half-close). Nothing here
//! parses the tunnelled bytes.

use std::cell::Cell;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use monoio::io::{AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};

use super::Http1;
use crate::http::Version;
use crate::io::splice::{self, Burst, Pipes};
use crate::io::{read_some, write_all_within, Stream, UpConn};
use crate::pipeline::forward::{self, OutFraming, ResponseCtx};
use crate::pipeline::{Next, ResponseSink, Tunnel};

/// Least room for each tunnel read. Small on purpose: a tunnel may sit idle for long, and
/// bulk transfers go through splice bursts (see `splice::burst`) once a read fills it.
const TUNNEL_READ: usize = 16 * 1024;

/// What both directions of one tunnel share.
struct Relay<'a> {
    pipes: &'a Pipes,
    write: Duration,
    /// Both streams are plain sockets and splicing is on.
    splice: bool,
    /// When bytes last moved, either way.
    moved: &'a Cell<Instant>,
}

impl<S: Stream> Http1<S> {
    /// Runs the tunnel after the upstream's 101 until it ends; the client connection then
    /// closes.
    pub(super) async fn run_tunnel<U: Stream>(
        &mut self,
        conn: &mut UpConn<U>,
        t: Tunnel<'_>,
    ) -> Next {
        let cfg = t.cfg;
        let out = &mut self.out;
        out.buf.clear();
        let ctx = ResponseCtx {
            cfg,
            edits: t.edits,
            framing: OutFraming::None,
            close: false,
            client_version: Version::Http11,
            hsts: t.hsts,
            upgrade: Some(t.resp.header(b"upgrade").unwrap_or_default()),
        };
        forward::response_head(&mut out.buf, t.resp, &ctx);
        // The upstream's first tunnelled bytes leave with the head.
        out.buf.put_slice(t.ubuf.get(t.at..).unwrap_or_default());
        t.ubuf.clear();
        if out.flush(cfg.timeouts.write).await.is_err() {
            return Next::Close;
        }
        log::debug!("client {}: tunnel open", self.peer);
        let moved = Cell::new(Instant::now());
        let relay = Relay {
            pipes: t.pipes,
            write: cfg.timeouts.write,
            splice: S::SPLICE && U::SPLICE && cfg.splice_threshold > 0,
            moved: &moved,
        };
        let pending = std::mem::take(&mut self.cin.buf);
        let mut up = pin!(pump(
            &mut self.cin.r,
            &mut conn.w,
            pending,
            &relay,
            "client"
        ));
        let down_buf = std::mem::take(t.ubuf);
        let mut down = pin!(pump(
            &mut conn.r,
            &mut self.out.w,
            down_buf,
            &relay,
            "upstream"
        ));
        let idle = cfg.timeouts.tunnel_idle;
        let up_ended_first = monoio::select! {
            r = &mut up => r.map(|()| true),
            r = &mut down => r.map(|()| false),
            _ = idle_for(&moved, idle) => Err("idle"),
        };
        let rest = match up_ended_first {
            Ok(true) => monoio::select! {
                r = &mut down => r,
                _ = idle_for(&moved, idle) => Err("idle"),
            },
            Ok(false) => monoio::select! {
                r = &mut up => r,
                _ = idle_for(&moved, idle) => Err("idle"),
            },
            Err(why) => Err(why),
        };
        match rest {
            Ok(()) => log::debug!("client {}: tunnel closed by both sides", self.peer),
            Err(why) => log::debug!("client {}: tunnel ended ({why})", self.peer),
        }
        Next::Close
    }
}

/// Resolves once nothing moved through the tunnel for `idle`.
async fn idle_for(moved: &Cell<Instant>, idle: Duration) {
    loop {
        let at = moved.get() + idle;
        if Instant::now() >= at {
            return;
        }
        monoio::time::sleep_until(at.into()).await;
    }
}

/// One direction of a tunnel: `buf`'s bytes first, then whatever `src` sends until its
/// EOF, after which `dst`'s write side is shut down. Err names what failed. `from` names
/// the source in logs.
async fn pump<A: Stream, B: Stream>(
    src: &mut OwnedReadHalf<A>,
    dst: &mut OwnedWriteHalf<B>,
    mut buf: BytesMut,
    t: &Relay<'_>,
    from: &'static str,
) -> Result<(), &'static str> {
    let mut spliced = false;
    loop {
        if !buf.is_empty() {
            buf = write_all_within(dst, buf, t.write)
                .await
                .map_err(|_| "write failed")?;
            buf.clear();
        }
        buf.reserve(TUNNEL_READ);
        let room = buf.capacity() - buf.len();
        // No deadline of its own: the tunnel's idle timer ends a silent tunnel.
        let (res, b) = read_some(src, buf, TUNNEL_READ).await;
        buf = b;
        let n = match res {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return Err("read failed"),
        };
        t.moved.set(Instant::now());
        if n < room || !t.splice {
            continue;
        }
        // A full read: more is probably waiting. Send this, then splice while it lasts.
        buf = write_all_within(dst, buf, t.write)
            .await
            .map_err(|_| "write failed")?;
        buf.clear();
        if !spliced {
            log::debug!("tunnel: splicing {from} bytes");
            spliced = true;
        }
        match splice::burst(t.pipes, src, dst, t.write, t.moved).await {
            Ok(Burst::Drained) => {}
            Ok(Burst::SourceEof) => break,
            Err(_) => return Err("splice failed"),
        }
    }
    log::debug!("tunnel: {from} finished sending");
    // Half-close: the other peer sees this direction end; the other direction goes on.
    let _ = dst.shutdown().await;
    Ok(())
}
