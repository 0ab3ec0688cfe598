//! The request body as an HTTP/1.1 client sends it: strict decoding of its framing
//! (Content-Length, or chunked re-chunked for the upstream), the body limit, and the pump
//! that streams the rest of a body upstream while the response comes back (large runs of
//! raw bytes spliced). This is the HTTP/1.1 front end's `BodySource`.

use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf};

use crate::http::chunked::{put_chunk_header, ChunkEvent, ChunkedDecoder, CHUNK_END, LAST_CHUNK};
use crate::http::BodyFraming;
use crate::io::deadline::BodyDeadline;
use crate::io::splice::{self, ReadLimit, SpliceFail};
use crate::io::{read_some_until, IoFail, Stream};
use crate::pipeline::flush_upstream;
use crate::pipeline::{BodySource, ClientFault, Payload, Pump, SendFail};

use super::CLIENT_READ;

/// Longest chunk-size line (with extensions) accepted from a client.
const MAX_CHUNK_LINE: usize = 4096;
/// Flush re-chunked output once this much is queued.
const FLUSH_AT: usize = 64 * 1024;

/// The client's read half and the bytes received from it but not yet consumed (which may
/// hold pipelined requests), with the state of the current request's body.
pub struct ClientIn<S: Stream> {
    pub(super) r: OwnedReadHalf<S>,
    pub(super) buf: BytesMut,
    state: BodyState,
    /// Body bytes read for `next_payload` (the minimum rate's count).
    pulled: u64,
    /// A chunked body's trailer fields, gathered by `next_payload`.
    trailers: Option<http::HeaderMap>,
}

impl<S: Stream> ClientIn<S> {
    pub(super) fn new(r: OwnedReadHalf<S>, buf: BytesMut) -> Self {
        ClientIn {
            r,
            buf,
            state: BodyState::Done(0),
            pulled: 0,
            trailers: None,
        }
    }

    /// Keeps one trailer line (`name:value`) of a chunked body for an HTTP/2 upstream.
    fn keep_trailer(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        if let Some((name, value)) =
            crate::pipeline::trailer_field(&line[..colon], line[colon + 1..].trim_ascii())
        {
            self.trailers
                .get_or_insert_with(http::HeaderMap::new)
                .append(name, value);
        }
    }
}

impl<S: Stream> BodySource for ClientIn<S> {
    fn begin(&mut self, framing: BodyFraming, limit: u64, max_trailer: usize) {
        self.state = BodyState::new(framing, max_trailer, limit);
        self.pulled = 0;
        self.trailers = None;
    }

    fn stage(&mut self, out: &mut BytesMut) -> Result<(), SendFail> {
        self.state.stage(&mut self.buf, out)
    }

    fn is_done(&self) -> bool {
        self.state.is_done()
    }

    async fn pump<U: Stream>(
        &mut self,
        out: &mut BytesMut,
        w: &mut OwnedWriteHalf<U>,
        p: Pump<'_>,
    ) -> Result<(), SendFail> {
        let mut state = std::mem::replace(&mut self.state, BodyState::Done(0));
        let sent = pump_body(self, out, w, &mut state, p).await;
        self.state = state;
        sent
    }

    fn relayed(&self, framing: BodyFraming) -> u64 {
        self.state.relayed(framing)
    }

    async fn next_payload(&mut self, deadline: BodyDeadline) -> Result<Payload, SendFail> {
        loop {
            match &mut self.state {
                BodyState::Done(_) => return Ok(Payload::End(self.trailers.take())),
                BodyState::Length { remaining } if !self.buf.is_empty() => {
                    let take = (*remaining).min(self.buf.len() as u64);
                    *remaining -= take;
                    if *remaining == 0 {
                        self.state = BodyState::Done(0);
                    }
                    return Ok(Payload::Data(self.buf.split_to(take as usize).freeze()));
                }
                BodyState::Length { .. } => {}
                BodyState::Chunked { dec, total, limit } => match dec.step(&self.buf) {
                    Err(e) => return Err(SendFail::Client(ClientFault::Body(e))),
                    Ok(ChunkEvent::Data { start, end }) => {
                        *total += (end - start) as u64;
                        if *limit > 0 && *total > *limit {
                            return Err(SendFail::Client(ClientFault::BodyTooLarge));
                        }
                        self.buf.advance(start);
                        return Ok(Payload::Data(self.buf.split_to(end - start).freeze()));
                    }
                    Ok(ChunkEvent::NeedMore { consumed }) => self.buf.advance(consumed),
                    Ok(ChunkEvent::Trailer {
                        start,
                        end,
                        consumed,
                    }) => {
                        let line = self.buf.split_to(consumed);
                        self.keep_trailer(&line[start..end]);
                        continue;
                    }
                    Ok(ChunkEvent::Done { consumed }) => {
                        self.buf.advance(consumed);
                        self.state = BodyState::Done(*total);
                        continue;
                    }
                },
            }
            self.pulled += self.read_body(deadline.at(self.pulled)).await?;
        }
    }
}

/// Where the request body stands.
enum BodyState {
    Length {
        remaining: u64,
    },
    /// `limit`: the most payload bytes accepted (0 = unlimited) -> 413.
    Chunked {
        dec: ChunkedDecoder,
        total: u64,
        limit: u64,
    },
    /// The body went out whole; a chunked one's payload size (0 for the others).
    Done(u64),
}

impl BodyState {
    /// `max_body`: the request's body limit (0 = unlimited); a Content-Length body was
    /// checked against it before this.
    fn new(framing: BodyFraming, max_trailer: usize, max_body: u64) -> BodyState {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyState::Done(0),
            BodyFraming::Length(n) => BodyState::Length { remaining: n },
            // Trailer fields are handed out for `next_payload`; `stage` drops them.
            BodyFraming::Chunked => BodyState::Chunked {
                dec: ChunkedDecoder::new(MAX_CHUNK_LINE, max_trailer).with_trailers(),
                total: 0,
                limit: max_body,
            },
        }
    }

    /// Body payload bytes relayed so far, for the access log (`framing`: the request's).
    fn relayed(&self, framing: BodyFraming) -> u64 {
        let declared = match framing {
            BodyFraming::Length(n) => n,
            _ => 0,
        };
        match self {
            BodyState::Length { remaining } => declared - remaining.min(&declared),
            BodyState::Chunked { total, .. } => *total,
            BodyState::Done(total) => declared.max(*total),
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, BodyState::Done(_))
    }

    /// Body bytes that can be relayed next without decoding: the rest of a Content-Length
    /// body, or the rest of the current chunk's payload.
    fn raw_run(&self) -> u64 {
        match self {
            BodyState::Length { remaining } => *remaining,
            BodyState::Chunked { dec, .. } => dec.pending_data(),
            BodyState::Done(_) => 0,
        }
    }

    /// Before relaying `n` bytes of `raw_run()` untouched: for a chunked body, checks the
    /// size limit and puts the chunk-size line for the run into `out`.
    fn begin_raw(&mut self, n: u64, out: &mut BytesMut) -> Result<(), SendFail> {
        if let BodyState::Chunked { total, limit, .. } = self {
            *total += n;
            if *limit > 0 && *total > *limit {
                return Err(SendFail::Client(ClientFault::BodyTooLarge));
            }
            put_chunk_header(n as usize, out);
        }
        Ok(())
    }

    /// After the run: counts it as relayed; for a chunked body, ends its chunk in `out`.
    fn end_raw(&mut self, n: u64, out: &mut BytesMut) {
        match self {
            BodyState::Length { remaining } => {
                *remaining -= n.min(*remaining);
                if *remaining == 0 {
                    *self = BodyState::Done(0);
                }
            }
            BodyState::Chunked { dec, .. } => {
                dec.skip_data(n);
                out.put_slice(CHUNK_END);
            }
            BodyState::Done(_) => {}
        }
    }

    /// Moves body bytes from the client buffer into `out` (re-chunking a chunked body)
    /// until the buffer runs dry, the body ends, or `out` holds `FLUSH_AT` bytes.
    fn stage(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<(), SendFail> {
        match self {
            BodyState::Done(_) => Ok(()),
            BodyState::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                out.put_slice(&input[..take]);
                input.advance(take);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyState::Done(0);
                }
                Ok(())
            }
            BodyState::Chunked { dec, total, limit } => {
                while out.len() < FLUSH_AT {
                    match dec.step(input) {
                        Err(e) => return Err(SendFail::Client(ClientFault::Body(e))),
                        Ok(ChunkEvent::Data { start, end }) => {
                            *total += (end - start) as u64;
                            if *limit > 0 && *total > *limit {
                                return Err(SendFail::Client(ClientFault::BodyTooLarge));
                            }
                            put_chunk_header(end - start, out);
                            out.put_slice(&input[start..end]);
                            out.put_slice(CHUNK_END);
                            input.advance(end);
                        }
                        Ok(ChunkEvent::NeedMore { consumed }) => {
                            input.advance(consumed);
                            return Ok(());
                        }
                        // Not asked for (`with_trailers`): a client's trailers are dropped.
                        Ok(ChunkEvent::Trailer { consumed, .. }) => input.advance(consumed),
                        Ok(ChunkEvent::Done { consumed }) => {
                            input.advance(consumed);
                            out.put_slice(LAST_CHUNK);
                            *self = BodyState::Done(*total);
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl<S: Stream> ClientIn<S> {
    /// Reads more request body before the body deadline; the number of bytes read.
    async fn read_body(&mut self, deadline: Instant) -> Result<u64, SendFail> {
        let buf = std::mem::take(&mut self.buf);
        match read_some_until(&mut self.r, buf, CLIENT_READ, deadline).await {
            Ok((0, buf)) => {
                self.buf = buf;
                Err(SendFail::ClientGone)
            }
            Ok((n, buf)) => {
                self.buf = buf;
                Ok(n as u64)
            }
            Err(IoFail::Timeout) => Err(SendFail::Client(ClientFault::BodyTimeout)),
            Err(_) => Err(SendFail::ClientGone),
        }
    }
}

/// Streams the rest of the request body from the client to the upstream; a large run of
/// raw body bytes (Content-Length, or one chunk's payload) is spliced.
async fn pump_body<S: Stream, C: Stream>(
    cin: &mut ClientIn<S>,
    obuf: &mut BytesMut,
    w: &mut OwnedWriteHalf<C>,
    state: &mut BodyState,
    p: Pump<'_>,
) -> Result<(), SendFail> {
    let Pump {
        write,
        splice_threshold,
        deadline,
        pipes,
    } = p;
    // Body bytes read from the client here, for the minimum rate.
    let mut received = 0u64;
    loop {
        // A lone chunk terminator waits for the next write instead of costing its own.
        if !obuf.is_empty() && (state.is_done() || obuf[..] != *CHUNK_END) {
            flush_upstream(w, obuf, write).await?;
        }
        if state.is_done() {
            return Ok(());
        }
        // Decode what is already buffered (staging stops at FLUSH_AT) before asking the
        // client for more: it may have sent the whole rest of the body already.
        let buffered = cin.buf.len();
        if buffered > 0 {
            state.stage(&mut cin.buf, obuf)?;
            if !obuf.is_empty() || state.is_done() || cin.buf.len() != buffered {
                continue;
            }
        }
        let run = state.raw_run();
        let pipe = if cin.buf.is_empty() && splice::worth_it::<S, C>(run, splice_threshold) {
            pipes.take()
        } else {
            None
        };
        if let Some(pipe) = pipe {
            state.begin_raw(run, obuf)?;
            if !obuf.is_empty() {
                flush_upstream(w, obuf, write).await?;
            }
            let read = ReadLimit::By(deadline, received);
            match splice::relay(pipes, pipe, &mut cin.r, w, run, read, write).await {
                Ok(()) => {
                    received += run;
                    state.end_raw(run, obuf);
                }
                Err(SpliceFail::Destination) => return Err(SendFail::Upstream),
                Err(SpliceFail::SourceTimeout) => {
                    return Err(SendFail::Client(ClientFault::BodyTimeout))
                }
                Err(_) => return Err(SendFail::ClientGone),
            }
            continue;
        }
        received += cin.read_body(deadline.at(received)).await?;
        match state {
            // The whole buffer is body: send it as it is, no copy.
            BodyState::Length { remaining } if cin.buf.len() as u64 <= *remaining => {
                *remaining -= cin.buf.len() as u64;
                if *remaining == 0 {
                    *state = BodyState::Done(0);
                }
                std::mem::swap(obuf, &mut cin.buf);
            }
            _ => state.stage(&mut cin.buf, obuf)?,
        }
    }
}
