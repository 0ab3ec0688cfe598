//! TLS to upstream servers: verification against a CA file or the system roots, an SNI /
//! expected name, an optional client certificate. Built per worker with the rest of
//! `Compiled`; connections are pooled per core like plain ones.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{read_certs, resolve};
use crate::config::{ConfigError, UpstreamTlsConfig};

/// An upstream connection after its handshake.
pub type UpTlsStream = monoio_rustls::ClientTlsStream<TcpStream>;

/// How to open TLS connections to one upstream's servers.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: monoio_rustls::TlsConnector,
    /// The configured name, or None to use each server's host.
    server_name: Option<ServerName<'static>>,
    /// A digest of every setting a connection is made with (trust anchors, names,
    /// client certificate, ALPN): connections are pooled under it, so one made for these
    /// settings is never lent to an upstream with others (see `connection_settings`).
    settings: u64,
    /// The same settings offering ALPN `h2` (and `http/1.1` too for `protocol = "auto"`),
    /// for HTTP/2 connections (`connect_h2`).
    h2: Arc<ClientConfig>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// `p` is the field path (`upstreams[i].tls`); problems go to `errors`.
    /// `auto`: HTTP/2 connections offer `http/1.1` too (`protocol = "auto"`).
    pub fn build(
        p: &str,
        cfg: &UpstreamTlsConfig,
        base: &Path,
        auto: bool,
        errors: &mut Vec<ConfigError>,
    ) -> Option<UpstreamTls> {
        let mut roots = RootCertStore::empty();
        match &cfg.ca_file {
            Some(f) => match read_certs(&resolve(base, f)) {
                Ok(certs) => {
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        errors.push(ConfigError::new(
                            format!("{p}.ca_file"),
                            format!("{f}: no usable CA certificate"),
                        ));
                        return None;
                    }
                }
                Err(e) => {
                    errors.push(ConfigError::new(format!("{p}.ca_file"), e));
                    return None;
                }
            },
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    errors.push(ConfigError::new(
                        format!("{p}.ca_file"),
                        "no system root certificates found: set ca_file",
                    ));
                    return None;
                }
            }
        }
        let mut settings = Settings::default();
        settings.add(b"ca");
        for ca in roots.roots.iter() {
            settings.add(ca.subject.as_ref());
            settings.add(ca.subject_public_key_info.as_ref());
        }
        for (field, v) in [("sni", &cfg.server_name), ("verify", &cfg.verify_name)] {
            settings.add(field.as_bytes());
            settings.add(v.as_deref().unwrap_or("\0").as_bytes());
        }
        let mut name = |field: &str, v: &Option<String>| match v {
            Some(n) => match ServerName::try_from(n.clone()) {
                Ok(n) => Ok(Some(n)),
                Err(_) => {
                    errors.push(ConfigError::new(
                        format!("{p}.{field}"),
                        format!("{n:?} is not a DNS name or IP address"),
                    ));
                    Err(())
                }
            },
            None => Ok(None),
        };
        let server_name = name("server_name", &cfg.server_name).ok()?;
        let verify_name = name("verify_name", &cfg.verify_name).ok()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
        {
            Ok(b) => b,
            Err(e) => {
                errors.push(ConfigError::new(p.to_string(), e.to_string()));
                return None;
            }
        };
        let builder = match verify_name {
            None => builder.with_root_certificates(roots),
            Some(expect) => {
                let inner =
                    match WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                    {
                        Ok(v) => v,
                        Err(e) => {
                            errors.push(ConfigError::new(format!("{p}.ca_file"), e.to_string()));
                            return None;
                        }
                    };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ExpectName { inner, expect }))
            }
        };
        let mut config = match (&cfg.cert_file, &cfg.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(c), Some(k)) => {
                let chain = match read_certs(&resolve(base, c)) {
                    Ok(chain) if !chain.is_empty() => chain,
                    Ok(_) => {
                        errors.push(ConfigError::new(format!("{p}.cert_file"), "no certificate"));
                        return None;
                    }
                    Err(e) => {
                        errors.push(ConfigError::new(format!("{p}.cert_file"), e));
                        return None;
                    }
                };
                settings.add(b"client");
                for cert in &chain {
                    settings.add(cert.as_ref());
                }
                let key_path = resolve(base, k);
                let key = match PrivateKeyDer::from_pem_file(&key_path) {
                    Ok(k) => k,
                    Err(e) => {
                        errors.push(ConfigError::new(
                            format!("{p}.key_file"),
                            format!("{}: no usable private key: {e}", key_path.display()),
                        ));
                        return None;
                    }
                };
                match builder.with_client_auth_cert(chain, key) {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(ConfigError::new(format!("{p}.key_file"), e.to_string()));
                        return None;
                    }
                }
            }
            _ => {
                errors.push(ConfigError::new(
                    p.to_string(),
                    "set both cert_file and key_file, or neither",
                ));
                return None;
            }
        };
        let mut h2 = config.clone();
        h2.alpn_protocols = if auto {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec()]
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        settings.add(b"alpn");
        for p in &config.alpn_protocols {
            settings.add(p);
        }
        Some(UpstreamTls {
            connector: monoio_rustls::TlsConnector::from(config),
            server_name,
            settings: settings.0,
            h2: Arc::new(h2),
        })
    }

    /// A digest of everything a connection to a server named `host` in the config is made
    /// with: these settings and the name sent as SNI (the configured one, else `host`).
    /// Equal digests mean interchangeable connections (to the same address).
    pub fn connection_settings(&self, host: &str) -> u64 {
        let mut s = Settings(self.settings);
        if self.server_name.is_none() {
            s.add(host.as_bytes());
        }
        // Never 0: that is a plain connection's.
        s.0 | 1
    }

    /// Connects to `addr` (TCP_NODELAY), sends `preamble` (a PROXY protocol header, or
    /// nothing) and completes the handshake, naming the server `host` unless a name is
    /// configured.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        host: &str,
        preamble: &[u8],
    ) -> std::io::Result<(UpTlsStream, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd;
        let name = self.name_for(host)?;
        let mut tcp = TcpStream::connect_addr(addr).await?;
        tcp.set_nodelay(true)?;
        if !preamble.is_empty() {
            // (A PROXY protocol header: before the handshake.)
            use monoio::io::AsyncWriteRentExt;
            tcp.write_all(preamble.to_vec()).await.0?;
        }
        let fd = tcp.as_raw_fd();
        let tls = self
            .connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| {
                let why = match e {
                    monoio_rustls::TlsError::Io(e) => e.to_string(),
                    monoio_rustls::TlsError::Rustls(e) => e.to_string(),
                };
                std::io::Error::other(format!("tls handshake with {}: {why}", name_text(&name)))
            })?;
        Ok((tls, fd))
    }
}

/// An HTTP/2 connection's TLS session over a poll-io socket (what the `h2` codec drives).
pub type UpH2Tls = super::poll::PollTls<rustls::ClientConnection>;

impl UpstreamTls {
    /// The server name sent for a server configured as `host`.
    fn name_for(&self, host: &str) -> std::io::Result<ServerName<'static>> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => ServerName::try_from(host.to_string())
                .map_err(|_| std::io::Error::other(format!("{host:?} is not a TLS server name"))),
        }
    }

    /// Connects to `addr` offering ALPN `h2` (and `http/1.1` for `auto`) and completes the
    /// handshake; also says whether the server picked `h2`.
    pub async fn connect_h2(
        &self,
        addr: SocketAddr,
        host: &str,
    ) -> std::io::Result<(UpH2Tls, bool)> {
        let name = self.name_for(host)?;
        let tcp = TcpStream::connect_addr(addr).await?;
        tcp.set_nodelay(true)?;
        let io = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
        let session = rustls::ClientConnection::new(self.h2.clone(), name.clone())
            .map_err(std::io::Error::other)?;
        let mut tls = super::poll::PollTls::new(io, session);
        std::future::poll_fn(|cx| tls.poll_handshake(cx))
            .await
            .map_err(|e| {
                let why = match e {
                    super::poll::HandshakeError::Io => "connection closed".to_string(),
                    super::poll::HandshakeError::Tls(e) => e.to_string(),
                };
                std::io::Error::other(format!("tls handshake with {}: {why}", name_text(&name)))
            })?;
        let h2 = tls.session().alpn_protocol() == Some(b"h2");
        Ok((tls, h2))
    }
}

/// FNV-1a over length-prefixed parts: stable, and cheap enough to build once per upstream.
struct Settings(u64);

impl Default for Settings {
    fn default() -> Self {
        Settings(0xcbf2_9ce4_8422_2325)
    }
}

impl Settings {
    fn add(&mut self, part: &[u8]) {
        let len = (part.len() as u64).to_le_bytes();
        for &b in len.iter().chain(part) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn name_text(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the server".to_string(),
    }
}

/// Full WebPKI verification of the server certificate, against `expect` instead of the
/// name sent as SNI (`verify_name`).
#[derive(Debug)]
struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    expect: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.expect, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
