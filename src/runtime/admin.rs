//! The admin listener (`[admin]`, off by default): `/healthz`, `/ready`, `/metrics`
//! (Prometheus text), `/config` (the active config's version and hash, secrets redacted).
//! One plain thread with blocking sockets, apart from the workers: a scrape asks each
//! worker for its counters through its control channel.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::control::Workers;
use crate::metrics::{render, Process};

/// What the admin endpoints report about the running process.
#[derive(Default)]
pub struct State {
    pub process: Process,
    /// SHA-256 (hex) of the active config file's bytes.
    pub config_sha256: String,
    /// The active config file with secret values replaced.
    pub config_redacted: String,
    pub file: String,
    pub draining: bool,
}

pub type Shared = Arc<Mutex<State>>;

/// Starts the admin thread on an already bound listener.
pub fn start(listener: TcpListener, workers: Workers, state: Shared) -> std::io::Result<()> {
    thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => serve(c, &workers, &state),
                    Err(e) => log::warn!("admin accept: {e}"),
                }
            }
        })
        .map(|_| ())
}

fn serve(mut c: TcpStream, workers: &Workers, state: &Shared) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        match c.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    }
    let line = buf[..len].split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = if method != b"GET" && method != b"HEAD" {
        (405, "text/plain", "method not allowed\n".to_string())
    } else {
        match path {
            b"/healthz" => (200, "text/plain", "ok\n".to_string()),
            b"/ready" => {
                let draining = state.lock().map(|s| s.draining).unwrap_or(true);
                if draining {
                    (503, "text/plain", "draining\n".to_string())
                } else {
                    (200, "text/plain", "ready\n".to_string())
                }
            }
            b"/metrics" => {
                let (sum, missing) = workers.snapshot(Duration::from_secs(1));
                let mut process = state.lock().map(|s| s.process.clone()).unwrap_or_default();
                process.resident_bytes = crate::sys::resident_bytes().unwrap_or(0);
                let mut text = render(&sum, &process);
                text.push_str(&format!(
                    "# HELP ringway_scrape_missing_workers Workers that did not answer this scrape.\n\
                     # TYPE ringway_scrape_missing_workers gauge\nringway_scrape_missing_workers {missing}\n"
                ));
                (200, "text/plain; version=0.0.4", text)
            }
            b"/config" => {
                let s = state.lock();
                let body = match s {
                    Ok(s) => format!(
                        "{{\"version\":{},\"sha256\":\"{}\",\"file\":{},\"config\":{}}}\n",
                        s.process.config_version,
                        s.config_sha256,
                        json_string(&s.file),
                        json_string(&s.config_redacted)
                    ),
                    Err(_) => "{}\n".to_string(),
                };
                (200, "application/json", body)
            }
            _ => (404, "text/plain", "not found\n".to_string()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::http::canned::reason(status),
        body.len()
    );
    let _ = c.write_all(head.as_bytes());
    if method != b"HEAD" {
        let _ = c.write_all(body.as_bytes());
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config text with secret values replaced by "REDACTED": values of keys named like
/// secrets (`secret`, `api_keys`, `users`, `password`, `token`) and any line holding a
/// key hash (`sha256:`) or a password hash (`$2a$`/`$2b$`/`$2y$`/`$argon2`).
pub fn redact_config(text: &str) -> String {
    const KEYS: [&str; 5] = ["secret", "api_keys", "users", "password", "token"];
    const MARKS: [&str; 5] = ["sha256:", "$2a$", "$2b$", "$2y$", "$argon2"];
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or_default();
        let secret_key = code
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_ascii_lowercase())
            .is_some_and(|k| KEYS.iter().any(|s| k.contains(s)))
            || KEYS
                .iter()
                .any(|k| code.contains(&format!("{k} =")) || code.contains(&format!("{k}=")));
        if secret_key || MARKS.iter().any(|m| code.contains(m)) {
            let key = code.split_once('=').map_or("", |(k, _)| k.trim_end());
            if key.is_empty() {
                out.push_str("  REDACTED");
            } else {
                out.push_str(key);
                out.push_str(" = REDACTED");
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_the_config_text() {
        let text = "[auth.jwt]\nkeys = [{ alg = \"HS256\", secret = \"s3cr3t\" }]\n\
                    users = [\n  \"carol:$2b$10$abc\",\n]\napi_keys = [\"sha256:00ff\"]\nlisten = [\"x\"]\n";
        let r = redact_config(text);
        for s in ["s3cr3t", "$2b$10$abc", "sha256:00ff"] {
            assert!(!r.contains(s), "{s} leaked:\n{r}");
        }
        assert!(r.contains("listen = [\"x\"]"));
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
