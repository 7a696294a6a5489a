//! A crate's module graph read from its source, and its cycles: shared by
//! the layering checks of `src/` (`tests/it/modules.rs`) and of the test
//! world's API server (`testworld/tests/modules.rs`), each of which
//! includes this file by path. A module depends on another when one of
//! its files names it through a path (`use crate::settings::Settings`,
//! `crate::{plan, window}`, `super::objects::store_new`). Comments, doc
//! comments and literals are not read: a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module → modules it uses → the files that use them.
pub type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// Every `.rs` file under `dir`, into `found`.
pub fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The source with comments and string and char literals blanked (newlines
/// kept), so that only code is searched.
pub fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if !prev_is_ident && (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_string_start(&chars, i).unwrap_or_default();
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            i = body;
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += closing.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{1F600}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            // Code, lifetimes included.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At a raw string's start (`r"`, `r#"`, `br##"`): its number of `#` and
/// where its body starts.
fn raw_string_start(chars: &[char], at: usize) -> Option<(usize, usize)> {
    let mut i = at;
    if chars.get(i) == Some(&'b') {
        i += 1;
    }
    if chars.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
    i += hashes;
    (chars.get(i) == Some(&'"')).then_some((hashes, i + 1))
}

/// The first segment after `prefix` of every path in `code` that starts
/// with it: `crate::` gives the top-level modules a file names,
/// `super::super::` what a file two levels down names of its
/// grandparent. `self` and `super` are not names.
pub fn path_heads(code: &str, prefix: &str) -> BTreeSet<String> {
    let chars: Vec<char> = code.chars().collect();
    let word =
        |from: usize| -> String { chars[from..].iter().take_while(|c| is_ident(**c)).collect() };
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut found = BTreeSet::new();
    let needle: Vec<char> = prefix.chars().collect();
    let mut i = 0;
    while i + needle.len() <= chars.len() {
        // Not inside a longer path (`super::super::x` holds `super::x`).
        let preceded = i > 0 && (is_ident(chars[i - 1]) || matches!(chars[i - 1], '$' | ':'));
        if preceded || !chars[i..].starts_with(&needle) {
            i += 1;
            continue;
        }
        i = skip_space(i + needle.len());
        if chars.get(i) == Some(&'{') {
            // A group: the first segment of each item at its top level.
            let mut depth = 0;
            let mut item_start = true;
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        found.insert(word(i));
                        item_start = false;
                    }
                    _ => {}
                }
                i += 1;
            }
        } else {
            let name = word(i);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found.retain(|name| name != "self" && name != "super");
    found
}

/// Names a module root re-exports (`pub use exit::ExitStatus;` in
/// `lib.rs`) → the module they come from.
pub fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in code_only(lib).split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        for name in rest
            .split([',', '{', '}'])
            .filter_map(|item| item.rsplit("::").next())
            .map(|item| item.split(" as ").last().unwrap_or_default().trim())
            .filter(|name| !name.is_empty())
        {
            out.insert(name.to_string(), module.trim().to_string());
        }
    }
    out
}

/// Record that `file`, of module `from`, names each of `names`: a module
/// of `modules`, or an item a module root re-exports from one
/// (`reexported`); other names (items of the root, external crates) are
/// not modules.
pub fn add_edges(
    graph: &mut Graph,
    from: &str,
    file: &str,
    names: BTreeSet<String>,
    modules: &BTreeSet<String>,
    reexported: &BTreeMap<String, String>,
) {
    for name in names {
        let to = if modules.contains(&name) {
            name
        } else if let Some(module) = reexported.get(&name) {
            module.clone()
        } else {
            continue;
        };
        if to != from {
            graph
                .entry(from.to_string())
                .or_default()
                .entry(to)
                .or_default()
                .insert(file.to_string());
        }
    }
}

/// A cycle of the graph, as the modules along it (the first repeated at
/// the end), if there is one.
pub fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == node).unwrap_or_default();
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Visiting);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// `a -> b (src/a/x.rs) -> a (src/b.rs)`.
pub fn describe(cycle: &[String], graph: &Graph) -> String {
    let mut out = cycle[0].clone();
    for pair in cycle.windows(2) {
        let files: Vec<&str> = graph[&pair[0]][&pair[1]]
            .iter()
            .map(String::as_str)
            .collect();
        out.push_str(&format!(" -> {} ({})", pair[1], files.join(", ")));
    }
    out
}
