//! The module graph has no cycles: each top-level module of `src/` (a file or a folder)
//! names the modules it uses (`crate::x`, `crate::{x, y}`, `flywheel::x`), and the graph
//! those edges make must be acyclic, so that a module can be read, tested and changed
//! knowing only what lies below it. The spec is the bottom of the house: it may use only
//! the leaf modules (`constrain`, `error`, `models`), never a stage.
//!
//! Run it alone: `cargo test --release --test imports`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges that still exist and are known to close a cycle, each with the change that
/// removes it. The test fails when one is gone, so the list only ever shrinks.
const KNOWN: &[(&str, &str, &str)] = &[];

/// What the spec may use: configuration types only, over leaf modules.
const SPEC_MAY_USE: &[&str] = &["constrain", "error", "models"];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// Source text without comments (doc links name modules without using them) and
/// without string literals.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' && (i == 0 || !matches!(b[i - 1], b'\'' | b'\\')) {
            // Raw strings (`r#"..."#`) hold no `crate::` in this code base; plain ones
            // are skipped with their escapes.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a piece of code names.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for root in ["crate::", "flywheel::"] {
        for (at, _) in code.match_indices(root) {
            // `flywheel::` inside an identifier (`my_flywheel::`) is not the crate.
            if at > 0 {
                let prev = code[..at].chars().next_back().unwrap();
                if prev.is_ascii_alphanumeric() || prev == '_' {
                    continue;
                }
            }
            let rest = &code[at + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::B, c, d::{e, f}}`: the names at the group's top level.
                let mut depth = 1;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => start = true,
                        c if c.is_whitespace() => {}
                        _ => {
                            if start && depth == 1 {
                                used.insert(ident_at(&group[i..]).to_string());
                            }
                            start = false;
                        }
                    }
                }
            } else {
                used.insert(ident_at(rest).to_string());
            }
        }
    }
    used
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if p.is_dir()
            || (p.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main")
        {
            modules.insert(name, p);
        }
    }
    let mut g = Graph::new();
    for (m, p) in &modules {
        let mut files = Vec::new();
        rust_files(p, &mut files);
        let edges = g.entry(m.clone()).or_default();
        for f in files {
            let code = code_only(&std::fs::read_to_string(&f).unwrap());
            for u in used_modules(&code) {
                if &u != m && modules.contains_key(&u) {
                    edges
                        .entry(u)
                        .or_default()
                        .insert(f.strip_prefix(&src).unwrap().to_path_buf());
                }
            }
        }
    }
    g
}

/// Every cycle, as the strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn describe(g: &Graph, scc: &[String]) -> String {
    let mut s = format!("cycle among {}:\n", scc.join(", "));
    for a in scc {
        for (b, files) in &g[a] {
            if scc.contains(b) {
                let files: Vec<_> = files.iter().map(|f| f.display().to_string()).collect();
                s += &format!("  {a} -> {b}  ({})\n", files.join(", "));
            }
        }
    }
    s
}

#[test]
fn no_module_import_cycles() {
    let mut g = graph();
    for (a, b, why) in KNOWN {
        assert!(
            g.get(*a).is_some_and(|e| e.contains_key(*b)),
            "{a} -> {b} is gone ({why}): remove it from KNOWN in tests/imports.rs"
        );
        g.get_mut(*a).unwrap().remove(*b);
    }
    let found = cycles(&g);
    let text: String = found.iter().map(|c| describe(&g, c)).collect();
    println!("{} modules; cycles: {}", g.len(), found.len());
    assert!(found.is_empty(), "module import cycles:\n{text}");
}

#[test]
fn spec_uses_no_stage() {
    let g = graph();
    let bad: Vec<String> = g["spec"]
        .iter()
        .filter(|(m, _)| !SPEC_MAY_USE.contains(&m.as_str()))
        .map(|(m, files)| format!("spec -> {m} ({files:?})"))
        .collect();
    assert!(
        bad.is_empty(),
        "the spec holds configuration only and may use {SPEC_MAY_USE:?}:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_parser_sees_groups_and_skips_comments() {
    let code = code_only(
        "use crate::{error::Result, spec::{A, B}, store};\n// crate::verify\n/* crate::dedup */ let s = \"crate::embed\"; flywheel::models::x(); my_flywheel::bench;",
    );
    let u: Vec<_> = used_modules(&code).into_iter().collect();
    assert_eq!(u, ["error", "models", "spec", "store"]);
}
