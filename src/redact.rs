//! What ringway's logs may show of a request. Every log line that shows field values or a
//! request target goes through here: values of secret fields print as `REDACTED`, query
//! values always do. Nothing here allocates unless a line is actually formatted, so callers
//! keep these behind `log::debug!` and friends.
//!
//! Where it sits: a leaf (it imports nothing of the crate).

use std::fmt;

/// Printed instead of a secret.
pub const REDACTED: &str = "REDACTED";

/// Fields whose values are never logged, whatever the config says.
pub const BUILT_IN: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// The field names whose values are never logged (lowercase): the built-in ones, the
/// credential fields of `[auth]` and `protect.redact_headers`.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<Vec<u8>>,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(std::iter::empty::<&str>())
    }
}

impl Redactor {
    /// The built-in names plus `extra` (any case; empty names are ignored).
    pub fn new<'a>(extra: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut names: Vec<Vec<u8>> = BUILT_IN.iter().map(|n| n.as_bytes().to_vec()).collect();
        for n in extra {
            let lower = n.to_ascii_lowercase().into_bytes();
            if !lower.is_empty() && !names.contains(&lower) {
                names.push(lower);
            }
        }
        Redactor { names }
    }

    /// True when the value of field `name` (any case) must not be logged.
    pub fn is_secret(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// `name: value; name: value` for logs, secret values as `REDACTED`.
    pub fn fields<'a, I>(&'a self, fields: I) -> Fields<'a, I>
    where
        I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    {
        Fields {
            redactor: self,
            fields,
        }
    }
}

/// See `Redactor::fields`.
pub struct Fields<'a, I> {
    redactor: &'a Redactor,
    fields: I,
}

impl<'a, I> fmt::Display for Fields<'a, I>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.fields.clone().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: ", String::from_utf8_lossy(name))?;
            if self.redactor.is_secret(name) {
                f.write_str(REDACTED)?;
            } else {
                write!(f, "{}", String::from_utf8_lossy(value))?;
            }
        }
        Ok(())
    }
}

/// A request target for logs: the path, then the query with every value (and every
/// parameter without a value) replaced by `REDACTED`. `query` is "?a=b&c" or empty.
pub fn target<'a>(path: &'a [u8], query: &'a [u8]) -> Target<'a> {
    Target { path, query }
}

/// See `target`.
pub struct Target<'a> {
    path: &'a [u8],
    query: &'a [u8],
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.path))?;
        let query = self.query.strip_prefix(b"?").unwrap_or(self.query);
        if self.query.is_empty() {
            return Ok(());
        }
        for (i, pair) in query.split(|&b| b == b'&').enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            match pair.iter().position(|&b| b == b'=') {
                Some(eq) => write!(f, "{}={REDACTED}", String::from_utf8_lossy(&pair[..eq]))?,
                None if pair.is_empty() => {}
                None => f.write_str(REDACTED)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(r: &Redactor, fields: &[(&'static str, &'static str)]) -> String {
        r.fields(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
            .to_string()
    }

    #[test]
    fn built_in_secret_fields_are_redacted_in_any_case() {
        let r = Redactor::default();
        let out = show(
            &r,
            &[
                ("AUTHORIZATION", "Bearer t0k"),
                ("Proxy-Authorization", "Basic eA=="),
                ("cookie", "s=1"),
                ("Set-Cookie", "s=2"),
                ("Accept", "text/plain"),
            ],
        );
        assert_eq!(
            out,
            "AUTHORIZATION: REDACTED; Proxy-Authorization: REDACTED; cookie: REDACTED; \
             Set-Cookie: REDACTED; Accept: text/plain"
        );
    }

    #[test]
    fn configured_names_are_redacted_too() {
        let r = Redactor::new(["X-Api-Key", "x-internal-token", ""]);
        assert!(r.is_secret(b"x-api-key"));
        assert!(r.is_secret(b"X-INTERNAL-TOKEN"));
        assert!(!r.is_secret(b"x-request-id"));
        assert!(!r.is_secret(b""));
        assert_eq!(
            show(&r, &[("X-Api-Key", "k"), ("X-Request-Id", "7")]),
            "X-Api-Key: REDACTED; X-Request-Id: 7"
        );
    }

    #[test]
    fn query_values_never_reach_a_logged_target() {
        let t = |p: &'static str, q: &'static str| target(p.as_bytes(), q.as_bytes()).to_string();
        assert_eq!(t("/a", ""), "/a");
        assert_eq!(t("/a", "?"), "/a?");
        assert_eq!(
            t("/a", "?api_key=s3cret&x=1"),
            "/a?api_key=REDACTED&x=REDACTED"
        );
        assert_eq!(t("/a", "?lonetoken&&b="), "/a?REDACTED&&b=REDACTED");
    }
}
