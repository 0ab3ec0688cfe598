//! TLS for the HTTP/2 front end: the `h2` codec drives poll-style streams (tokio's
//! `AsyncRead`/`AsyncWrite`), so a connection whose handshake chose ALPN `h2` continues on a
//! rustls session over monoio's poll-io socket instead of the completion-based stream the
//! HTTP/1.1 front end uses. The handshake itself is `tls::accept`'s; this only carries the
//! data phase: decrypting what the socket holds into what the reader asks for, and
//! encrypting writes (flushed before `poll_write` reports them written, or on `poll_flush`).
//!
//! It is generic over the session's side: the bundled load generator runs its HTTP/2 client
//! sessions on it too, driving their handshake with `poll_handshake`.

use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::{ConnectionCommon, ServerConnection, SideData};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TLS session (server-side unless said otherwise) over a poll-io socket.
pub struct PollTls<C = ServerConnection> {
    io: TcpStreamPoll,
    conn: C,
    /// The socket reached EOF: no more TLS records will come.
    eof: bool,
}

/// Why a handshake driven by `PollTls::poll_handshake` failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed or closed.
    Io,
    /// The peer's messages were refused (a certificate, a protocol, an alert).
    Tls(rustls::Error),
}

impl<C, D> PollTls<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
{
    /// Continues the session `conn` over `io` (its handshake done, or to be driven by
    /// `poll_handshake`).
    pub fn new(io: TcpStreamPoll, conn: C) -> PollTls<C> {
        PollTls {
            io,
            conn,
            eof: false,
        }
    }

    /// The session (the ALPN protocol it chose, say).
    pub fn session(&self) -> &C {
        &self.conn
    }

    /// Drives the handshake until it is done.
    pub fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandshakeError>> {
        loop {
            match self.write_tls(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(HandshakeError::Io)),
                Poll::Pending => return Poll::Pending,
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.read_tls(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    return Poll::Ready(Err(HandshakeError::Io))
                }
                Poll::Ready(Ok(_)) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // Best effort: the alert rustls queued goes out before the error.
                        let _ = self.write_tls(cx);
                        return Poll::Ready(Err(HandshakeError::Tls(e)));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads TLS records from the socket into the session; Ok(0) at EOF.
    fn read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut reader = SyncIo {
            io: &mut self.io,
            cx,
        };
        match self.conn.read_tls(&mut reader) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Writes queued TLS records to the socket until none are left or it would block.
    fn write_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut writer = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut writer) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A blocking-style view of the poll-io socket for rustls: `Pending` becomes `WouldBlock`
/// (the waker is registered by the poll).
struct SyncIo<'a, 'b> {
    io: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<C, D> AsyncRead for PollTls<C>
where
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                // The peer closed without a close_notify: end of stream for the reader.
                return Poll::Ready(Ok(()));
            }
            match this.read_tls(cx) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(_)) => {
                    if let Err(e) = this.conn.process_new_packets() {
                        // Best effort: the alert rustls queued goes out before the error.
                        let _ = this.write_tls(cx);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                    // A TLS 1.3 key update (or, to a client, a ticket) may want an answer.
                    if let Poll::Ready(Err(e)) = this.write_tls(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<C, D> AsyncWrite for PollTls<C>
where
    C: DerefMut<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What rustls already holds goes out first, so its buffer stays bounded.
        if let Poll::Ready(Err(e)) = this.write_tls(cx) {
            return Poll::Ready(Err(e));
        }
        let n = this.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls' buffer is full and the socket would block.
            return Poll::Pending;
        }
        match this.write_tls(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.write_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        match this.write_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}
