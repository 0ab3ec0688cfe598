//! Responses on an HTTP/1.1 connection: ringway's own answers written whole, relayed ones
//! re-serialised (`pipeline::forward::response_head`) with the body framing this client
//! needs (Content-Length kept, chunked for HTTP/1.1 when the length is unknown,
//! close-delimited for HTTP/1.0), the head joined to the body's first bytes, and large runs
//! spliced into the socket. This is the HTTP/1.1 front end's `ResponseSink`.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use monoio::io::{OwnedReadHalf, OwnedWriteHalf};

use crate::accesslog::RequestLog;
use crate::http::canned::{self, Canned};
use crate::http::chunked::{put_chunk_header, CHUNK_END, LAST_CHUNK};
use crate::http::{ResponseFraming, ResponseHead, Version};
use crate::io::splice::{self, PipePair, Pipes, ReadLimit, SpliceFail};
use crate::io::{write_all_within, IoFail, Stream};
use crate::pipeline::forward::{self, OutFraming, ResponseCtx};
use crate::pipeline::{HeadOut, ResponseSink};

/// The client's write half and the bytes being prepared for it.
pub struct ClientOut<S: Stream> {
    pub(super) w: OwnedWriteHalf<S>,
    pub(super) buf: BytesMut,
    /// The current request's access log record (it counts the bytes written here).
    pub(super) log: RequestLog,
    /// A write to the client timed out or failed: the connection ends with a reset.
    pub(super) abandoned: bool,
    /// The current request's HTTP version (how its response is framed).
    pub(super) version: Version,
    /// How the body of the response being relayed is framed.
    framing: OutFraming,
    /// The response being relayed passes its trailer fields on (`takes_trailers`).
    trailers: bool,
    /// A trailer field was queued: the last chunk is already out, and `end` closes the
    /// trailer section.
    in_trailers: bool,
}

impl<S: Stream> ClientOut<S> {
    pub(super) fn new(w: OwnedWriteHalf<S>, buf: BytesMut) -> Self {
        ClientOut {
            w,
            buf,
            log: RequestLog::default(),
            abandoned: false,
            version: Version::Http11,
            framing: OutFraming::None,
            trailers: false,
            in_trailers: false,
        }
    }

    /// Writes all of `buf` to the client within `timeout` and counts it, leaving `buf`
    /// empty with its capacity. A write that fails or times out abandons the connection
    /// (it ends with a reset; see `serve`).
    async fn write(&mut self, buf: &mut BytesMut, timeout: Duration) -> Result<(), IoFail> {
        let n = buf.len() as u64;
        let mut b = write_all_within(&mut self.w, std::mem::take(buf), timeout)
            .await
            .inspect_err(|_| self.abandoned = true)?;
        self.log.bytes_out += n;
        b.clear();
        *buf = b;
        Ok(())
    }
}

impl<S: Stream> ResponseSink for ClientOut<S> {
    const SPLICE: bool = S::SPLICE;

    fn log(&mut self) -> &mut RequestLog {
        &mut self.log
    }

    async fn answer(&mut self, answer: &Canned<'_>, write: Duration) -> Result<(), IoFail> {
        let keep_alive = !answer.close && self.version == Version::Http10;
        self.buf.clear();
        canned::write_response(
            &Canned {
                keep_alive,
                ..*answer
            },
            &mut self.buf,
        );
        self.flush(write).await
    }

    fn start(&mut self, resp: &ResponseHead, out: &HeadOut<'_>) -> bool {
        let mut close = out.close;
        let status = resp.status;
        let framing = match resp.framing {
            ResponseFraming::None if out.head_request || status == 304 => OutFraming::HeadersOnly,
            ResponseFraming::None if status == 204 => OutFraming::None,
            ResponseFraming::None => OutFraming::Length(0),
            ResponseFraming::Length(n) => OutFraming::Length(n),
            ResponseFraming::Chunked | ResponseFraming::CloseDelimited => {
                if self.version == Version::Http11 {
                    OutFraming::Chunked
                } else {
                    close = true;
                    OutFraming::Close
                }
            }
        };
        self.framing = framing;
        self.trailers = framing == OutFraming::Chunked && out.te_trailers;
        self.in_trailers = false;
        self.buf.clear();
        let ctx = ResponseCtx {
            cfg: out.cfg,
            edits: out.edits,
            framing,
            close,
            client_version: self.version,
            hsts: out.hsts,
            upgrade: None,
        };
        forward::response_head(&mut self.buf, resp, &ctx);
        close
    }

    fn join_head(&mut self, buf: &mut BytesMut, at: usize) -> usize {
        // Written into the room before the body, or, if it does not fit, with the body
        // bytes copied behind it.
        let head_len = self.buf.len();
        if head_len <= at {
            let start = at - head_len;
            buf[start..at].copy_from_slice(&self.buf);
            buf.advance(start);
        } else {
            self.buf.put_slice(&buf[at..]);
            buf.clear();
            buf.put_slice(&self.buf);
        }
        self.buf.clear();
        head_len
    }

    fn put(&mut self, payload: &[u8]) {
        // (An empty chunk would be the last chunk.)
        if payload.is_empty() {
            return;
        }
        if self.framing == OutFraming::Chunked {
            put_chunk_header(payload.len(), &mut self.buf);
            self.buf.put_slice(payload);
            self.buf.put_slice(CHUNK_END);
        } else {
            self.buf.put_slice(payload);
        }
    }

    fn begin_run(&mut self, len: u64) {
        if self.framing == OutFraming::Chunked {
            put_chunk_header(len as usize, &mut self.buf);
        }
    }

    fn end_run(&mut self) {
        if self.framing == OutFraming::Chunked {
            self.buf.put_slice(CHUNK_END);
        }
    }

    fn end(&mut self) {
        if self.in_trailers {
            self.buf.put_slice(CHUNK_END);
        } else if self.framing == OutFraming::Chunked {
            self.buf.put_slice(LAST_CHUNK);
        }
    }

    fn takes_trailers(&self) -> bool {
        self.trailers
    }

    fn trailer(&mut self, name: &[u8], value: &[u8]) {
        if !self.trailers {
            return;
        }
        if !self.in_trailers {
            // The last chunk's size line; the fields follow it.
            self.buf.put_slice(&LAST_CHUNK[..3]);
            self.in_trailers = true;
        }
        self.buf.put_slice(name);
        self.buf.put_slice(b": ");
        self.buf.put_slice(value);
        self.buf.put_slice(CHUNK_END);
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn holds_framing_only(&self) -> bool {
        self.buf[..] == *CHUNK_END
    }

    async fn flush(&mut self, write: Duration) -> Result<(), IoFail> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        let sent = self.write(&mut buf, write).await;
        self.buf = buf;
        sent
    }

    async fn send(&mut self, buf: &mut BytesMut, write: Duration) -> Result<(), IoFail> {
        self.flush(write).await?;
        self.write(buf, write).await
    }

    async fn splice_from<U: Stream>(
        &mut self,
        pipes: &Pipes,
        pipe: PipePair,
        src: &mut OwnedReadHalf<U>,
        len: u64,
        read: ReadLimit,
        write: Duration,
    ) -> Result<(), SpliceFail> {
        match splice::relay(pipes, pipe, src, &mut self.w, len, read, write).await {
            Ok(()) => {
                self.log.bytes_out += len;
                Ok(())
            }
            Err(e) => {
                if matches!(e, SpliceFail::Destination) {
                    self.abandoned = true;
                }
                Err(e)
            }
        }
    }
}
