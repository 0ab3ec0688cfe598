//! Glob patterns as the config writes them (`rules.paths.deny = ["/admin/**"]`, header and
//! query value globs), compiled once: a glob runs as a bit-parallel NFA over a u128 of
//! states, so matching is linear in the input, allocation-free and never backtracks. In
//! path globs `*` and `?` stop at '/' and `**` crosses it; in value globs `*` matches
//! anything.

/// Longest glob accepted (tokens; one bit each in a u128 with the accept state).
pub const MAX_GLOB: usize = 127;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(u8),
    /// `?`: one byte (not '/' in path globs).
    One,
    /// `*`: any run of bytes (without '/' in path globs).
    Star,
    /// `**`: any run of bytes, '/' included.
    Any,
}

/// A compiled glob. In path globs `*` and `?` stop at '/', `**` crosses it; in value globs
/// `*` matches anything.
#[derive(Clone, Debug)]
pub struct Glob {
    toks: Vec<Tok>,
    /// Lowercased literals, matched against lowercased input bytes.
    fold: bool,
    path: bool,
}

impl Glob {
    pub fn new(pattern: &str, case_sensitive: bool, path: bool) -> Result<Glob, String> {
        let b = pattern.as_bytes();
        let mut toks = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let t = match b[i] {
                b'*' if b.get(i + 1) == Some(&b'*') => {
                    i += 1;
                    Tok::Any
                }
                b'*' if path => Tok::Star,
                b'*' => Tok::Any,
                b'?' => Tok::One,
                c if case_sensitive => Tok::Lit(c),
                c => Tok::Lit(c.to_ascii_lowercase()),
            };
            // "***" and "**" runs collapse: a star after a star adds nothing.
            let redundant = matches!((toks.last(), t), (Some(Tok::Any), Tok::Any | Tok::Star));
            if !redundant {
                toks.push(t);
            }
            i += 1;
        }
        if toks.len() > MAX_GLOB {
            return Err(format!(
                "{pattern:?} is too long: at most {MAX_GLOB} characters"
            ));
        }
        Ok(Glob {
            toks,
            fold: !case_sensitive,
            path,
        })
    }

    pub fn is_match(&self, s: &[u8]) -> bool {
        let n = self.toks.len();
        let accept = 1u128 << n;
        let mut states = self.closure(1);
        for &c in s {
            let c = if self.fold { c.to_ascii_lowercase() } else { c };
            let mut next = 0u128;
            let mut live = states & (accept - 1);
            while live != 0 {
                let i = live.trailing_zeros() as usize;
                live &= live - 1;
                let stop = self.path && c == b'/';
                match self.toks[i] {
                    Tok::Lit(l) if l == c => next |= 1 << (i + 1),
                    Tok::One if !stop => next |= 1 << (i + 1),
                    Tok::Star if !stop => next |= 1 << i,
                    Tok::Any => next |= 1 << i,
                    _ => {}
                }
            }
            if next == 0 {
                return false;
            }
            states = self.closure(next);
        }
        states & accept != 0
    }

    /// Adds the states reachable by letting stars match nothing.
    fn closure(&self, mut s: u128) -> u128 {
        for (i, t) in self.toks.iter().enumerate() {
            if s & (1 << i) != 0 && matches!(t, Tok::Star | Tok::Any) {
                s |= 1 << (i + 1);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str, path: bool) -> Glob {
        Glob::new(p, false, path).unwrap()
    }

    #[test]
    fn path_globs_keep_single_stars_within_a_segment() {
        assert!(g("/admin/*", true).is_match(b"/admin/users"));
        assert!(!g("/admin/*", true).is_match(b"/admin/users/1"));
        assert!(g("/admin/**", true).is_match(b"/admin/users/1"));
        assert!(g("**/*.php", true).is_match(b"/a/b/c.php"));
        assert!(g("**.php", true).is_match(b"/x.php"));
        assert!(!g("/*.php", true).is_match(b"/a/x.php"));
        assert!(g("/a?c", true).is_match(b"/abc"));
        assert!(!g("/a?c", true).is_match(b"/a/c"));
        assert!(g("/ADMIN/*", true).is_match(b"/admin/x"));
        assert!(!Glob::new("/ADMIN/*", true, true)
            .unwrap()
            .is_match(b"/admin/x"));
    }

    #[test]
    fn value_globs_match_anything_with_stars() {
        assert!(g("*sqlmap*", false).is_match(b"Mozilla sqlmap/1.7 (https://x/y)"));
        assert!(g("*SQLMAP*", false).is_match(b"sqlmap/1.7"));
        assert!(!g("*sqlmap*", false).is_match(b"curl/8"));
        assert!(g("", false).is_match(b""));
        assert!(!g("", false).is_match(b"x"));
        assert!(g("*", false).is_match(b""));
        assert!(g("a*b*c", false).is_match(b"a/x/b/y/c"));
        // Many stars over a long input stay linear (no backtracking blow-up).
        let p = "*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!g(p, false).is_match(&[b'a'; 5000]));
        assert!(Glob::new(&"x".repeat(200), true, false).is_err());
    }
}
