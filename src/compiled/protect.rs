//! The compiled `[protect]` section and `routes[i].hsts`: the `Server` value, the fields
//! removed from upstream responses, error pages (files read here, once), whether upstream
//! 5xx bodies are replaced, and the log redactor. Lookups allocate nothing.

use std::path::Path;

use bytes::Bytes;

use crate::config::{parse_error_status, ConfigError, GatewayConfig, HstsConfig};
use crate::redact::Redactor;

/// One configured error page.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub body: Bytes,
    pub content_type: Bytes,
}

#[derive(Debug, Default)]
pub struct Protect {
    /// `Server` value on every response; None = no `Server` field.
    pub server: Option<Bytes>,
    /// Lowercase names removed from every upstream response (besides `Server`).
    remove: Vec<Bytes>,
    /// Sorted by status.
    error_pages: Vec<(u16, ErrorPage)>,
    /// An upstream 5xx is answered with ringway's own page.
    pub replace_upstream_5xx: bool,
    /// What logs may show of a request.
    pub redactor: Redactor,
}

impl Protect {
    /// Builds `[protect]`; an unreadable error page file is an error naming its field.
    pub fn build(cfg: &GatewayConfig, base_dir: &Path, errors: &mut Vec<ConfigError>) -> Protect {
        let p = &cfg.protect;
        let mut error_pages = Vec::new();
        for (key, page) in &p.error_pages {
            let Ok(status) = parse_error_status(key) else {
                continue; // reported by validate()
            };
            let body = match (&page.body, &page.file) {
                (Some(b), None) => Bytes::from(b.clone()),
                (None, Some(f)) => {
                    let path = base_dir.join(f);
                    match std::fs::read(&path) {
                        Ok(b) => Bytes::from(b),
                        Err(e) => {
                            errors.push(ConfigError::new(
                                format!("protect.error_pages.{key}.file"),
                                format!("cannot read {}: {e}", path.display()),
                            ));
                            continue;
                        }
                    }
                }
                _ => continue, // reported by validate()
            };
            let content_type = Bytes::from(page.content_type.clone());
            error_pages.push((status, ErrorPage { body, content_type }));
        }
        error_pages.sort_by_key(|(s, _)| *s);
        let auth = &cfg.auth;
        let credentials = [
            auth.api_key.as_ref().map(|k| k.header.as_str()),
            auth.jwt.as_ref().map(|j| j.header.as_str()),
        ];
        Protect {
            server: (!p.server_header.is_empty()).then(|| Bytes::from(p.server_header.clone())),
            remove: p
                .remove_response_headers
                .iter()
                .map(|n| Bytes::from(n.to_ascii_lowercase()))
                .collect(),
            error_pages,
            replace_upstream_5xx: p.replace_upstream_5xx,
            redactor: Redactor::new(
                credentials
                    .into_iter()
                    .flatten()
                    .chain(p.redact_headers.iter().map(String::as_str)),
            ),
        }
    }

    /// The configured page for `status`, if any.
    pub fn error_page(&self, status: u16) -> Option<&ErrorPage> {
        self.error_pages
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, p)| p)
    }

    /// True when an upstream response field must not reach the client (`Server` included:
    /// ringway writes its own).
    pub fn hides(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(b"server")
            || self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

/// The `Strict-Transport-Security` value for `h`, e.g. `max-age=31536000; includeSubDomains`.
pub fn hsts_value(h: &HstsConfig) -> Bytes {
    let mut v = format!("max-age={}", h.max_age.0.as_secs());
    if h.include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if h.preload {
        v.push_str("; preload");
    }
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::hsts_value;
    use crate::config::{Duration, HstsConfig};

    fn hsts(secs: u64, include_subdomains: bool, preload: bool) -> String {
        let h = HstsConfig {
            max_age: Duration(std::time::Duration::from_secs(secs)),
            include_subdomains,
            preload,
        };
        String::from_utf8_lossy(&hsts_value(&h)).into_owned()
    }

    #[test]
    fn hsts_values_are_formatted_per_rfc_6797() {
        assert_eq!(
            hsts(31_536_000, true, false),
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(hsts(600, false, false), "max-age=600");
        assert_eq!(
            hsts(63_072_000, true, true),
            "max-age=63072000; includeSubDomains; preload"
        );
        assert_eq!(hsts(1, false, true), "max-age=1; preload");
    }
}
