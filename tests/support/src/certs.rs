//! Test certificates.

use std::path::Path;

use rcgen::{CertificateParams, KeyPair};

/// Writes a self-signed certificate for `localhost` and its key into `dir`, as `cert.pem`
/// and `key.pem` (what a TLS listener's `cert_file` and `key_file` then name).
pub fn write_self_signed(dir: &Path) {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
}
