//! serde types for `[[listeners]]`: listeners with options beyond `server.listen` (TLS
//! termination, mTLS, a redirect to HTTPS). Compiled by `tls::` on the main thread.

use serde::{Deserialize, Serialize};

use super::defaults::listener_tls as d;
use super::Duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// "ip:port", like `server.listen` entries.
    pub address: String,
    /// TLS termination; absent = plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Plain listeners only: answer every request with a redirect to HTTPS on this port
    /// (308 for methods with bodies, 301 for GET/HEAD), instead of routing it.
    #[serde(default)]
    pub redirect_https_port: Option<u16>,
    /// HTTP/2: offered by ALPN (`h2` before `http/1.1`) on a TLS listener, accepted with
    /// prior knowledge on a plain one; false: HTTP/1.1 only.
    #[serde(default = "default_listener_http2")]
    pub http2: bool,
    /// HTTP/1.1 on this listener; false: HTTP/2 only (prior knowledge on a plain listener,
    /// ALPN `h2` alone on a TLS one), for clients that speak nothing else (gRPC).
    #[serde(default = "default_listener_http1")]
    pub http1: bool,
    /// A PROXY protocol header (HAProxy's) is required before anything else on every
    /// connection: "v1", "v2" or "any"; its client address then stands for the peer's.
    /// Unset: none is expected.
    #[serde(default)]
    pub proxy_protocol: Option<crate::proxy_protocol::Accept>,
    /// Peers that may send that header (CIDRs); empty = any. A connection from elsewhere
    /// is closed.
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificates, chosen by SNI against each certificate's DNS names (exact and
    /// wildcard); the first one is the default.
    pub certificates: Vec<CertificateConfig>,
    /// A client that sends no SNI or an unknown name: "default" (serve the first
    /// certificate) or "refuse" (abort the handshake).
    #[serde(default = "default_unknown_sni")]
    pub unknown_sni: String,
    /// "1.2" (TLS 1.2 and 1.3) or "1.3" (1.3 only).
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// ALPN protocols offered, in order. Unset: `h2` (unless the listener's `http2` is
    /// false) and `http/1.1`.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    /// Stateless session resumption with tickets: the keys are made per process, shared by
    /// every worker and listener, and rotated every 6 hours (a ticket stays valid for up to
    /// 12).
    #[serde(default = "default_session_tickets")]
    pub session_tickets: bool,
    /// Time allowed for the handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: Duration,
    /// Verify client certificates (mTLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain (leaf first), relative to the config file's directory.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// SNI names this certificate answers (exact or "*.example.com"); default: the DNS
    /// names in the certificate.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// PEM bundle of the CAs client certificates must chain to.
    pub ca_file: String,
    /// "required" (no certificate, no connection) or "optional".
    #[serde(default = "default_client_auth_mode")]
    pub mode: String,
    /// PEM or DER certificate revocation lists.
    #[serde(default)]
    pub crl_files: Vec<String>,
}

fn default_session_tickets() -> bool {
    d::SESSION_TICKETS
}
fn default_unknown_sni() -> String {
    d::UNKNOWN_SNI.into()
}
fn default_min_version() -> String {
    d::MIN_VERSION.into()
}
fn default_listener_http2() -> bool {
    super::defaults::listener::HTTP2
}
fn default_listener_http1() -> bool {
    super::defaults::listener::HTTP1
}
fn default_handshake_timeout() -> Duration {
    d::HANDSHAKE_TIMEOUT
}
fn default_client_auth_mode() -> String {
    d::CLIENT_AUTH_MODE.into()
}
