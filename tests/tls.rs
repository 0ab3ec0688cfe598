//! TLS termination end to end: a rustls client -> ringway ([[listeners]] with tls) -> a
//! recording plain-HTTP origin, under both I/O drivers. Certificates are generated per test
//! with rcgen; no private key is checked in.

use ringway_test_support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn leaf(ca: &Ca, names: &[&str], cn: &str, client: bool, serial: u64) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from(serial));
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A scratch directory for key files; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "ringway-tls-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        // Write then rename, as a deployment would, so a reader never sees half a file.
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = path.with_file_name(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path.display().to_string()
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepts any server certificate (the tests look at which one was served).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config: TLS 1.2+1.3 unless `versions` says otherwise, optional client cert.
fn client_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<&Leaf>,
) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert));
    let mut c = match client_cert {
        None => b.with_no_client_auth(),
        Some(l) => {
            let key = rustls::pki_types::pem::PemObject::from_pem_slice(l.key_pem.as_bytes())
                .map(|k: PrivateKeyDer<'static>| k)
                .unwrap();
            b.with_client_auth_cert(vec![CertificateDer::from(l.der.clone())], key)
                .unwrap()
        }
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

fn all_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

struct Tls {
    conn: rustls::StreamOwned<ClientConnection, TcpStream>,
}

impl Tls {
    /// Connects and completes the handshake; Err with the reason when it fails.
    fn connect(
        addr: SocketAddr,
        sni: Option<&str>,
        cfg: &Arc<ClientConfig>,
    ) -> Result<Tls, String> {
        let name = match sni {
            Some(n) => ServerName::try_from(n.to_string()).unwrap(),
            None => ServerName::IpAddress(addr.ip().into()),
        };
        let conn = ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(Tls { conn: s })
    }

    fn served_cert(&self) -> Vec<u8> {
        self.conn
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    /// One request on this connection; the parsed response or the error text.
    fn request(&mut self, raw: &str) -> Result<Response, String> {
        self.conn
            .write_all(raw.as_bytes())
            .map_err(|e| e.to_string())?;
        self.conn.flush().map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(r) = parse_response(&buf) {
                return Ok(r);
            }
            match self.conn.read(&mut chunk) {
                Ok(0) => return Err(format!("closed after {} bytes", buf.len())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn get(&mut self, path: &str, extra: &str) -> Result<Response, String> {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: a.test\r\n{extra}\r\n"
        ))
    }
}

/// A complete response with a Content-Length body at the front of `buf`.
fn parse_response(buf: &[u8]) -> Option<Response> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    Some(Response {
        status,
        reason: String::new(),
        version: "HTTP/1.1".into(),
        headers,
        body: buf[end..end + len].to_vec(),
        head,
    })
}

struct Setup {
    dir: Dir,
    dir_path: PathBuf,
    a: Leaf,
    wild: Leaf,
    c: Leaf,
    client_ca: Ca,
}

/// Server certificates a.test (+127.0.0.1, the default), *.b.test and c.test, and a CA
/// for client certificates; `tls_extra` is added to the listener's tls table.
fn setup(tag: &str, tls_extra: &str, origin: &Origin, route_extra: &str) -> (Setup, String) {
    let dir = Dir::new(tag);
    let server_ca = ca("server CA");
    let a = leaf(&server_ca, &["a.test", "127.0.0.1"], "a.test", false, 1);
    let wild = leaf(&server_ca, &["*.b.test"], "b", false, 2);
    let c = leaf(&server_ca, &["c.test"], "c.test", false, 3);
    for (n, l) in [("a", &a), ("wild", &wild), ("c", &c)] {
        dir.write(&format!("{n}.pem"), &l.cert_pem);
        dir.write(&format!("{n}.key"), &l.key_pem);
    }
    let client_ca = ca("client CA");
    dir.write("client-ca.pem", &client_ca.cert.pem());
    let config = format!(
        "[server]\nworkers = 1\n\n\
         [[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n{route_extra}\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\
         [listeners.tls]\n\
         certificates = [{{ cert_file = \"a.pem\", key_file = \"a.key\" }}, \
         {{ cert_file = \"wild.pem\", key_file = \"wild.key\" }}, \
         {{ cert_file = \"c.pem\", key_file = \"c.key\" }}]\n{tls_extra}\n",
        origin.addr()
    );
    let path = dir.path().to_path_buf();
    (
        Setup {
            dir,
            dir_path: path,
            a,
            wild,
            c,
            client_ca,
        },
        config,
    )
}

/// Starts ringway with the config file inside the setup's directory (relative key paths).
fn start(s: &Setup, config: &str, driver: Driver) -> Gateway {
    Gateway::start_in(config, driver, &s.dir_path)
}

both_drivers! {
    fn sni_picks_the_certificate_and_unknown_names_get_the_default(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("sni", "", &origin, "hsts = { max_age = \"1d\", include_subdomains = true }");
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let client = client_config(&all_versions(), None);
        for (sni, want) in [
            (Some("a.test"), &s.a.der),
            (Some("x.b.test"), &s.wild.der),
            (Some("C.TEST"), &s.c.der),
            (Some("unknown.test"), &s.a.der),
            (Some("y.x.b.test"), &s.a.der),
            (None, &s.a.der),
        ] {
            let t = Tls::connect(addr, sni, &client).unwrap_or_else(|e| panic!("{sni:?}: {e}"));
            assert!(t.served_cert() == *want, "{sni:?} got another certificate");
        }
        let mut t = Tls::connect(addr, Some("a.test"), &client).unwrap();
        assert_eq!(t.conn.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let r = t.get("/x", "").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=86400; includeSubDomains"),
            "HSTS on a TLS connection"
        );
        // Keep-alive over TLS.
        assert_eq!(t.get("/y", "").unwrap().status, 200);
        let seen = origin.wait_requests(2);
        assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
        assert_eq!(seen[1].target, "/y");
    }

    fn unknown_names_can_be_refused(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("refuse", "unknown_sni = \"refuse\"", &origin, "");
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let client = client_config(&all_versions(), None);
        assert!(Tls::connect(addr, Some("unknown.test"), &client).is_err());
        assert!(Tls::connect(addr, None, &client).is_err());
        assert!(Tls::connect(addr, Some("c.test"), &client).is_ok());
    }

    fn tls13_only_refuses_tls12_clients(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("v13", "min_version = \"1.3\"", &origin, "");
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let v12 = client_config(&[&rustls::version::TLS12], None);
        let v13 = client_config(&[&rustls::version::TLS13], None);
        assert!(Tls::connect(addr, Some("a.test"), &v12).is_err());
        let t = Tls::connect(addr, Some("a.test"), &v13).unwrap();
        assert_eq!(t.conn.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        drop(gw);
        // The default accepts TLS 1.2 too.
        let (s, cfg) = setup("v12", "", &origin, "");
        let gw = start(&s, &cfg, driver);
        let mut t = Tls::connect(gw.listener_addr("https"), Some("a.test"), &v12).unwrap();
        assert_eq!(t.conn.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
        assert_eq!(t.get("/", "").unwrap().status, 200);
    }

    fn session_tickets_resume_across_workers(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("resume", "", &origin, "");
        let gw = start(&s, &cfg.replace("workers = 1", "workers = 2"), driver);
        let addr = gw.listener_addr("https");
        let client = client_config(&[&rustls::version::TLS13], None);
        let mut first = Tls::connect(addr, Some("a.test"), &client).unwrap();
        // The ticket arrives after the handshake: a request makes the client read it.
        assert_eq!(first.get("/", "").unwrap().status, 200);
        let mut resumed = 0;
        for _ in 0..8 {
            let mut t = Tls::connect(addr, Some("a.test"), &client).unwrap();
            if t.conn.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                resumed += 1;
            }
            assert_eq!(t.get("/", "").unwrap().status, 200);
        }
        // Connections land on both workers; every one resumes with a ticket from either.
        assert_eq!(resumed, 8);
    }

    fn client_certificates_are_verified_and_become_the_identity(driver) {
        let origin = Origin::ok("hello");
        let (s, mut cfg) = setup(
            "mtls",
            "client_auth = { ca_file = \"client-ca.pem\", crl_files = [\"client.crl\"] }",
            &origin,
            "access = { auth = [\"mtls\"], consumers = [\"client-a\"] }",
        );
        cfg.push_str("\n[[consumers]]\nname = \"client-a\"\ngroups = [\"machines\"]\n");
        let good = leaf(&s.client_ca, &["client-a.test"], "client-a", true, 10);
        let other = leaf(&s.client_ca, &["client-b.test"], "client-b", true, 11);
        let revoked = leaf(&s.client_ca, &["client-a.test"], "client-a", true, 12);
        let stranger = leaf(&ca("another CA"), &["client-a.test"], "client-a", true, 13);
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(12u64),
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&s.client_ca.cert, &s.client_ca.key)
        .unwrap();
        std::fs::write(s.dir_path.join("client.crl"), crl.pem().unwrap()).unwrap();
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let try_get = |cert: Option<&Leaf>| -> Result<Response, String> {
            let mut t = Tls::connect(addr, Some("a.test"), &client_config(&all_versions(), cert))?;
            t.get("/", "X-Client-Cert-Identity: forged\r\n")
        };
        // Required: no certificate, a stranger's, or a revoked one never get a response.
        assert!(try_get(None).is_err());
        assert!(try_get(Some(&stranger)).is_err());
        assert!(try_get(Some(&revoked)).is_err());
        let r = try_get(Some(&good)).unwrap();
        assert_eq!(r.status, 200);
        // A valid certificate of a consumer the route does not allow.
        assert_eq!(try_get(Some(&other)).unwrap().status, 403);
        let seen = origin.wait_requests(1);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header_all("x-client-cert-identity"), vec!["client-a"]);
        assert_eq!(seen[0].header("x-consumer"), Some("client-a"));
        assert_eq!(seen[0].header("x-consumer-groups"), Some("machines"));
        drop(gw);

        // Optional: without a certificate the connection works, but the route refuses.
        let cfg = cfg.replace("crl_files", "mode = \"optional\", crl_files");
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let mut t = Tls::connect(addr, Some("a.test"), &client_config(&all_versions(), None)).unwrap();
        assert_eq!(t.get("/", "").unwrap().status, 403);
        let mut t = Tls::connect(addr, Some("a.test"), &client_config(&all_versions(), Some(&good))).unwrap();
        assert_eq!(t.get("/", "").unwrap().status, 200);
    }

    fn certificates_reload_while_connections_stay_open(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("reload", "", &origin, "");
        let gw = start(&s, &cfg, driver);
        let addr = gw.listener_addr("https");
        let client = client_config(&all_versions(), None);
        let mut open = Tls::connect(addr, Some("a.test"), &client).unwrap();
        assert_eq!(open.get("/", "").unwrap().status, 200);
        assert!(open.served_cert() == s.a.der);

        // New files for a.test, written atomically; the change is noticed within a second.
        let renewed = leaf(&ca("renewed CA"), &["a.test", "127.0.0.1"], "a.test", false, 99);
        s.dir.write("a.key", &renewed.key_pem);
        s.dir.write("a.pem", &renewed.cert_pem);
        eventually("the renewed certificate in service").until(|| {
            let t = Tls::connect(addr, Some("a.test"), &client).unwrap();
            if t.served_cert() == renewed.der {
                Ok(())
            } else {
                Err(format!("not reloaded:\n{}", gw.stderr_text()))
            }
        });
        gw.wait_log("tls certificates reloaded");
        // The connection opened before the reload still works.
        assert_eq!(open.get("/again", "").unwrap().status, 200);

        // A broken file keeps the current certificate in service; SIGHUP retries.
        std::fs::write(s.dir_path.join("a.pem"), "not a certificate").unwrap();
        gw.signal("HUP");
        gw.wait_log("not reloaded");
        let t = Tls::connect(addr, Some("a.test"), &client).unwrap();
        assert!(t.served_cert() == renewed.der);
    }

    fn a_plain_listener_can_redirect_to_https(driver) {
        let origin = Origin::ok("hello");
        let cfg = Config::new()
            .upstream("app", &[origin.addr()])
            .route("path_prefix = \"/\"\nupstream = \"app\"")
            .render()
            .replacen("listen = [\"127.0.0.1:0\"]\n", "", 1)
            + "\n[[listeners]]\naddress = \"127.0.0.1:0\"\nredirect_https_port = 8443\n";
        let gw = Gateway::start(&cfg, driver);
        let r = roundtrip(gw.addr(), b"GET /x/y?q=1 HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n").unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("https://example.com:8443/x/y?q=1"));
        let r = roundtrip(gw.addr(), b"POST /f HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(r.status, 308);
        assert_eq!(origin.requests().len(), 0);
    }
}

#[test]
fn bad_certificates_are_config_errors() {
    let dir = Dir::new("bad");
    let a = leaf(&ca("x"), &["a.test"], "a.test", false, 1);
    let b = leaf(&ca("y"), &["b.test"], "b.test", false, 2);
    dir.write("a.pem", &a.cert_pem);
    dir.write("b.key", &b.key_pem);
    dir.write("junk.pem", "hello");
    let cases = [
        ("missing.pem", "b.key", "cert_file: cannot read"),
        ("junk.pem", "b.key", "cert_file:"),
        ("a.pem", "missing.key", "key_file:"),
        ("a.pem", "b.key", "key_file:"),
    ];
    for (cert, key, want) in cases {
        let cfg = format!(
            "[server]\n[[listeners]]\naddress = \"127.0.0.1:0\"\ntls = {{ certificates = [{{ cert_file = \"{cert}\", key_file = \"{key}\" }}] }}\n"
        );
        let path = dir.write("bad.toml", &cfg);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["check", "-c", &path])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cert} {key}: {err}");
        assert!(
            err.contains(&format!("{path}: listeners[0].tls.certificates[0].{want}")),
            "{cert} {key}: want {want}, got {err}"
        );
    }
}

// ------------------------------------------------------------------ TLS to upstreams

/// A keep-alive HTTPS origin on loopback answering every request with `body`; counts its
/// completed handshakes. With `client_ca`, it requires a client certificate from that CA.
struct TlsOrigin {
    addr: SocketAddr,
    handshakes: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsOrigin {
    fn start(cert: &Leaf, client_ca: Option<&Ca>, body: &'static str) -> TlsOrigin {
        let key: PrivateKeyDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let b = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = match client_ca {
            None => b.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone()).unwrap();
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                b.with_client_cert_verifier(v)
            }
        };
        let config = Arc::new(
            b.with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = handshakes.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                let count = count.clone();
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut s = rustls::StreamOwned::new(conn, sock);
                    let mut counted = false;
                    answer_heads(&mut s, body, |s| {
                        if !counted && !s.conn.is_handshaking() {
                            counted = true;
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    });
                });
            }
        });
        TlsOrigin { addr, handshakes }
    }
}

fn upstream_tls_gateway(dir: &Dir, origin: SocketAddr, tls: &str, driver: Driver) -> Gateway {
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
         [[upstreams]]\nname = \"secure\"\nservers = [\"{origin}\"]\ntls = {{ {tls} }}\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"secure\"\n"
    );
    Gateway::start_in(&cfg, driver, dir.path())
}

fn expired_leaf(ca: &Ca, names: &[&str]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

both_drivers! {
    fn upstream_tls_verifies_the_backend_and_pools_connections(driver) {
        let dir = Dir::new("up-ok");
        let backend_ca = ca("backend CA");
        dir.write("backend-ca.pem", &backend_ca.cert.pem());
        let origin = TlsOrigin::start(&leaf(&backend_ca, &["127.0.0.1", "api.internal"], "api", false, 5), None, "secure hello");
        let gw = upstream_tls_gateway(&dir, origin.addr, "ca_file = \"backend-ca.pem\"", driver);
        let mut r = Reader::new(connect(gw.addr()));
        for _ in 0..3 {
            r.send(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n");
            let resp = r.response().expect("response");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, b"secure hello");
        }
        assert_eq!(origin.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1, "pooled");
        drop(gw);
        // An explicit server name that the certificate holds.
        let gw = upstream_tls_gateway(&dir, origin.addr,
            "ca_file = \"backend-ca.pem\", server_name = \"api.internal\"", driver);
        assert_eq!(get(gw.addr(), "/").status, 200);
        drop(gw);
        // SNI one name, the certificate checked for another.
        let gw = upstream_tls_gateway(&dir, origin.addr,
            "ca_file = \"backend-ca.pem\", server_name = \"front.example\", verify_name = \"api.internal\"", driver);
        assert_eq!(get(gw.addr(), "/").status, 200);
        drop(gw);
        let gw = upstream_tls_gateway(&dir, origin.addr,
            "ca_file = \"backend-ca.pem\", server_name = \"api.internal\", verify_name = \"db.internal\"", driver);
        assert_eq!(get(gw.addr(), "/").status, 502);
    }

    fn protocol_auto_speaks_http1_to_a_server_whose_handshake_picks_no_h2(driver) {
        // The origin offers no ALPN protocol: the first request's handshake offers h2 and
        // http/1.1, gets neither, and the worker remembers the server speaks HTTP/1.1; that
        // request and every later one go over pooled HTTP/1.1 connections.
        let dir = Dir::new("up-auto");
        let backend_ca = ca("backend CA");
        dir.write("backend-ca.pem", &backend_ca.cert.pem());
        let origin = TlsOrigin::start(&leaf(&backend_ca, &["127.0.0.1"], "api", false, 5), None, "auto hello");
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
             [[upstreams]]\nname = \"secure\"\nservers = [\"{}\"]\nprotocol = \"auto\"\n\
             tls = {{ ca_file = \"backend-ca.pem\" }}\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"secure\"\n",
            origin.addr
        );
        let gw = Gateway::start_in(&cfg, driver, dir.path());
        let mut r = Reader::new(connect(gw.addr()));
        for _ in 0..3 {
            r.send(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n");
            let resp = r.response().expect("response");
            assert_eq!(resp.status, 200);
            assert_eq!(resp.body, b"auto hello");
        }
        // One pooled connection carried the three requests (the origin counts connections
        // that carried a request: the probing handshake carried none).
        assert_eq!(origin.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn a_tls_connection_is_never_lent_to_an_upstream_with_other_tls_settings(driver) {
        // Two upstreams on one TLS address, as virtual hosts behind one IP: the
        // certificate holds only the first one's name.
        let dir = Dir::new("up-shared");
        let backend_ca = ca("backend CA");
        dir.write("backend-ca.pem", &backend_ca.cert.pem());
        let origin = TlsOrigin::start(&leaf(&backend_ca, &["api.internal"], "api", false, 10), None, "vhost");
        let o = origin.addr;
        let cfg = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n\
             [[upstreams]]\nname = \"good\"\nservers = [\"{o}\"]\n\
             tls = {{ ca_file = \"backend-ca.pem\", server_name = \"api.internal\" }}\n\n\
             [[upstreams]]\nname = \"other\"\nservers = [\"{o}\"]\n\
             tls = {{ ca_file = \"backend-ca.pem\", server_name = \"other.internal\" }}\n\n\
             [[routes]]\npath_prefix = \"/good\"\nupstream = \"good\"\n\n\
             [[routes]]\npath_prefix = \"/other\"\nupstream = \"other\"\n"
        );
        let gw = Gateway::start_in(&cfg, driver, dir.path());
        let mut c = Reader::new(connect(gw.addr()));
        let mut ask = |path: &str| {
            c.send(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
            c.response().expect("response")
        };
        // Both orders, on one client connection, with a pooled connection waiting.
        for order in [["/good", "/other"], ["/other", "/good"]] {
            for path in order {
                let r = ask(path);
                if path == "/good" {
                    assert_eq!((r.status, &r.body[..]), (200, &b"vhost"[..]), "{order:?}");
                } else {
                    assert_eq!(r.status, 502, "{order:?}: a connection verified for api.internal was lent");
                }
            }
        }
        assert_eq!(ask("/other").status, 502);
        assert_eq!(ask("/good").status, 200);
        // The good upstream's one connection was pooled and reused throughout.
        assert_eq!(origin.handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn upstream_tls_refuses_bad_backends_with_502(driver) {
        let dir = Dir::new("up-bad");
        let backend_ca = ca("backend CA");
        dir.write("backend-ca.pem", &backend_ca.cert.pem());
        let tls = "ca_file = \"backend-ca.pem\"";
        let cases = [
            ("unknown issuer", TlsOrigin::start(&leaf(&ca("rogue CA"), &["127.0.0.1"], "x", false, 6), None, "x"), tls, "UnknownIssuer"),
            ("expired", TlsOrigin::start(&expired_leaf(&backend_ca, &["127.0.0.1"]), None, "x"), tls, "certificate expired"),
            ("wrong name", TlsOrigin::start(&leaf(&backend_ca, &["127.0.0.1"], "x", false, 7), None, "x"),
                "ca_file = \"backend-ca.pem\", server_name = \"other.internal\"", "not valid for name"),
        ];
        for (what, origin, tls, reason) in cases {
            let gw = upstream_tls_gateway(&dir, origin.addr, tls, driver);
            let r = get(gw.addr(), "/");
            assert_eq!(r.status, 502, "{what}");
            // The log is read by another thread, so it can trail the response.
            let line = gw.wait_log("connect failed: tls handshake with");
            assert!(line.contains(reason), "{what}: {line}");
        }
    }

    fn upstream_tls_presents_a_client_certificate(driver) {
        let dir = Dir::new("up-mtls");
        let backend_ca = ca("backend CA");
        let gateway_ca = ca("gateway CA");
        dir.write("backend-ca.pem", &backend_ca.cert.pem());
        let mine = leaf(&gateway_ca, &["gateway.internal"], "gateway", true, 8);
        dir.write("gw.pem", &mine.cert_pem);
        dir.write("gw.key", &mine.key_pem);
        let origin = TlsOrigin::start(&leaf(&backend_ca, &["127.0.0.1"], "api", false, 9), Some(&gateway_ca), "mutual");
        let gw = upstream_tls_gateway(&dir, origin.addr,
            "ca_file = \"backend-ca.pem\", cert_file = \"gw.pem\", key_file = \"gw.key\"", driver);
        let r = get(gw.addr(), "/");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"mutual");
        drop(gw);
        let gw = upstream_tls_gateway(&dir, origin.addr, "ca_file = \"backend-ca.pem\"", driver);
        assert_eq!(get(gw.addr(), "/").status, 502);
    }
}

/// `config/tls.toml` as shipped, with generated files under certs/ and ephemeral ports.
#[test]
fn the_tls_example_checks_and_serves() {
    let dir = Dir::new("example");
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let site_ca = ca("site CA");
    for (name, names) in [
        ("example.com", vec!["example.com", "127.0.0.1"]),
        ("wildcard.example.com", vec!["*.example.com"]),
    ] {
        let l = leaf(&site_ca, &names, name, false, 20);
        dir.write(&format!("certs/{name}.pem"), &l.cert_pem);
        dir.write(&format!("certs/{name}.key"), &l.key_pem);
    }
    let clients = ca("clients CA");
    dir.write("certs/clients-ca.pem", &clients.cert.pem());
    let crl = CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&clients.cert, &clients.key)
    .unwrap();
    dir.write("certs/clients.crl", &crl.pem().unwrap());
    let internal = ca("internal CA");
    dir.write("certs/internal-ca.pem", &internal.cert.pem());
    let client = leaf(&internal, &["gateway.example.com"], "gateway", true, 21);
    dir.write("certs/gateway-client.pem", &client.cert_pem);
    dir.write("certs/gateway-client.key", &client.key_pem);

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/tls.toml")).unwrap();
    let path = dir.write("tls.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "-c", &path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let origin = Origin::ok("site");
    let text = text
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("0.0.0.0:8443", "127.0.0.1:0")
        .replace("0.0.0.0:9443", "127.0.0.1:0")
        .replace("127.0.0.1:9001", &origin.addr().to_string())
        .replace("workers = 2", "workers = 1");
    let gw = Gateway::start_in(&text, Driver::IoUring, dir.path());
    let addr = gw.listener_addr("https");
    let mut t = Tls::connect(
        addr,
        Some("example.com"),
        &client_config(&all_versions(), None),
    )
    .unwrap();
    let r = t.get("/", "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"site");
}

/// The same listener seen by stock clients: `curl` (verifying against the CA) and
/// `openssl s_client` (the certificate SNI picks). CI installs both.
#[test]
fn curl_and_openssl_s_client_see_the_right_certificates() {
    for tool in ["curl", "openssl"] {
        assert!(
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok()
                || std::process::Command::new(tool)
                    .arg("version")
                    .output()
                    .is_ok(),
            "{tool} is not installed (.ci/run installs it)"
        );
    }
    let origin = Origin::ok("hello from origin");
    let dir = Dir::new("curl");
    let site_ca = ca("curl CA");
    dir.write("ca.pem", &site_ca.cert.pem());
    let a = leaf(&site_ca, &["a.test"], "a.test", false, 30);
    let b = leaf(&site_ca, &["*.b.test"], "wild-b", false, 31);
    for (n, l) in [("a", &a), ("b", &b)] {
        dir.write(&format!("{n}.pem"), &l.cert_pem);
        dir.write(&format!("{n}.key"), &l.key_pem);
    }
    let cfg = format!(
        "[server]\nworkers = 1\n[[upstreams]]\nname = \"app\"\nservers = [\"{}\"]\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{{ cert_file = \"a.pem\", key_file = \"a.key\" }}, {{ cert_file = \"b.pem\", key_file = \"b.key\" }}] }}\n",
        origin.addr()
    );
    let gw = Gateway::start_in(&cfg, Driver::IoUring, dir.path());
    let port = gw.listener_addr("https").port();
    let ca_path = dir.path().join("ca.pem");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca_path)
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .arg(format!("https://a.test:{port}/hello"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from origin");

    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "x.b.test", "-CAfile"])
        .arg(&ca_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CN = wild-b") || text.contains("CN=wild-b"),
        "{text}"
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

both_drivers! {
    fn a_websocket_upgrade_tunnels_over_a_tls_listener(driver) {
        let origin = Origin::start(|r| {
            if r.header("upgrade") == Some("websocket") {
                Reply::raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
            } else {
                Reply::ok("plain")
            }
        });
        let (s, cfg) = setup("tunnel", "", &origin, "");
        let gw = start(&s, &cfg, driver);
        let client = client_config(&all_versions(), None);
        let mut t = Tls::connect(gw.listener_addr("https"), Some("a.test"), &client).unwrap();
        let head = "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        t.conn.write_all(format!("{head}early").as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.ends_with(b"\r\n\r\nhello") {
            match t.conn.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                other => panic!("{other:?} after {:?}", String::from_utf8_lossy(&buf)),
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"), "{text}");
        t.conn.write_all(b"ping").unwrap();
        eventually("the client's bytes at the origin").until(|| {
            let got = origin.conn_bytes(0);
            if got.ends_with(b"earlyping") {
                Ok(())
            } else {
                Err(format!("{:?}", String::from_utf8_lossy(&got)))
            }
        });
        let got = origin.conn_bytes(0);
        let end = find(&got, b"\r\n\r\n").map_or(0, |p| p + 4);
        assert_eq!(&got[end..], b"earlyping", "client bytes follow the forwarded head");
    }

    fn access_log_lines_of_tls_connections_say_so(driver) {
        let origin = Origin::ok("hello");
        let (s, cfg) = setup("accesslog", "", &origin, "");
        let log = s.dir_path.join("access.log");
        let cfg = format!("{cfg}\n[access_log]\npath = {:?}\n", log.display().to_string());
        let gw = start(&s, &cfg, driver);
        let client = client_config(&all_versions(), None);
        let mut t = Tls::connect(gw.listener_addr("https"), Some("a.test"), &client).unwrap();
        assert_eq!(t.get("/x", "").unwrap().status, 200);
        let line = eventually("an access log line").until(|| {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let line = text.lines().next()?;
            Some(serde_json::from_str::<serde_json::Value>(line).expect("json line"))
        });
        assert_eq!(line["tls"], true);
        assert_eq!(line["path"], "/x");
        assert_eq!(line["status"], 200);
    }
}
