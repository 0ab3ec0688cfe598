//! Tests for `policy::identity`: helpers here, one file per method, one for config errors.

mod api_key;
mod basic;
mod config_errors;
mod jwt;
mod jwt_keys;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;
use sha2::{Digest, Sha256};

use super::{AuthOutcome, Authenticators, Identity};
use crate::config::{ConfigError, GatewayConfig};
use crate::http::{parse_request, Limits, RequestHead};

/// The "current time" every test passes in.
pub(super) const NOW: u64 = 1_700_000_000;

/// A directory removed when dropped.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ringway-identity-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    pub(super) fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        std::fs::write(self.0.join(name), contents).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn config(rest: &str) -> GatewayConfig {
    let text = format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{rest}");
    toml::from_str(&text).unwrap()
}

pub(super) fn build_in(dir: &Path, rest: &str) -> (Authenticators, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let a = Authenticators::build(&config(rest), dir, &mut errors);
    (a, errors)
}

/// Builds and asserts the config had no errors.
pub(super) fn build_ok_in(dir: &Path, rest: &str) -> Authenticators {
    let (a, errors) = build_in(dir, rest);
    assert!(errors.is_empty(), "unexpected config errors: {errors:?}");
    a
}

pub(super) fn build_ok(rest: &str) -> Authenticators {
    build_ok_in(Path::new("/nonexistent"), rest)
}

pub(super) fn errors_in(dir: &Path, rest: &str) -> Vec<ConfigError> {
    build_in(dir, rest).1
}

/// A GET for `target` with these extra fields.
pub(super) fn request(target: &str, fields: &[(&str, &str)]) -> RequestHead {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: example.test\r\n");
    for (n, v) in fields {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    request_bytes(raw.as_bytes())
}

pub(super) fn request_bytes(raw: &[u8]) -> RequestHead {
    let mut buf = BytesMut::from(raw);
    let mut head = RequestHead::default();
    let limits = Limits {
        max_header_bytes: 64 * 1024,
        ..Limits::default()
    };
    assert!(parse_request(&mut buf, &limits, &mut head).unwrap());
    head
}

pub(super) fn expect_ok(out: AuthOutcome) -> Rc<Identity> {
    match out {
        AuthOutcome::Ok(id) => id,
        other => panic!("expected Ok, got {other:?}"),
    }
}

pub(super) fn is_invalid(out: &AuthOutcome) -> bool {
    matches!(out, AuthOutcome::Invalid(_))
}

pub(super) fn sha256_ref(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub(super) fn group_names(a: &Authenticators, id: &Identity) -> Vec<String> {
    id.groups
        .iter()
        .map(|&g| a.directory.group_name(g).to_string())
        .collect()
}
