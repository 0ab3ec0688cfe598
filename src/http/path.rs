//! Request-target normalisation: the one path that routing, access rules and forwarding all
//! use (DESIGN.md §3). origin-form and absolute-form are accepted; asterisk-form and
//! authority-form are rejected here (CONNECT / OPTIONS * are not supported yet).

use super::ParseError;

/// What `normalize` found besides the path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetParts {
    /// Offsets of the query (including '?') within the target, if any.
    pub query: Option<(usize, usize)>,
    /// Offsets of the authority within the target for absolute-form (`http://host:port/p`).
    pub authority: Option<(usize, usize)>,
}

/// Normalises `target` into `out` (cleared first):
/// - target bytes must be RFC 3986 characters (unreserved / reserved / '%' HEXDIG HEXDIG);
///   anything else, a fragment ('#'), or a bad percent-escape is `ParseError::Bad`;
/// - absolute-form `http://authority/path?q` (scheme case-insensitive, http or https) is
///   reduced to its path; the authority offsets are returned for the caller to check against
///   Host; an empty path becomes "/";
/// - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded; every other
///   escape is kept with its hex digits uppercased, so `%2F` never becomes a '/';
/// - runs of '/' are merged into one;
/// - dot-segments ("." and "..", also when they came from `%2E`) are removed per RFC 3986
///   §5.2.4; ".." above the root stays at the root;
/// - the query is not part of `out`; it is returned as offsets, untouched.
pub fn normalize(target: &[u8], out: &mut Vec<u8>) -> Result<TargetParts, ParseError> {
    todo!()
}
