//! `ringway config --defaults`: the complete default configuration as TOML, every section
//! and every field. It is computed, never written by hand: a small skeleton (the required
//! fields, one example entry per list, every optional table) is deserialised like a user's
//! file, so serde fills in every default from `defaults.rs`; the result is serialised and
//! rendered as TOML, an unset `Option` as a comment line. The output parses back with
//! `config::from_str`, and `tests/config_reference.rs` checks docs/configuration.md
//! against it. Nothing here is used at run time.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::{ConfigErrors, GatewayConfig};

/// Why the skeleton sets a field, and so what its line in the output says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The table must be there; nothing to mark.
    Present,
    /// The field has no default; the value shown is an example.
    Required,
    /// Absent (or different) by default; shown so that the example is valid and its
    /// fields appear. The line gives the real default.
    Example,
}

use Why::{Example, Present, Required};

/// What the skeleton sets. A path is dotted field names; `name[]` is the one entry of a
/// list, `"key"` the one entry of a map. Every value here is an example, never a default.
const SKELETON: &[(&str, &str, Why)] = &[
    ("server", "{}", Present),
    ("upstreams[]", "{}", Example),
    ("upstreams[].name", "\"app\"", Required),
    ("upstreams[].servers[]", "{}", Required),
    (
        "upstreams[].servers[].address",
        "\"127.0.0.1:9001\"",
        Required,
    ),
    ("upstreams[].tls", "{}", Example),
    ("upstreams[].health_check", "{}", Example),
    ("upstreams[].outlier", "{}", Example),
    ("routes[]", "{}", Example),
    ("routes[].path_prefix", "\"/\"", Example),
    ("routes[].headers[]", "{}", Example),
    ("routes[].headers[].name", "\"X-Canary\"", Required),
    ("routes[].respond", "{}", Example),
    ("routes[].respond.status", "200", Required),
    ("routes[].access", "{}", Example),
    ("routes[].hsts", "{}", Example),
    ("auth.api_key", "{}", Example),
    ("auth.jwt", "{}", Example),
    ("auth.jwt.keys[]", "{}", Example),
    ("auth.jwt.keys[].alg", "\"HS256\"", Required),
    ("auth.basic", "{}", Example),
    ("consumers[]", "{}", Example),
    ("consumers[].name", "\"alice\"", Required),
    ("rules.deny_paths[]", "{}", Example),
    ("rules.deny_paths[].prefix", "\"/internal\"", Example),
    ("rules.headers[]", "{}", Example),
    ("rules.headers[].name", "\"User-Agent\"", Required),
    ("rules.headers[].deny", "[\"*sqlmap*\"]", Example),
    ("rules.query[]", "{}", Example),
    ("rules.query[].name", "\"debug\"", Required),
    ("rules.query[].forbidden", "true", Example),
    ("rules.rate_limits[]", "{}", Example),
    ("rules.rate_limits[].rate", "\"100/s\"", Required),
    ("listeners[]", "{}", Example),
    ("listeners[].address", "\"0.0.0.0:8443\"", Required),
    ("listeners[].tls", "{}", Example),
    ("listeners[].tls.certificates[]", "{}", Required),
    (
        "listeners[].tls.certificates[].cert_file",
        "\"certs/example.com.pem\"",
        Required,
    ),
    (
        "listeners[].tls.certificates[].key_file",
        "\"certs/example.com.key\"",
        Required,
    ),
    ("listeners[].tls.client_auth", "{}", Example),
    (
        "listeners[].tls.client_auth.ca_file",
        "\"certs/clients-ca.pem\"",
        Required,
    ),
    ("admin", "{}", Example),
    ("protect.error_pages.\"502\"", "{}", Example),
    (
        "protect.error_pages.\"502\".body",
        "\"bad gateway\\n\"",
        Example,
    ),
    ("redis", "{}", Example),
    ("redis.address", "\"127.0.0.1:6379\"", Required),
    ("access_log", "{}", Example),
    (
        "access_log.path",
        "\"/var/log/ringway/access.log\"",
        Required,
    ),
];

const HEADER: &str = "\
# The complete default configuration of ringway (`ringway config --defaults`).
# `key = value` is the default. `# key = (none)`: unset by default.
# `# (required)`: no default; the value shown is an example.
# `# (example; default: X)`: absent or X by default, shown so that its fields appear.
# Every field is described in docs/configuration.md.
";

/// Where the skeleton's values come from in error messages.
const SOURCE: &str = "(built-in defaults)";

/// The complete default configuration as TOML text (see the module doc).
pub fn default_config_toml() -> Result<String, ConfigErrors> {
    let skeleton = skeleton(None)?;
    let shown = to_node(&skeleton)?;
    let mut marks = HashMap::new();
    for &(path, _, why) in SKELETON {
        let mark = match why {
            Present => continue,
            Required => "(required)".to_string(),
            Example => format!("(example; default: {})", default_of(path)?),
        };
        marks.insert(path.to_string(), mark);
    }
    let Node::Map(fields) = shown else {
        return Err(fail("", "the configuration is not a table"));
    };
    let mut r = Render {
        out: HEADER.to_string(),
        marks,
    };
    r.table("", "", false, &fields);
    Ok(r.out)
}

fn fail(path: &str, reason: impl Into<String>) -> ConfigErrors {
    ConfigErrors::one(SOURCE, path, reason)
}

/// One path segment of a skeleton path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Field(&'a str),
    /// `name[]`: the list's one entry.
    Entry(&'a str),
    /// `"key"`: the map's one entry.
    Key(&'a str),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    path.split('.')
        .map(|s| {
            if let Some(name) = s.strip_suffix("[]") {
                Seg::Entry(name)
            } else if let Some(key) = s.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Seg::Key(key)
            } else {
                Seg::Field(s)
            }
        })
        .collect()
}

/// The skeleton, deserialised (serde fills in every default), without `leave_out`.
fn skeleton(leave_out: Option<&str>) -> Result<GatewayConfig, ConfigErrors> {
    let mut root = toml::Table::new();
    for &(path, literal, _) in SKELETON {
        if leave_out.is_some_and(|l| path == l || path.starts_with(&format!("{l}."))) {
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {literal}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| fail(path, format!("{literal} is not a TOML value")))?;
        insert(&mut root, &segments(path), value).ok_or_else(|| fail(path, "cannot be set"))?;
    }
    GatewayConfig::deserialize(toml::Value::Table(root)).map_err(|e| fail("", e.to_string()))
}

/// Sets `value` at `path` in `table`, making the tables and one-entry lists on the way.
fn insert(table: &mut toml::Table, path: &[Seg<'_>], value: toml::Value) -> Option<()> {
    let (first, rest) = path.split_first()?;
    let slot = match *first {
        Seg::Field(name) | Seg::Key(name) if rest.is_empty() => {
            table.insert(name.to_string(), value);
            return Some(());
        }
        Seg::Field(name) | Seg::Key(name) => table
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        Seg::Entry(name) => {
            let list = table
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Array(vec![toml::Table::new().into()]));
            list.as_array_mut()?.first_mut()?
        }
    };
    match slot {
        toml::Value::Table(t) if rest.is_empty() => {
            if let toml::Value::Table(v) = value {
                t.extend(v);
            }
            Some(())
        }
        toml::Value::Table(t) => insert(t, rest, value),
        _ => None,
    }
}

/// The default of the field an `Example` path sets: the skeleton without it, read back.
/// For `name[]` that is the list `name`, for `"key"` the map it is in.
fn default_of(path: &str) -> Result<String, ConfigErrors> {
    let cfg = skeleton(Some(path))?;
    let node = to_node(&cfg)?;
    let mut segs = segments(path);
    match segs.pop() {
        Some(Seg::Entry(name) | Seg::Field(name)) => segs.push(Seg::Field(name)),
        Some(Seg::Key(_)) | None => {}
    }
    let mut at = &node;
    for seg in segs {
        at = match (seg, at) {
            (Seg::Field(n) | Seg::Key(n), Node::Map(fields)) => {
                fields.iter().find(|(k, _)| k == n).map(|(_, v)| v)
            }
            (Seg::Entry(n), Node::Map(fields)) => match fields.iter().find(|(k, _)| k == n) {
                Some((_, Node::Seq(items))) => items.first(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| fail(path, "not found in the default configuration"))?;
    }
    Ok(match at {
        Node::Null => "none".to_string(),
        other => literal(other).ok_or_else(|| fail(path, "has no TOML literal"))?,
    })
}

/// A serialised value with its fields in declaration order (a `serde_json::Value` sorts
/// them) and `None` kept as `Null`.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn to_node(cfg: &GatewayConfig) -> Result<Node, ConfigErrors> {
    serde_json::to_string(cfg)
        .and_then(|json| serde_json::from_str(&json))
        .map_err(|e| fail("", e.to_string()))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry::<String, Node>()? {
            fields.push(entry);
        }
        Ok(Node::Map(fields))
    }
}

/// A value written on one line: a scalar, a list of scalars, an empty table.
fn literal(node: &Node) -> Option<String> {
    Some(match node {
        Node::Bool(b) => b.to_string(),
        Node::Int(n) => n.to_string(),
        Node::UInt(n) => n.to_string(),
        Node::Float(x) => toml::Value::Float(*x).to_string(),
        Node::Str(s) => quote(s),
        Node::Seq(items) => {
            let items: Option<Vec<String>> = items.iter().map(literal).collect();
            format!("[{}]", items?.join(", "))
        }
        Node::Map(fields) if fields.is_empty() => "{}".to_string(),
        Node::Map(_) | Node::Null => return None,
    })
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn toml_key(key: &str, force_quotes: bool) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare && !force_quotes {
        key.to_string()
    } else {
        quote(key)
    }
}

/// `s` as a one-line TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Render {
    out: String,
    /// Skeleton path -> the comment its line carries.
    marks: HashMap<String, String>,
}

impl Render {
    /// Writes one table: its header (`[header]`, or `[[header]]` for a list entry), its
    /// one-line fields, then its sub-tables and lists of tables. `path` is the table's
    /// skeleton path, which the marks are keyed by.
    fn table(&mut self, path: &str, header: &str, entry: bool, fields: &[(String, Node)]) {
        let mut lines = Vec::new();
        let mut nested = Vec::new();
        for (key, value) in fields {
            let child = self.child_path(path, key);
            let mark = self.marks.get(&child).map(|m| format!("  # {m}"));
            match (value, literal(value)) {
                (Node::Null, _) => lines.push(format!("# {} = (none)", toml_key(key, false))),
                (_, Some(lit)) => lines.push(format!(
                    "{} = {lit}{}",
                    toml_key(key, false),
                    mark.unwrap_or_default()
                )),
                (_, None) => nested.push((key, value, child)),
            }
        }
        let mark = self.marks.get(path).map(|m| format!("  # {m}"));
        if !header.is_empty() && (entry || !lines.is_empty() || mark.is_some()) {
            let (open, close) = if entry { ("[[", "]]") } else { ("[", "]") };
            let _ = writeln!(
                self.out,
                "\n{open}{header}{close}{}",
                mark.unwrap_or_default()
            );
        }
        for line in lines {
            let _ = writeln!(self.out, "{line}");
        }
        for (key, value, child) in nested {
            let quote = child.ends_with('"');
            let sub = match header {
                "" => toml_key(key, quote),
                h => format!("{h}.{}", toml_key(key, quote)),
            };
            match value {
                Node::Map(f) => self.table(&child, &sub, false, f),
                Node::Seq(items) => {
                    for item in items {
                        if let Node::Map(f) = item {
                            self.table(&format!("{child}[]"), &sub, true, f);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The skeleton path of field `key` under `path`: a map's example key is quoted.
    fn child_path(&self, path: &str, key: &str) -> String {
        let join = |k: &str| match path {
            "" => k.to_string(),
            p => format!("{p}.{k}"),
        };
        let quoted = join(&format!("\"{key}\""));
        if self.marks.contains_key(&quoted) {
            quoted
        } else {
            join(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_parse_back_as_a_valid_config_equal_to_the_skeleton() {
        let text = default_config_toml().unwrap_or_else(|e| panic!("{e}"));
        match crate::config::from_str(&text, "defaults.toml") {
            Ok(cfg) => assert_eq!(cfg, skeleton(None).unwrap_or_else(|e| panic!("{e}"))),
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    #[test]
    fn the_printed_defaults_are_the_defaults_of_the_types() {
        let text = default_config_toml().unwrap_or_else(|e| panic!("{e}"));
        let cfg = crate::config::from_str(&text, "defaults.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.timeouts, crate::config::TimeoutsConfig::default());
        assert_eq!(cfg.limits, crate::config::LimitsConfig::default());
        let mut protect = cfg.protect.clone();
        protect.error_pages.clear(); // the example entry
        assert_eq!(protect, crate::config::ProtectConfig::default());
        assert!(text.contains("\n# upgrade_socket = (none)\n"), "{text}");
        assert!(text.contains("\nname = \"app\"  # (required)\n"), "{text}");
        assert!(
            text.contains("\n[[upstreams]]  # (example; default: [])\n"),
            "{text}"
        );
        assert!(
            text.contains("\n[admin]  # (example; default: none)\n"),
            "{text}"
        );
        assert!(text.contains("\nsplice_threshold = 262144\n"), "{text}");
    }

    #[test]
    fn every_skeleton_path_is_set_once() {
        let mut seen = std::collections::HashSet::new();
        for (path, _, _) in SKELETON {
            assert!(seen.insert(*path), "{path} twice");
        }
    }
}
