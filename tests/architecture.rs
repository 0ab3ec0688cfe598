//! The layering stays one-way: this test reads the module paths that every file of `src/`
//! names (`use crate::…`, inline `crate::x::…`, `super::sibling`) and fails, naming the
//! circle and the files behind each step, when two top-level modules depend on each other
//! directly or around a cycle — or when two sibling modules inside one folder do. With
//! `--nocapture` it prints the top-level modules from the top layer down and what each uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from -> to -> files of `from` that name `to``.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments, strings and `#[cfg(test)]`-only lines' text kept
/// (tests may reach anywhere; they are still code of that module, so they count too).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' {
            // Skip a string literal (escapes included); raw strings hold no `crate::` paths
            // that matter here.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' must not open a string.
            out.push_str("' '");
            i += 3;
        } else if b[i..].starts_with(b"'\\") {
            let end = text[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e + 1);
            out.push_str("' '");
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment after each `prefix::` in `code`, including the names inside a
/// `prefix::{a, b::c}` group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pat = format!("{prefix}::");
    let mut from = 0;
    while let Some(at) = code[from..].find(&pat) {
        let start = from + at;
        from = start + pat.len();
        // `super::super::x`, `crate::` inside a longer identifier: not ours.
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = k;
                    break;
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let first: String =
                            item.trim().chars().take_while(|&c| is_ident(c)).collect();
                        if !first.is_empty() {
                            out.insert(first);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

struct Source {
    /// Path under `src/`, e.g. `pipeline/exchange.rs`.
    rel: String,
    /// Module path, e.g. `["proxy", "relay"]` (`lib.rs` and `main.rs`: empty).
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(String::from)
                .collect();
            if module.last().is_some_and(|m| m == "mod") || module == ["lib"] || module == ["main"]
            {
                module.pop();
            }
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Source {
                rel,
                module,
                code: code_of(&text),
            }
        })
        .collect()
}

fn add(g: &mut Graph, from: &str, to: &str, file: &str) {
    g.entry(from.to_string())
        .or_default()
        .entry(to.to_string())
        .or_default()
        .insert(file.to_string());
}

/// Top-level module -> top-level modules it names.
fn top_level(sources: &[Source]) -> Graph {
    let tops: BTreeSet<&str> = sources
        .iter()
        .filter_map(|s| s.module.first().map(String::as_str))
        .collect();
    let mut g = Graph::new();
    for s in sources {
        let Some(top) = s.module.first() else {
            continue;
        };
        g.entry(top.clone()).or_default();
        for name in names_after(&s.code, "crate") {
            if name != *top && tops.contains(name.as_str()) {
                add(&mut g, top, &name, &s.rel);
            }
        }
    }
    g
}

/// Within each folder: sibling module -> sibling modules it names (through `super::x` from
/// a child file, or `crate::folder::x`). A parent's own `mod.rs` is not a sibling.
fn siblings(sources: &[Source]) -> Vec<(String, Graph)> {
    let mut parents: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        if let Some((last, parent)) = s.module.split_last() {
            parents
                .entry(parent.to_vec())
                .or_default()
                .insert(last.clone());
        }
    }
    let mut out = Vec::new();
    for (parent, kids) in &parents {
        if kids.len() < 2 {
            continue;
        }
        let mut g = Graph::new();
        let crate_path = std::iter::once("crate".to_string())
            .chain(parent.iter().cloned())
            .collect::<Vec<_>>()
            .join("::");
        for s in sources {
            let Some((me, p)) = s.module.split_last() else {
                continue;
            };
            if p != parent.as_slice() {
                continue;
            }
            // Everything under this sibling (its own submodules) speaks for it too.
            for t in sources.iter().filter(|t| t.module.starts_with(&s.module)) {
                let depth = t.module.len() - s.module.len();
                let sup = std::iter::repeat("super")
                    .take(depth + 1)
                    .collect::<Vec<_>>()
                    .join("::");
                let mut named = names_after(&t.code, &crate_path);
                if !t.rel.ends_with("mod.rs") || depth > 0 {
                    named.extend(names_after(&t.code, &sup));
                }
                if t.rel.ends_with("mod.rs") && depth == 0 {
                    // `super` of a folder's mod.rs is that folder's parent.
                    named.extend(names_after(&t.code, "super"));
                }
                for name in named {
                    if name != *me && kids.contains(&name) {
                        add(&mut g, me, &name, &t.rel);
                    }
                }
            }
            g.entry(me.clone()).or_default();
        }
        let label = if parent.is_empty() {
            "src".to_string()
        } else {
            parent.join("/")
        };
        out.push((label, g));
    }
    out
}

/// A cycle in `g`, as the list of its nodes (first repeated at the end), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        n: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for next in g.get(n).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, next, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if marks.get(n.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, n, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn describe(g: &Graph, cycle: &[String]) -> String {
    let mut s = cycle.join(" -> ");
    for pair in cycle.windows(2) {
        let files = &g[&pair[0]][&pair[1]];
        s.push_str(&format!(
            "\n  {} uses {}: {}",
            pair[0],
            pair[1],
            files.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    s
}

/// The modules from the top layer down: each uses only modules printed after it.
fn layers(g: &Graph) -> Vec<Vec<String>> {
    let mut left: BTreeSet<String> = g.keys().cloned().collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        // Nothing that is still left uses these: they form the next layer from the top.
        let top: Vec<String> = left
            .iter()
            .filter(|n| {
                !left
                    .iter()
                    .any(|m| g.get(m).is_some_and(|e| e.contains_key(*n)))
            })
            .cloned()
            .collect();
        if top.is_empty() {
            break;
        }
        for n in &top {
            left.remove(n);
        }
        out.push(top);
    }
    out
}

#[test]
fn top_level_modules_depend_on_each_other_one_way_only() {
    let g = top_level(&sources());
    assert!(g.len() > 5, "found too few modules: {:?}", g.keys());
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "top-level modules depend on each other in a circle: {}",
            describe(&g, &cycle)
        );
    }
    println!("top-level modules, from the top layer down:");
    for (i, layer) in layers(&g).iter().enumerate() {
        for m in layer {
            let uses: Vec<&str> = g[m].keys().map(String::as_str).collect();
            println!(
                "  {i:>2} {m:<10} uses {}",
                if uses.is_empty() {
                    "-".to_string()
                } else {
                    uses.join(", ")
                }
            );
        }
    }
}

#[test]
fn sibling_modules_inside_a_folder_depend_on_each_other_one_way_only() {
    let folders = siblings(&sources());
    assert!(folders.len() > 3, "found too few folders");
    let circles: Vec<String> = folders
        .iter()
        .filter_map(|(folder, g)| {
            find_cycle(g).map(|c| format!("inside {folder}/: {}", describe(g, &c)))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "modules depend on each other in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_when_there_is_one() {
    let code = |s: &str| code_of(s);
    let sources = vec![
        Source {
            rel: "a/mod.rs".into(),
            module: vec!["a".into()],
            code: code("use crate::b::X; // crate::c::Y"),
        },
        Source {
            rel: "b/mod.rs".into(),
            module: vec!["b".into()],
            code: code("fn f() { crate::c::g() }"),
        },
        Source {
            rel: "c/mod.rs".into(),
            module: vec!["c".into()],
            code: code("use crate::{a::Z, d}; const S: &str = \"crate::d::W\";"),
        },
        Source {
            rel: "c/x.rs".into(),
            module: vec!["c".into(), "x".into()],
            code: code("use super::y::Q;"),
        },
        Source {
            rel: "c/y.rs".into(),
            module: vec!["c".into(), "y".into()],
            code: code("use crate::c::x::P;"),
        },
        Source {
            rel: "d.rs".into(),
            module: vec!["d".into()],
            code: code(""),
        },
    ];
    let g = top_level(&sources);
    let cycle = find_cycle(&g).expect("a -> b -> c -> a");
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    assert!(!g["a"].contains_key("c"), "a comment is no use");
    assert!(g["c"].contains_key("d") && !g.contains_key("e"));
    let inner = siblings(&sources);
    let (_, c) = inner.iter().find(|(f, _)| f == "c").expect("folder c");
    assert_eq!(find_cycle(c).map(|c| c.len()), Some(3), "x -> y -> x");
}
