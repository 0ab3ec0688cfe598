//! TLS for `--h2` with an `https://` URL: a rustls client session over monoio's poll-io
//! socket (ringway's `tls::poll::PollTls`, which the `h2` codec drives through tokio's
//! `AsyncRead`/`AsyncWrite`). `connect` runs the handshake, offering ALPN `h2` only, and
//! refuses a server that does not select it.

use std::future::poll_fn;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use ringway::tls::poll::{HandshakeError, PollTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// A client-side TLS session over a poll-io socket.
pub type ClientTls = PollTls<ClientConnection>;

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
    let mut tls = ClientTls::new(io, conn);
    poll_fn(|cx| tls.poll_handshake(cx))
        .await
        .map_err(|e| match e {
            HandshakeError::Io => TlsError::Io,
            HandshakeError::Tls(e) => fatal(e),
        })?;
    match tls.session().alpn_protocol() {
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
