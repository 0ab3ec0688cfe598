//! TLS for `--h2` with an `https://` URL: a rustls client session over monoio's poll-io
//! socket, so the `h2` codec can drive it through tokio's `AsyncRead`/`AsyncWrite` (the
//! client-side twin of ringway's server-side `tls::poll::PollTls`). `connect` runs the
//! handshake, offering ALPN `h2` only, and refuses a server that does not select it.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How the server's certificate is checked.
pub enum Trust<'a> {
    /// Not at all (`--insecure`): for self-signed test certificates.
    Anything,
    /// Against the CA certificates in this PEM file (`--cacert`).
    CaFile(&'a Path),
    /// Against the system's CA certificates.
    System,
}

/// The client config every connection shares: TLS 1.2 and 1.3, ALPN `h2` only.
pub fn client_config(trust: Trust<'_>) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = match trust {
        Trust::Anything => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading CA certificates from {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("{}: no usable CA certificate", path.display());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::System => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("no system CA certificates found: use --cacert FILE or --insecure");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate (`--insecure`); handshake signatures are still verified.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection could not be set up.
pub enum TlsError {
    /// The socket failed (counted as a connect error; the next connection may work).
    Io,
    /// The server refused the handshake, its certificate is not trusted, or it did not
    /// select `h2`: every connection would fail the same way, so the run stops.
    Fatal(String),
}

/// Runs the handshake on `io`; the session, ready for HTTP/2.
pub async fn connect(
    io: TcpStreamPoll,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> Result<ClientTls, TlsError> {
    let conn =
        ClientConnection::new(config, name).map_err(|e| TlsError::Fatal(format!("TLS: {e}")))?;
    let mut tls = ClientTls {
        io,
        conn,
        eof: false,
    };
    poll_fn(|cx| tls.poll_handshake(cx)).await?;
    match tls.conn.alpn_protocol() {
        Some(b"h2") => Ok(tls),
        Some(other) => Err(TlsError::Fatal(format!(
            "the server selected ALPN {:?}, not h2: it does not speak HTTP/2 over TLS",
            String::from_utf8_lossy(other)
        ))),
        None => Err(TlsError::Fatal(
            "the server selected no ALPN protocol (h2 was offered): it does not speak \
             HTTP/2 over TLS"
                .to_string(),
        )),
    }
}

fn fatal(e: rustls::Error) -> TlsError {
    let hint = match e {
        rustls::Error::InvalidCertificate(_) => {
            " (a self-signed certificate? use --insecure or --cacert FILE)"
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol) => {
            " (the server does not offer h2 in ALPN)"
        }
        _ => "",
    };
    TlsError::Fatal(format!("TLS handshake: {e}{hint}"))
}

/// A client-side TLS session over a poll-io socket.
pub struct ClientTls {
    io: TcpStreamPoll,
    conn: ClientConnection,
    /// The socket reached EOF: no more TLS records will come.
    eof: bool,
}

impl ClientTls {
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        loop {
            match self.write_tls(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(TlsError::Io)),
                Poll::Pending => return Poll::Pending,
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.read_tls(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(TlsError::Io)),
                Poll::Ready(Ok(_)) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // Best effort: the alert rustls queued goes out before the error.
                        let _ = self.write_tls(cx);
                        return Poll::Ready(Err(fatal(e)));
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

impl AsyncRead for ClientTls {
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
                        let _ = this.write_tls(cx);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                    // A TLS 1.3 key update or ticket may want an answer.
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

impl AsyncWrite for ClientTls {
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
