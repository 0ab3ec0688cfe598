//! Keeps docs/configuration.md true: every field `ringway config --defaults` prints has a
//! row in the reference, every row names a field the code has, and each row's default is
//! the code's. Fails naming each field that is missing, unknown or wrong.
//!
//! The output of `config --defaults` is read line by line: `key = value` is a default,
//! `# key = (none)` an unset option, a trailing `# (required)` a field without default,
//! `# (example; default: X)` a value (or, on a `[table]` / `[[list]]` header, a table or
//! list) whose default is X. A header without a comment is a plain section, not a field.
//!
//! The reference is read table by table: a table whose header row is
//! `| field | type | default | meaning | status |` lists fields relative to the last heading
//! that holds a TOML header in backticks (`` ## `[[upstreams]]` ``; a heading without one
//! means the top level). The first backticked text of the field cell is the field name
//! (dotted for nested tables); the default cell is exactly `` `TOML literal` ``, `none` or
//! `required`, and literals are compared as TOML values. A row whose type cell reads
//! "same as `[x]`" says that table takes the fields of `[x]`, documented once there.
//! Paths are written as in the code's output: `[]` after a list of tables, `*` for a map's
//! key (`<status>` in a heading or row stands for one).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

#[derive(Debug, Clone, PartialEq)]
enum Default {
    None,
    Required,
    Value(toml::Value),
}

impl std::fmt::Display for Default {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Default::None => f.write_str("none"),
            Default::Required => f.write_str("required"),
            Default::Value(v) => write!(f, "`{v}`"),
        }
    }
}

fn toml_literal(text: &str) -> Result<toml::Value, String> {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .ok_or_else(|| format!("{text:?} is not a TOML value"))
}

/// Splits a dotted TOML key path, keeping quoted segments whole.
fn dotted(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in path.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

/// A key path in the test's form: `[]` after each list of tables (from `lists`, or written
/// so), `*` for a map key (quoted, `<...>` or `*`).
fn normalise(segments: &[String], lists: &BTreeSet<String>) -> String {
    let mut path = String::new();
    for seg in segments {
        let seg = if seg.starts_with('"') || seg.starts_with('<') || seg == "*" {
            "*"
        } else {
            seg.as_str()
        };
        if !path.is_empty() {
            if lists.contains(&path) {
                path.push_str("[]");
            }
            path.push('.');
        }
        path.push_str(seg);
    }
    path
}

/// Every field of `ringway config --defaults`, with its default, and the lists of tables.
fn code_fields() -> (BTreeMap<String, Default>, BTreeSet<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["config", "--defaults"])
        .output()
        .expect("run ringway config --defaults");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut fields = BTreeMap::new();
    let mut lists = BTreeSet::new();
    let mut table = String::new();
    let record = |fields: &mut BTreeMap<String, Default>, path: String, d: Default| {
        assert!(fields.insert(path.clone(), d).is_none(), "{path} twice");
    };
    for line in text.lines() {
        let (body, mark) = match line.rfind("  # (") {
            Some(at) if line.ends_with(')') => (&line[..at], Some(&line[at + 5..line.len() - 1])),
            _ => (line, None),
        };
        let mark_default = |mark: &str| -> Default {
            if mark == "required" {
                return Default::Required;
            }
            let d = mark
                .strip_prefix("example; default: ")
                .unwrap_or_else(|| panic!("unknown mark in {line:?}"));
            match d {
                "none" => Default::None,
                lit => Default::Value(toml_literal(lit).unwrap_or_else(|e| panic!("{e}"))),
            }
        };
        if let Some(header) = body.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            let segs = dotted(header);
            let field = normalise(&segs, &lists);
            lists.insert(field.clone());
            if let Some(m) = mark {
                record(&mut fields, field.clone(), mark_default(m));
            }
            table = field;
        } else if let Some(header) = body.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let segs = dotted(header);
            table = normalise(&segs, &lists);
            if let Some(m) = mark {
                // A map's example entry marks the map itself.
                let field = match table.strip_suffix(".*") {
                    Some(map) => map.to_string(),
                    None => table.clone(),
                };
                record(&mut fields, field, mark_default(m));
            }
        } else if let Some(key) = body
            .strip_prefix("# ")
            .and_then(|b| b.strip_suffix(" = (none)"))
        {
            let path = normalise(&[table.clone(), key.to_string()], &lists);
            record(&mut fields, path, Default::None);
        } else if let Some((key, value)) = body.split_once(" = ").filter(|_| !body.starts_with('#'))
        {
            let path = normalise(&[table.clone(), key.trim().to_string()], &lists);
            let d = match mark {
                Some(m) => mark_default(m),
                None => Default::Value(toml_literal(value).unwrap_or_else(|e| panic!("{e}"))),
            };
            record(&mut fields, path, d);
        }
    }
    // `table` is "" at the top, and the top is no list.
    lists.remove("");
    (fields, lists)
}

struct Row {
    line: usize,
    default: Default,
}

struct Reference {
    rows: BTreeMap<String, Row>,
    /// A table documented as "same as" another: its path -> the other's.
    aliases: BTreeMap<String, String>,
    problems: Vec<String>,
}

fn first_backticked(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

/// The path prefix a heading sets: its first backticked TOML header, or the top level.
fn heading_prefix(heading: &str, lists: &BTreeSet<String>) -> String {
    let mut rest = heading;
    while let Some(tick) = first_backticked(rest) {
        let inner = tick
            .strip_prefix("[[")
            .and_then(|t| t.strip_suffix("]]"))
            .or_else(|| tick.strip_prefix('[').and_then(|t| t.strip_suffix(']')));
        if let Some(inner) = inner {
            return normalise(&dotted(inner), lists);
        }
        let at = rest.find(tick).unwrap_or(0) + tick.len() + 1;
        rest = &rest[at..];
    }
    String::new()
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
        prev = c;
    }
    out.push(cur.trim().to_string());
    out
}

fn reference(text: &str, lists: &BTreeSet<String>) -> Reference {
    let mut r = Reference {
        rows: BTreeMap::new(),
        aliases: BTreeMap::new(),
        problems: Vec::new(),
    };
    let mut prefix = String::new();
    let mut in_table = false;
    let mut in_code = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            prefix = heading_prefix(line, lists);
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let c = cells(line);
        if c.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>()
            == ["field", "type", "default", "meaning", "status"]
        {
            in_table = true;
            continue;
        }
        if !in_table || c.iter().all(|s| s.chars().all(|ch| "-: ".contains(ch))) {
            continue;
        }
        let Some(name) = c.first().and_then(|s| first_backticked(s)) else {
            r.problems
                .push(format!("docs/configuration.md:{n}: no `field` in {line:?}"));
            continue;
        };
        let mut segs = if prefix.is_empty() {
            Vec::new()
        } else {
            dotted(&prefix.replace("[]", ""))
        };
        segs.extend(dotted(&name.replace("[]", "")));
        let path = normalise(&segs, lists);
        if c.len() != 5 {
            r.problems.push(format!(
                "docs/configuration.md:{n}: {path}: {} cells, not 5",
                c.len()
            ));
            continue;
        }
        if let Some(other) = c[1].strip_prefix("same as ") {
            match first_backticked(other).map(|t| heading_prefix(&format!("`{t}`"), lists)) {
                Some(target) if !target.is_empty() => {
                    r.aliases.insert(path, target);
                }
                _ => r.problems.push(format!(
                    "docs/configuration.md:{n}: {path}: \"same as\" names no `[table]`"
                )),
            }
            continue;
        }
        let cell = c[2].as_str();
        let default = match cell {
            "none" => Default::None,
            "required" => Default::Required,
            _ => match cell
                .strip_prefix('`')
                .and_then(|s| s.strip_suffix('`'))
                .map(|lit| toml_literal(&lit.replace("\\|", "|")))
            {
                Some(Ok(v)) => Default::Value(v),
                _ => {
                    r.problems.push(format!(
                        "docs/configuration.md:{n}: {path}: the default {cell:?} is not `a TOML literal`, none or required"
                    ));
                    continue;
                }
            },
        };
        if let Some(old) = r.rows.insert(path.clone(), Row { line: n, default }) {
            r.problems.push(format!(
                "docs/configuration.md:{n}: {path} has a row already (line {})",
                old.line
            ));
        }
    }
    r
}

#[test]
fn the_configuration_reference_has_every_field_with_the_code_s_default() {
    let (fields, lists) = code_fields();
    assert!(fields.len() > 150, "only {} fields printed", fields.len());
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let text = std::fs::read_to_string(file).expect("read docs/configuration.md");
    let r = reference(&text, &lists);
    let mut problems = r.problems.clone();
    let documented_as = |path: &str| -> String {
        for (from, to) in &r.aliases {
            if let Some(rest) = path.strip_prefix(&format!("{from}.")) {
                return format!("{to}.{rest}");
            }
        }
        path.to_string()
    };
    for (path, default) in &fields {
        let doc = documented_as(path);
        match r.rows.get(&doc) {
            None => problems.push(format!(
                "{path} (default {default}) is in the code but has no row in docs/configuration.md"
            )),
            Some(row) if row.default != *default => problems.push(format!(
                "{path}: docs/configuration.md:{} says the default is {}, the code says {default}",
                row.line, row.default
            )),
            Some(_) => {}
        }
    }
    for (path, row) in &r.rows {
        if !fields.contains_key(path) {
            problems.push(format!(
                "docs/configuration.md:{}: {path} is not a field of the config",
                row.line
            ));
        }
    }
    for from in r.aliases.keys() {
        if !fields.keys().any(|p| p.starts_with(&format!("{from}."))) {
            problems.push(format!(
                "docs/configuration.md: {from} (\"same as\") is not a table of the config"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}
