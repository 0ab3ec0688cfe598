//! Certificates by SNI name, and their reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::resolve;
use crate::config::{ConfigError, TlsConfig};

/// The certificates of one listener: exact names, wildcard suffixes, and the default.
#[derive(Debug)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (".example.com", key) for "*.example.com": matches exactly one more label.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    /// The first certificate; None when unknown names are refused.
    default: Option<Arc<CertifiedKey>>,
    /// The files it came from and their modification times, to notice changes.
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The DNS names in a certificate's subjectAltName (lowercase).
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A verified client certificate's identity: the subject CN, else the first DNS, email
/// or URI subjectAltName. Only printable field-value text is returned.
pub fn client_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let san = || {
        let san = parsed.subject_alternative_name().ok()??;
        san.value.general_names.iter().find_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d)
            | x509_parser::extensions::GeneralName::RFC822Name(d)
            | x509_parser::extensions::GeneralName::URI(d) => Some(d.to_string()),
            _ => None,
        })
    };
    cn.or_else(san)
        .filter(|s| !s.is_empty() && crate::grammar::is_field_value(s.as_bytes()))
}

impl CertSet {
    /// Loads every certificate of `tls`; problems go to `errors` with their field paths.
    pub fn load(
        path: &str,
        tls: &TlsConfig,
        base: &Path,
        errors: &mut Vec<ConfigError>,
    ) -> Option<CertSet> {
        let provider = rustls::crypto::ring::default_provider();
        let mut set = CertSet {
            exact: HashMap::new(),
            wildcard: Vec::new(),
            default: None,
            files: Vec::new(),
        };
        let before = errors.len();
        if tls.certificates.is_empty() {
            errors.push(ConfigError::new(
                format!("{path}.certificates"),
                "at least one certificate is required",
            ));
        }
        for (i, c) in tls.certificates.iter().enumerate() {
            let cp = format!("{path}.certificates[{i}]");
            let cert_file = resolve(base, &c.cert_file);
            let key_file = resolve(base, &c.key_file);
            let chain: Vec<CertificateDer<'static>> =
                match CertificateDer::pem_file_iter(&cert_file).map(|it| it.collect()) {
                    Ok(Ok(chain)) => chain,
                    Ok(Err(e)) => {
                        errors.push(ConfigError::new(
                            format!("{cp}.cert_file"),
                            format!("{}: not a PEM certificate chain: {e}", cert_file.display()),
                        ));
                        continue;
                    }
                    Err(e) => {
                        errors.push(ConfigError::new(
                            format!("{cp}.cert_file"),
                            format!("cannot read {}: {e}", cert_file.display()),
                        ));
                        continue;
                    }
                };
            let Some(leaf) = chain.first().cloned() else {
                errors.push(ConfigError::new(
                    format!("{cp}.cert_file"),
                    format!("{}: no certificate in the file", cert_file.display()),
                ));
                continue;
            };
            if x509_parser::parse_x509_certificate(leaf.as_ref()).is_err() {
                errors.push(ConfigError::new(
                    format!("{cp}.cert_file"),
                    format!("{}: the certificate does not parse", cert_file.display()),
                ));
                continue;
            }
            let key = match PrivateKeyDer::from_pem_file(&key_file) {
                Ok(k) => k,
                Err(e) => {
                    errors.push(ConfigError::new(
                        format!("{cp}.key_file"),
                        format!("{}: no usable private key: {e}", key_file.display()),
                    ));
                    continue;
                }
            };
            let ck = match CertifiedKey::from_der(chain, key, &provider) {
                Ok(ck) => Arc::new(ck),
                Err(e) => {
                    errors.push(ConfigError::new(
                        format!("{cp}.key_file"),
                        format!("{}: {e}", key_file.display()),
                    ));
                    continue;
                }
            };
            let names = match &c.names {
                Some(n) => n.iter().map(|n| n.to_ascii_lowercase()).collect(),
                None => dns_names(&leaf),
            };
            if names.is_empty() && i > 0 {
                errors.push(ConfigError::new(
                    format!("{cp}.names"),
                    "the certificate has no DNS names: list the SNI names it answers",
                ));
            }
            for n in names {
                match n.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') => {
                        set.wildcard.push((suffix.to_string(), ck.clone()));
                    }
                    _ => {
                        set.exact.entry(n).or_insert_with(|| ck.clone());
                    }
                }
            }
            if i == 0 && tls.unknown_sni != "refuse" {
                set.default = Some(ck.clone());
            }
            set.files.push((cert_file.clone(), mtime(&cert_file)));
            set.files.push((key_file.clone(), mtime(&key_file)));
        }
        // Longest suffixes first: "*.b.example.com" before "*.example.com".
        set.wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        (errors.len() == before).then_some(set)
    }

    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        for (suffix, k) in &self.wildcard {
            if let Some(label) = name.strip_suffix(suffix.as_str()) {
                if !label.is_empty() && !label.contains('.') {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }

    fn changed(&self) -> bool {
        self.files.iter().any(|(p, t)| mtime(p) != *t)
    }
}

/// Picks a certificate per handshake; `reload` swaps the whole set at once.
#[derive(Debug)]
pub struct SniResolver {
    current: RwLock<Arc<CertSet>>,
    path: String,
    tls: TlsConfig,
    base: PathBuf,
}

impl SniResolver {
    pub fn new(set: CertSet, path: String, tls: TlsConfig, base: &Path) -> SniResolver {
        SniResolver {
            current: RwLock::new(Arc::new(set)),
            path,
            tls,
            base: base.to_path_buf(),
        }
    }

    fn set(&self) -> Option<Arc<CertSet>> {
        self.current.read().ok().map(|s| s.clone())
    }

    /// True if a certificate or key file changed since it was loaded.
    pub fn files_changed(&self) -> bool {
        self.set().is_some_and(|s| s.changed())
    }

    /// Loads the files again. On any error the old set stays and the errors are returned.
    pub fn reload(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let Some(set) = CertSet::load(&self.path, &self.tls, &self.base, &mut errors) else {
            // A half-written file: keep serving the old certificates; retry on the next
            // change (the modification times are refreshed so the same state is not
            // reported every second).
            if let Ok(mut cur) = self.current.write() {
                let files = cur
                    .files
                    .iter()
                    .map(|(p, _)| (p.clone(), mtime(p)))
                    .collect();
                let refreshed = CertSet {
                    exact: cur.exact.clone(),
                    wildcard: cur.wildcard.clone(),
                    default: cur.default.clone(),
                    files,
                };
                *cur = Arc::new(refreshed);
            }
            return Err(errors);
        };
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(set);
        }
        Ok(())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.set()?.pick(hello.server_name())
    }
}
