//! Byte streams under deadlines, below everything that speaks HTTP: how ringway reads into
//! growable buffers and writes within a timeout, the `Stream` trait that lets the connection
//! state machines run over real sockets, TLS or in-memory streams (the mutation harness uses
//! the latter), upstream connections split once (`UpConn`), zero-copy relays through kernel
//! pipes (`splice`), the worker's pool of large body buffers (`bufs`) and the request body's
//! deadline (`deadline`). Nothing here parses HTTP.
//!
//! Where it sits: below `pipeline`, `front`, `upstream` and `compiled`; above `tls` and
//! `sys` only.

pub mod bufs;
pub mod deadline;
pub mod splice;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split,
    Splitable,
};
use monoio::net::{Pipe, TcpStream, UnixStream};

/// Why a deadline-bound read or write did not complete.
#[derive(Debug)]
pub enum IoFail {
    /// The deadline passed. The buffer was lost with the cancelled operation.
    Timeout,
    /// The peer closed before the bytes we needed arrived.
    Eof,
    Io(io::Error),
}

/// A byte stream ringway can proxy over: read and written concurrently through split
/// halves (request body and response relay run at the same time), with a file descriptor
/// the pool can health-check while idle.
///
/// A stream whose bytes are the socket's own (plain TCP or Unix, not TLS) says so with
/// `SPLICE` and moves them to and from a kernel pipe, so large bodies skip user space.
#[allow(async_fn_in_trait)]
pub trait Stream: AsyncReadRent + AsyncWriteRent + Split + Sized + 'static {
    const SPLICE: bool = false;

    /// A read whose future is dropped (a timeout) leaves the stream usable for the next
    /// read. False for TLS streams: their reader loses its buffer then, so ringway never
    /// reads again after a timed-out read on one (an idle TLS connection keeps its buffers
    /// instead of shrinking them after a second).
    const READ_CANCEL_SAFE: bool = true;

    /// The socket, for idle health checks (`None`: not checked).
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// Moves up to `len` received bytes into `pipe` (0 = EOF).
    async fn splice_in(
        _r: &mut OwnedReadHalf<Self>,
        _pipe: &mut Pipe,
        _len: u32,
    ) -> io::Result<u32> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Sends up to `len` bytes out of `pipe`.
    async fn splice_out(
        _w: &mut OwnedWriteHalf<Self>,
        _pipe: &mut Pipe,
        _len: u32,
    ) -> io::Result<u32> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

macro_rules! plain_socket {
    ($($t:ty),*) => {$(
        impl Stream for $t {
            const SPLICE: bool = true;

            fn raw_fd(&self) -> Option<RawFd> {
                Some(self.as_raw_fd())
            }

            async fn splice_in(r: &mut OwnedReadHalf<Self>, pipe: &mut Pipe, len: u32) -> io::Result<u32> {
                r.splice_to_pipe(pipe, len).await
            }

            async fn splice_out(w: &mut OwnedWriteHalf<Self>, pipe: &mut Pipe, len: u32) -> io::Result<u32> {
                w.splice_from_pipe(pipe, len).await
            }
        }
    )*};
}

plain_socket!(TcpStream, UnixStream);

/// A TLS client connection: no splice (the bytes are ciphertext), and reads must not be
/// abandoned and retried.
impl Stream for crate::tls::TlsStream {
    const READ_CANCEL_SAFE: bool = false;
}

/// A TLS upstream connection (its socket is kept by `UpConn::with_fd`).
impl Stream for crate::tls::UpTlsStream {
    const READ_CANCEL_SAFE: bool = false;
}

/// An upstream connection, split once when it is opened so that reuse costs nothing.
pub struct UpConn<C: Stream> {
    pub r: OwnedReadHalf<C>,
    pub w: OwnedWriteHalf<C>,
    fd: Option<RawFd>,
}

impl<C: Stream> UpConn<C> {
    pub fn new(conn: C) -> UpConn<C> {
        let fd = conn.raw_fd();
        let (r, w) = conn.into_split();
        UpConn { r, w, fd }
    }

    /// A connection whose socket is `fd` (for streams that do not expose it, like TLS).
    pub fn with_fd(conn: C, fd: RawFd) -> UpConn<C> {
        let (r, w) = conn.into_split();
        UpConn { r, w, fd: Some(fd) }
    }

    /// True if an idle connection was closed or reset by its peer (or sent stray bytes).
    pub fn unusable_when_idle(&self) -> bool {
        self.fd.is_some_and(crate::sys::idle_socket_unusable)
    }
}

/// Opens upstream connections. One per worker; no Send bound: monoio is thread-per-core.
#[allow(async_fn_in_trait)]
pub trait Connector: 'static {
    type Conn: Stream;
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Conn>;
}

/// Plain TCP upstreams with TCP_NODELAY.
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Conn = TcpStream;
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let s = TcpStream::connect_addr(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Reads once, appending to `buf` (growing it to at least `min_spare` free bytes first).
/// Returns the new buffer and the number of bytes read (0 = EOF).
pub async fn read_some<S: AsyncReadRent>(
    s: &mut S,
    mut buf: BytesMut,
    min_spare: usize,
) -> (io::Result<usize>, BytesMut) {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let start = buf.len();
    let (res, slice) = s.read(buf.slice_mut(start..)).await;
    (res, slice.into_inner())
}

/// `read_some` bounded by an absolute deadline. On timeout the buffer is gone.
pub async fn read_some_until<S: AsyncReadRent>(
    s: &mut S,
    buf: BytesMut,
    min_spare: usize,
    deadline: Instant,
) -> Result<(usize, BytesMut), IoFail> {
    let read = std::pin::pin!(read_some(s, buf, min_spare));
    let sleep = std::pin::pin!(monoio::time::sleep_until(deadline.into()));
    match within(read, sleep).await {
        None => Err(IoFail::Timeout),
        Some((Ok(n), buf)) => Ok((n, buf)),
        Some((Err(e), _)) => Err(IoFail::Io(e)),
    }
}

/// Writes all of `buf` within `timeout`, returning it cleared for reuse.
pub async fn write_all_within<S: AsyncWriteRent, B>(
    s: &mut S,
    buf: B,
    timeout: std::time::Duration,
) -> Result<B, IoFail>
where
    B: monoio::buf::IoBuf + 'static,
{
    let write = std::pin::pin!(s.write_all(buf));
    let sleep = std::pin::pin!(monoio::time::sleep(timeout));
    match within(write, sleep).await {
        None => Err(IoFail::Timeout),
        Some((Ok(_), buf)) => Ok(buf),
        Some((Err(e), _)) => Err(IoFail::Io(e)),
    }
}

/// `op`'s output, or None once `sleep` ends first (`op` is then dropped by the caller,
/// which cancels it). Both are pinned where the caller's state keeps them: unlike wrapping
/// `op` in a `Timeout`, nothing is moved after it was made (a move copies the whole
/// operation state, on every read and write).
fn within<'a, F: Future>(
    mut op: std::pin::Pin<&'a mut F>,
    mut sleep: std::pin::Pin<&'a mut monoio::time::Sleep>,
) -> impl Future<Output = Option<F::Output>> + 'a {
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(out) = op.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
}
