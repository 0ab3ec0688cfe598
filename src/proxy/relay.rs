//! The upstream half of the pipeline: pick a server, send the request (head plus streamed
//! body), read the response head, relay the response body with the framing the client needs,
//! and decide whether the upstream connection may be pooled.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Buf, BufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::forward::{self, OutFraming, RequestCtx, ResponseCtx};
use super::io::{read_some_until, write_all_within, Connector, IoFail};
use super::{ClientConn, Next, CLIENT_READ, MAX_INTERIM, UPSTREAM_READ};
use crate::compiled::{Compiled, Route, Upstream};
use crate::http::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder, CHUNK_END, LAST_CHUNK};
use crate::http::{canned, parse_response, BodyFraming, Limits, ResponseFraming, Version};

/// Longest chunk-size line (with extensions) accepted in either direction.
const MAX_CHUNK_LINE: usize = 4096;
/// Flush re-chunked output once this much is queued.
const FLUSH_AT: usize = 64 * 1024;

/// Why sending the request did not complete.
enum SendFail {
    /// Writing to the upstream failed; `replayable` when nothing of a body was consumed.
    Upstream { replayable: bool },
    /// The client went away or broke the body framing: answer `status` (0 = none) and close.
    Client(u16),
}

/// Why reading the response head did not complete.
enum HeadFail {
    /// The upstream closed or reset before sending a single byte (a stale keep-alive).
    EmptyClose,
    Timeout,
    Invalid,
}

fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

fn upstream_limits(cfg: &Compiled) -> Limits {
    Limits {
        max_header_bytes: cfg.limits.max_header_bytes.max(64 * 1024),
        max_headers: cfg.limits.max_headers.max(128),
        max_uri_bytes: cfg.limits.max_uri_bytes,
    }
}

impl<S, C> ClientConn<S, C>
where
    S: AsyncReadRent + AsyncWriteRent,
    C: Connector,
{
    pub(super) async fn proxy(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        upstream: usize,
        up: &Upstream,
    ) -> Next {
        let has_body = self.head.framing != BodyFraming::None;
        if self.head.expect_continue && has_body && self.rbuf.is_empty() {
            let buf = std::mem::take(&mut self.wbuf);
            let mut buf = buf;
            buf.clear();
            buf.put_slice(canned::CONTINUE_100);
            match write_all_within(&mut self.client, buf, cfg.timeouts.write).await {
                Ok(b) => self.wbuf = b,
                Err(_) => return Next::Close,
            }
        }
        self.path.clear();
        route.rewrite.apply(&self.head.path, &mut self.path);
        let out_framing = match self.head.framing {
            BodyFraming::None => OutFraming::None,
            BodyFraming::Length(n) => OutFraming::Length(n),
            BodyFraming::Chunked => OutFraming::Chunked,
        };
        let request_id = self.shared.request_id();
        let n = up.servers.len();
        let first = self.shared.next_server(upstream, n);
        let replay_ok = !has_body && is_idempotent(self.head.method());
        let mut tries = 0;
        let mut fresh_retry = false;
        let (conn, addr) = loop {
            let addr = up.servers[(first + tries) % n];
            let pooled = if fresh_retry {
                None
            } else {
                self.shared.pool.take(addr, up.keepalive_timeout)
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match self.connect(cfg, addr).await {
                    Ok(c) => c,
                    Err(status) => {
                        tries += 1;
                        if tries < n {
                            continue;
                        }
                        return self.reply(cfg, status, has_body).await;
                    }
                },
            };
            self.obuf.clear();
            let ctx = RequestCtx {
                cfg,
                edits: &route.request_edits,
                path: &self.path,
                peer: self.peer.ip(),
                framing: out_framing,
                upstream_addr: addr,
                request_id,
            };
            forward::request_head(&mut self.obuf, &self.head, &ctx);
            match self.send_request(cfg, &mut conn).await {
                Ok(()) => {}
                Err(SendFail::Upstream { replayable }) => {
                    if reused && replayable && !fresh_retry {
                        fresh_retry = true;
                        continue;
                    }
                    log::warn!("upstream {addr}: request write failed");
                    return self.reply(cfg, 502, true).await;
                }
                Err(SendFail::Client(0)) => return Next::Close,
                Err(SendFail::Client(status)) => return self.reply(cfg, status, true).await,
            }
            match self.read_response_head(cfg, &mut conn).await {
                Ok(()) => break (conn, addr),
                Err(HeadFail::EmptyClose) if reused && replay_ok && !fresh_retry => {
                    fresh_retry = true;
                }
                Err(HeadFail::EmptyClose) | Err(HeadFail::Invalid) => {
                    log::warn!("upstream {addr}: invalid or missing response head");
                    return self.reply(cfg, 502, false).await;
                }
                Err(HeadFail::Timeout) => {
                    log::warn!("upstream {addr}: response head timed out");
                    return self.reply(cfg, 504, false).await;
                }
            }
        };
        self.relay_response(cfg, route, up, conn, addr).await
    }

    /// Connects within the connect timeout; Err is the status to answer (502/504).
    async fn connect(&self, cfg: &Compiled, addr: SocketAddr) -> Result<C::Conn, u16> {
        let fut = self.shared.connector.connect(addr);
        match monoio::time::timeout(cfg.timeouts.upstream_connect, fut).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                log::warn!("upstream {addr}: connect failed: {e}");
                Err(502)
            }
            Err(_) => {
                log::warn!("upstream {addr}: connect timed out");
                Err(504)
            }
        }
    }

    /// Writes `self.obuf` (the head) plus the request body, streamed from the client.
    async fn send_request(&mut self, cfg: &Compiled, conn: &mut C::Conn) -> Result<(), SendFail> {
        match self.head.framing {
            BodyFraming::None => self.flush_upstream(cfg, conn, true).await,
            BodyFraming::Length(n) => self.send_length_body(cfg, conn, n).await,
            BodyFraming::Chunked => self.send_chunked_body(cfg, conn).await,
        }
    }

    /// Flushes `self.obuf` to the upstream.
    async fn flush_upstream(
        &mut self,
        cfg: &Compiled,
        conn: &mut C::Conn,
        replayable: bool,
    ) -> Result<(), SendFail> {
        let buf = std::mem::take(&mut self.obuf);
        match write_all_within(conn, buf, cfg.timeouts.write).await {
            Ok(mut b) => {
                b.clear();
                self.obuf = b;
                Ok(())
            }
            Err(_) => Err(SendFail::Upstream { replayable }),
        }
    }

    /// Reads more request body from the client before the body deadline.
    async fn body_read(&mut self, deadline: Instant) -> Result<(), SendFail> {
        let buf = std::mem::take(&mut self.rbuf);
        match read_some_until(&mut self.client, buf, CLIENT_READ, deadline).await {
            Ok((0, buf)) => {
                self.rbuf = buf;
                Err(SendFail::Client(0))
            }
            Ok((_, buf)) => {
                self.rbuf = buf;
                Ok(())
            }
            Err(IoFail::Timeout) => Err(SendFail::Client(408)),
            Err(_) => Err(SendFail::Client(0)),
        }
    }

    async fn send_length_body(
        &mut self,
        cfg: &Compiled,
        conn: &mut C::Conn,
        len: u64,
    ) -> Result<(), SendFail> {
        let deadline = Instant::now() + cfg.timeouts.body;
        let mut remaining = len;
        let take = remaining.min(self.rbuf.len() as u64) as usize;
        self.obuf.put_slice(&self.rbuf[..take]);
        self.rbuf.advance(take);
        remaining -= take as u64;
        self.flush_upstream(cfg, conn, take == 0).await?;
        while remaining > 0 {
            self.body_read(deadline).await?;
            let take = remaining.min(self.rbuf.len() as u64) as usize;
            let piece = if take == self.rbuf.len() {
                std::mem::take(&mut self.rbuf)
            } else {
                self.rbuf.split_to(take)
            };
            remaining -= take as u64;
            match write_all_within(conn, piece, cfg.timeouts.write).await {
                Ok(mut b) => {
                    if self.rbuf.is_empty() && b.capacity() >= CLIENT_READ {
                        b.clear();
                        self.rbuf = b;
                    }
                }
                Err(_) => return Err(SendFail::Upstream { replayable: false }),
            }
        }
        Ok(())
    }

    async fn send_chunked_body(
        &mut self,
        cfg: &Compiled,
        conn: &mut C::Conn,
    ) -> Result<(), SendFail> {
        let deadline = Instant::now() + cfg.timeouts.body;
        let mut dec = ChunkedDecoder::new(MAX_CHUNK_LINE, cfg.limits.max_header_bytes);
        let mut total: u64 = 0;
        let mut first_flush = true;
        loop {
            loop {
                match dec.step(&self.rbuf) {
                    Err(_) => return Err(SendFail::Client(400)),
                    Ok(ChunkEvent::Data { start, end }) => {
                        total += (end - start) as u64;
                        if cfg.max_body_bytes > 0 && total > cfg.max_body_bytes {
                            return Err(SendFail::Client(413));
                        }
                        put_chunk_header(end - start, &mut self.obuf);
                        self.obuf.put_slice(&self.rbuf[start..end]);
                        self.obuf.put_slice(CHUNK_END);
                        self.rbuf.advance(end);
                    }
                    Ok(ChunkEvent::NeedMore { consumed }) => {
                        self.rbuf.advance(consumed);
                        break;
                    }
                    Ok(ChunkEvent::Done { consumed }) => {
                        self.rbuf.advance(consumed);
                        self.obuf.put_slice(LAST_CHUNK);
                        return self.flush_upstream(cfg, conn, first_flush).await;
                    }
                }
                if self.obuf.len() >= FLUSH_AT {
                    self.flush_upstream(cfg, conn, first_flush).await?;
                    first_flush = false;
                }
            }
            if !self.obuf.is_empty() {
                // The head goes out before the body arrives, so the upstream sees the request
                // early; body bytes only count once they were part of a flush.
                let replayable = first_flush && total == 0;
                self.flush_upstream(cfg, conn, replayable).await?;
                first_flush = false;
            }
            self.body_read(deadline).await?;
        }
    }

    /// Reads the final response head into `self.resp`, skipping 1xx interim responses.
    async fn read_response_head(
        &mut self,
        cfg: &Compiled,
        conn: &mut C::Conn,
    ) -> Result<(), HeadFail> {
        let deadline = Instant::now() + cfg.timeouts.upstream_response;
        let limits = upstream_limits(cfg);
        let is_head = self.head.is_head();
        let mut interim = 0;
        let mut got_any = false;
        self.ubuf.clear();
        loop {
            match parse_response(&mut self.ubuf, &limits, is_head, &mut self.resp) {
                Ok(true) if self.resp.status == 101 => return Err(HeadFail::Invalid),
                Ok(true) if self.resp.is_informational() => {
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(HeadFail::Invalid);
                    }
                    continue;
                }
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(_) => return Err(HeadFail::Invalid),
            }
            let buf = std::mem::take(&mut self.ubuf);
            match read_some_until(conn, buf, 8192, deadline).await {
                Ok((0, buf)) => {
                    self.ubuf = buf;
                    return Err(if got_any {
                        HeadFail::Invalid
                    } else {
                        HeadFail::EmptyClose
                    });
                }
                Ok((_, buf)) => {
                    got_any = true;
                    self.ubuf = buf;
                }
                Err(IoFail::Timeout) => return Err(HeadFail::Timeout),
                Err(_) if !got_any => return Err(HeadFail::EmptyClose),
                Err(_) => return Err(HeadFail::Invalid),
            }
        }
    }

    /// Sends the response head and body to the client; pools the upstream connection when the
    /// exchange ended cleanly.
    async fn relay_response(
        &mut self,
        cfg: &Compiled,
        route: &Route,
        up: &Upstream,
        mut conn: C::Conn,
        addr: SocketAddr,
    ) -> Next {
        let client_v = self.head.version;
        let mut close = !self.head.keep_alive || self.shared.is_draining();
        let status = self.resp.status;
        let framing = self.resp.framing;
        let out = match framing {
            ResponseFraming::None if self.head.is_head() || status == 304 => {
                OutFraming::HeadersOnly
            }
            ResponseFraming::None if status == 204 => OutFraming::None,
            ResponseFraming::None => OutFraming::Length(0),
            ResponseFraming::Length(n) => OutFraming::Length(n),
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited => {
                if client_v == Version::Http11 {
                    OutFraming::Chunked
                } else {
                    close = true;
                    OutFraming::Close
                }
            }
        };
        // Bytes beyond a declared body that arrived with the head: the upstream is confused.
        let declared = match framing {
            ResponseFraming::None => Some(0),
            ResponseFraming::Length(n) => Some(n),
            _ => None,
        };
        if declared.is_some_and(|n| self.ubuf.len() as u64 > n) {
            log::warn!("upstream {addr}: more bytes than the response declared");
            return self.reply(cfg, 502, false).await;
        }
        self.wbuf.clear();
        let ctx = ResponseCtx {
            cfg,
            edits: &route.response_edits,
            framing: out,
            close,
            client_version: client_v,
        };
        forward::response_head(&mut self.wbuf, &self.resp, &ctx);
        let clean = match framing {
            ResponseFraming::None => self.flush_client(cfg).await.is_ok(),
            ResponseFraming::Length(n) => self.relay_length(cfg, &mut conn, n).await,
            ResponseFraming::Chunked => self.relay_chunked(cfg, &mut conn, out).await,
            // Never pooled: the upstream ends this body by closing.
            ResponseFraming::CloseDelimited => {
                let clean = self.relay_until_close(cfg, &mut conn, out).await;
                return if clean && !close {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
            }
        };
        if !clean {
            // Response bytes may have reached the client: abort, never answer twice.
            return Next::Close;
        }
        if self.resp.keep_alive && self.ubuf.is_empty() && !self.shared.is_draining() {
            self.shared.pool.put(addr, conn, up.keepalive);
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Writes `self.wbuf` to the client.
    async fn flush_client(&mut self, cfg: &Compiled) -> Result<(), IoFail> {
        let buf = std::mem::take(&mut self.wbuf);
        let mut b = write_all_within(&mut self.client, buf, cfg.timeouts.write).await?;
        b.clear();
        self.wbuf = b;
        Ok(())
    }

    /// Reads more of the response body; Err on EOF, timeout or error (the caller aborts).
    async fn upstream_read(&mut self, cfg: &Compiled, conn: &mut C::Conn) -> Result<usize, ()> {
        let deadline = Instant::now() + cfg.timeouts.upstream_response;
        let buf = std::mem::take(&mut self.ubuf);
        match read_some_until(conn, buf, UPSTREAM_READ, deadline).await {
            Ok((n, buf)) => {
                self.ubuf = buf;
                Ok(n)
            }
            Err(_) => Err(()),
        }
    }

    /// Content-Length body: the head and what is buffered go out in one write.
    async fn relay_length(&mut self, cfg: &Compiled, conn: &mut C::Conn, len: u64) -> bool {
        let mut remaining = len - self.ubuf.len() as u64;
        self.wbuf.put_slice(&self.ubuf);
        self.ubuf.clear();
        if self.flush_client(cfg).await.is_err() {
            return false;
        }
        while remaining > 0 {
            match self.upstream_read(cfg, conn).await {
                Ok(0) | Err(()) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return false;
                }
                Ok(_) => {}
            }
            if self.ubuf.len() as u64 > remaining {
                // Stray bytes after the body: send what was declared, never reuse.
                self.ubuf.truncate(remaining as usize);
                self.resp.keep_alive = false;
            }
            remaining -= self.ubuf.len() as u64;
            let buf = std::mem::take(&mut self.ubuf);
            match write_all_within(&mut self.client, buf, cfg.timeouts.write).await {
                Ok(mut b) => {
                    b.clear();
                    self.ubuf = b;
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Chunked upstream body, decoded strictly and re-framed for the client.
    async fn relay_chunked(&mut self, cfg: &Compiled, conn: &mut C::Conn, out: OutFraming) -> bool {
        let mut dec = ChunkedDecoder::new(MAX_CHUNK_LINE, 64 * 1024);
        loop {
            loop {
                match dec.step(&self.ubuf) {
                    Err(_) => {
                        log::warn!("upstream sent bad chunked framing; aborting client");
                        return false;
                    }
                    Ok(ChunkEvent::Data { start, end }) => {
                        if out == OutFraming::Chunked {
                            put_chunk_header(end - start, &mut self.wbuf);
                            self.wbuf.put_slice(&self.ubuf[start..end]);
                            self.wbuf.put_slice(CHUNK_END);
                        } else {
                            self.wbuf.put_slice(&self.ubuf[start..end]);
                        }
                        self.ubuf.advance(end);
                    }
                    Ok(ChunkEvent::NeedMore { consumed }) => {
                        self.ubuf.advance(consumed);
                        break;
                    }
                    Ok(ChunkEvent::Done { consumed }) => {
                        self.ubuf.advance(consumed);
                        if out == OutFraming::Chunked {
                            self.wbuf.put_slice(LAST_CHUNK);
                        }
                        return self.flush_client(cfg).await.is_ok();
                    }
                }
            }
            if !self.wbuf.is_empty() && self.flush_client(cfg).await.is_err() {
                return false;
            }
            match self.upstream_read(cfg, conn).await {
                Ok(0) | Err(()) => {
                    log::warn!("upstream closed mid-body; aborting client");
                    return false;
                }
                Ok(_) => {}
            }
        }
    }

    /// Close-delimited upstream body: chunked to 1.1 clients, raw (then close) to 1.0 ones.
    async fn relay_until_close(
        &mut self,
        cfg: &Compiled,
        conn: &mut C::Conn,
        out: OutFraming,
    ) -> bool {
        loop {
            if !self.ubuf.is_empty() {
                if out == OutFraming::Chunked {
                    put_chunk_header(self.ubuf.len(), &mut self.wbuf);
                    self.wbuf.put_slice(&self.ubuf);
                    self.wbuf.put_slice(CHUNK_END);
                } else {
                    self.wbuf.put_slice(&self.ubuf);
                }
                self.ubuf.clear();
            }
            if !self.wbuf.is_empty() && self.flush_client(cfg).await.is_err() {
                return false;
            }
            match self.upstream_read(cfg, conn).await {
                Ok(0) => {
                    if out == OutFraming::Chunked {
                        self.wbuf.put_slice(LAST_CHUNK);
                        return self.flush_client(cfg).await.is_ok();
                    }
                    return true;
                }
                Ok(_) => {}
                Err(()) => return false,
            }
        }
    }
}
