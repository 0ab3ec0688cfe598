//! TLS termination with rustls: certificates chosen by SNI, mTLS, session tickets shared by
//! every worker, and certificate reload without a restart.
//!
//! Built once on the main thread: one `rustls::ServerConfig` per TLS listener, shared by
//! every worker through an `Arc` (a refcount per handshake, never per request). The
//! certificate resolver swaps its whole set on reload; a handshake that already picked a
//! certificate keeps it. The handshake itself is driven here (`accept`), so ringway sees the
//! SNI name and the client certificate, then the data phase runs on `monoio_rustls`.
//!
//! Where it sits: below `compiled` and `io` (which lends its stream types a `Stream`
//! impl); it imports only `config` and `grammar`.

mod certs;
pub mod poll;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

pub use self::certs::{client_identity, CertSet, SniResolver};
pub use self::upstream::{UpTlsStream, UpstreamTls};
use crate::config::{ConfigError, ConfigErrors, GatewayConfig, TlsConfig};

/// A client connection after a completed handshake.
pub type TlsStream = monoio_rustls::ServerTlsStream<TcpStream>;

/// One TLS listener's settings.
pub struct TlsListener {
    pub config: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
    pub resolver: Arc<SniResolver>,
}

/// What each configured listener does, in `Compiled::listen` order.
#[derive(Clone)]
pub enum ListenerKind {
    /// Plain HTTP; `h2c`: HTTP/2 with prior knowledge is accepted too.
    Plain { h2c: bool },
    /// Plain HTTP/2 with prior knowledge only.
    H2c,
    /// TLS; its ALPN offers (or not) `h2`.
    Tls(Arc<TlsListener>),
    /// Answer every request with a redirect to HTTPS on this `port`.
    RedirectHttps { port: u16, h2c: bool },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Resolves a path from the config against the config file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The PEM certificates in `path`, or why not (naming the file).
pub(crate) fn read_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    match rustls::pki_types::CertificateDer::pem_file_iter(path) {
        Ok(it) => it
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Builds every listener's kind: plain for `server.listen`, then `[[listeners]]` in order.
/// All TLS listeners share one ticketer (keys made per process, rotated by rustls).
pub fn build(cfg: &GatewayConfig, file: &str) -> Result<Vec<ListenerKind>, ConfigErrors> {
    let base = Path::new(file).parent().unwrap_or(Path::new("."));
    let mut errors = Vec::new();
    let mut kinds: Vec<ListenerKind> = cfg
        .server
        .listen
        .iter()
        .map(|_| ListenerKind::Plain {
            h2c: cfg.server.http2,
        })
        .collect();
    let ticketer = match rustls::crypto::ring::Ticketer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(ConfigError::new(
                "listeners",
                format!("no session ticket keys: {e}"),
            ));
            None
        }
    };
    for (i, l) in cfg.listeners.iter().enumerate() {
        let kind = match (&l.tls, l.redirect_https_port) {
            (Some(tls), _) => {
                let path = format!("listeners[{i}].tls");
                match build_one(
                    &path,
                    tls,
                    (l.http1, l.http2),
                    base,
                    ticketer.clone(),
                    &mut errors,
                ) {
                    Some(t) => ListenerKind::Tls(Arc::new(t)),
                    None => ListenerKind::Plain { h2c: false },
                }
            }
            (None, Some(port)) => ListenerKind::RedirectHttps { port, h2c: l.http2 },
            (None, None) if !l.http1 => ListenerKind::H2c,
            (None, None) => ListenerKind::Plain { h2c: l.http2 },
        };
        kinds.push(kind);
    }
    if errors.is_empty() {
        Ok(kinds)
    } else {
        Err(ConfigErrors {
            file: file.to_string(),
            errors,
        })
    }
}

fn build_one(
    path: &str,
    tls: &TlsConfig,
    (http1, http2): (bool, bool),
    base: &Path,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    errors: &mut Vec<ConfigError>,
) -> Option<TlsListener> {
    let set = CertSet::load(path, tls, base, errors)?;
    let resolver = Arc::new(SniResolver::new(set, path.to_string(), tls.clone(), base));
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder =
        match ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions) {
            Ok(b) => b,
            Err(e) => {
                errors.push(ConfigError::new(
                    format!("{path}.min_version"),
                    e.to_string(),
                ));
                return None;
            }
        };
    let builder = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = client_verifier(&format!("{path}.client_auth"), ca, base, errors)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = match &tls.alpn {
        Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
        None => [(http2, &b"h2"[..]), (http1, &b"http/1.1"[..])]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, p)| p.to_vec())
            .collect(),
    };
    if tls.session_tickets {
        if let Some(t) = ticketer {
            config.ticketer = t;
        }
    } else {
        config.send_tls13_tickets = 0;
    }
    Some(TlsListener {
        config: Arc::new(config),
        handshake_timeout: tls.handshake_timeout.0,
        resolver,
    })
}

fn client_verifier(
    path: &str,
    ca: &crate::config::ClientAuthConfig,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateRevocationListDer;
    let file = resolve(base, &ca.ca_file);
    let certs = match read_certs(&file) {
        Ok(c) => c,
        Err(e) => {
            errors.push(ConfigError::new(format!("{path}.ca_file"), e));
            return None;
        }
    };
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        errors.push(ConfigError::new(
            format!("{path}.ca_file"),
            format!("{}: no usable CA certificate", file.display()),
        ));
        return None;
    }
    let mut crls = Vec::new();
    for (i, c) in ca.crl_files.iter().enumerate() {
        let f = resolve(base, c);
        let loaded = match std::fs::read(&f) {
            Ok(bytes) if bytes.starts_with(b"-----") => {
                CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|e| e.to_string())
            }
            Ok(bytes) => Ok(CertificateRevocationListDer::from(bytes)),
            Err(e) => Err(format!("cannot read: {e}")),
        };
        match loaded {
            Ok(crl) => crls.push(crl),
            Err(e) => errors.push(ConfigError::new(
                format!("{path}.crl_files[{i}]"),
                format!("{}: {e}", f.display()),
            )),
        }
    }
    let mut b =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).with_crls(crls);
    if ca.mode == "optional" {
        b = b.allow_unauthenticated();
    }
    match b.build() {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(ConfigError::new(path.to_string(), e.to_string()));
            None
        }
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeFail {
    Timeout,
    Io(io::Error),
    Tls(rustls::Error),
}

impl std::fmt::Display for HandshakeFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFail::Timeout => f.write_str("handshake timed out"),
            HandshakeFail::Io(e) => write!(f, "{e}"),
            HandshakeFail::Tls(e) => write!(f, "{e}"),
        }
    }
}

/// What the handshake established, for the request pipeline.
#[derive(Debug, Default, Clone)]
pub struct ConnInfo {
    /// The verified client certificate's identity (subject CN, else its first SAN).
    pub client_identity: Option<String>,
}

/// A completed handshake: the socket, its session (ALPN tells which protocol follows) and
/// what the handshake established.
pub struct Accepted {
    pub stream: TcpStream,
    pub session: ServerConnection,
    pub info: ConnInfo,
}

impl Accepted {
    /// The client and ringway agreed on HTTP/2 (ALPN `h2`).
    pub fn is_h2(&self) -> bool {
        self.session.alpn_protocol() == Some(b"h2")
    }

    /// The data phase for the HTTP/1.1 front end.
    pub fn into_http1(self) -> (TlsStream, ConnInfo) {
        (
            monoio_rustls::ServerTlsStream::new(self.stream, self.session),
            self.info,
        )
    }
}

/// Runs a server handshake on `stream` within the listener's timeout.
pub async fn accept(
    stream: TcpStream,
    tls: &TlsListener,
    peer: SocketAddr,
) -> Result<(TlsStream, ConnInfo), HandshakeFail> {
    accept_raw(stream, tls, peer)
        .await
        .map(Accepted::into_http1)
}

/// `accept`, leaving the choice of front end to the caller.
pub async fn accept_raw(
    stream: TcpStream,
    tls: &TlsListener,
    peer: SocketAddr,
) -> Result<Accepted, HandshakeFail> {
    let deadline = Instant::now() + tls.handshake_timeout;
    let conn = ServerConnection::new(tls.config.clone()).map_err(HandshakeFail::Tls)?;
    match monoio::time::timeout_at(deadline.into(), handshake(stream, conn)).await {
        Err(_) => Err(HandshakeFail::Timeout),
        Ok(Err(e)) => {
            log::debug!("tls handshake with {peer} failed: {e}");
            Err(e)
        }
        Ok(Ok((stream, session))) => {
            let info = ConnInfo {
                client_identity: session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| client_identity(c)),
            };
            Ok(Accepted {
                stream,
                session,
                info,
            })
        }
    }
}

/// Drives the handshake with plain socket reads and writes. Every byte read is handed to
/// rustls, so application data that arrived with the client's last handshake flight stays
/// in the session for the data phase.
async fn handshake(
    mut stream: TcpStream,
    mut conn: ServerConnection,
) -> Result<(TcpStream, ServerConnection), HandshakeFail> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    loop {
        while conn.wants_write() {
            out.clear();
            conn.write_tls(&mut out).map_err(HandshakeFail::Io)?;
            let (r, o) = stream.write_all(std::mem::take(&mut out)).await;
            out = o;
            r.map_err(HandshakeFail::Io)?;
        }
        if !conn.is_handshaking() {
            return Ok((stream, conn));
        }
        let (r, b) = stream.read(buf).await;
        buf = b;
        let n = r.map_err(HandshakeFail::Io)?;
        if n == 0 {
            return Err(HandshakeFail::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            conn.read_tls(&mut rest).map_err(HandshakeFail::Io)?;
            if let Err(e) = conn.process_new_packets() {
                // Best effort: tell the client why (the alert rustls queued), then fail.
                out.clear();
                if conn.write_tls(&mut out).is_ok() && !out.is_empty() {
                    let _ = stream.write_all(std::mem::take(&mut out)).await;
                }
                return Err(HandshakeFail::Tls(e));
            }
        }
    }
}
