//! The library's layering: no two top-level modules of `src/` depend on
//! each other, directly or through others. A module depends on another
//! when any of its files names it through a `crate::` path (`use
//! crate::settings::Settings`, `crate::{plan, window}`, a re-export of the
//! crate root such as `crate::ExitStatus`). Comments, doc comments and
//! literals are not read: a doc link is not a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../support/module_graph.rs"]
mod module_graph;

use module_graph::{
    Graph, add_edges, code_only, describe, find_cycle, path_heads, reexports, rust_files,
};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to: `src/settings/schema/mod.rs` →
/// `settings`, `src/wiring.rs` → `wiring`. `None` for the crate root and
/// the binaries, which are not modules of the library.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" | "bin" => None,
        file if file.ends_with(".rs") => Some(file.trim_end_matches(".rs").to_string()),
        dir => Some(dir.to_string()),
    }
}

fn module_graph() -> Graph {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| top_module(f.strip_prefix(&root).expect("under src")))
        .collect();
    let reexported = reexports(&fs::read_to_string(root.join("lib.rs")).expect("lib.rs"));
    let mut graph = Graph::new();
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under src");
        let Some(from) = top_module(relative) else {
            continue;
        };
        let code = code_only(&fs::read_to_string(file).expect("read source"));
        add_edges(
            &mut graph,
            &from,
            &format!("src/{}", relative.display()),
            path_heads(&code, "crate::"),
            &modules,
            &reexported,
        );
    }
    graph
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.get("cli").is_some_and(|edges| edges.len() > 3),
        "the scan found the modules' references: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "modules of src/ depend on each other in a cycle: {}",
            describe(&cycle, &graph)
        );
    }
}

#[test]
fn the_scan_reads_code_not_comments_and_finds_cycles() {
    let code = code_only(
        "use crate::plan::Budget; // crate::window\n/* crate::exec /* nested */ crate::kube */\n\
         let s = \"crate::rotation\"; let r = r#\"crate::version\"#; let c = '\"';\n\
         fn f<'a>(x: &'a str) {}\nuse crate::{settings::X, inventory};\npub(in crate::duration) fn g() {}\n",
    );
    assert_eq!(
        path_heads(&code, "crate::"),
        BTreeSet::from(["duration", "inventory", "plan", "settings"].map(String::from))
    );
    assert_eq!(
        reexports("pub use exit::ExitStatus;\npub use a::{B, c::D as E};\n"),
        BTreeMap::from([
            ("ExitStatus".to_string(), "exit".to_string()),
            ("B".to_string(), "a".to_string()),
            ("E".to_string(), "a".to_string()),
        ])
    );
    let edge = |from: &str, to: &str| {
        (
            from.to_string(),
            BTreeMap::from([(to.to_string(), BTreeSet::from([format!("src/{from}.rs")]))]),
        )
    };
    let cyclic: Graph = BTreeMap::from([edge("a", "b"), edge("b", "c"), edge("c", "a")]);
    let cycle = find_cycle(&cyclic).expect("a cycle");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert_eq!(
        describe(&cycle, &cyclic),
        "a -> b (src/a.rs) -> c (src/b.rs) -> a (src/c.rs)"
    );
    let layered: Graph = BTreeMap::from([edge("a", "b"), edge("b", "c")]);
    assert_eq!(find_cycle(&layered), None);
}
