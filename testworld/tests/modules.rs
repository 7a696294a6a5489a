//! The layering of the API server emulator (`src/apiserver/`): no two of
//! its files (a subdirectory such as `openapi/` counts as one) depend on
//! each other, directly or through others. In particular the dispatcher
//! (`dispatch.rs`, which hands a resource request to its handler) sits
//! above every handler: none of them, nor anything they use, imports it
//! back. A file names another through `super::` (`super::super::` from a
//! subdirectory) or `crate::apiserver::`; the module root (`mod.rs`) is
//! the top and is not read, as `lib.rs` is not for `src/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../tests/support/module_graph.rs"]
mod module_graph;

use module_graph::{
    Graph, add_edges, code_only, describe, find_cycle, path_heads, reexports, rust_files,
};

fn apiserver() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/apiserver")
}

/// The module of `apiserver/` a file belongs to: `objects.rs` →
/// `objects`, `openapi/fields.rs` → `openapi`; `None` for `mod.rs`.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "mod.rs" => None,
        file if file.ends_with(".rs") => Some(file.trim_end_matches(".rs").to_string()),
        dir => Some(dir.to_string()),
    }
}

/// The prefixes by which a file names a sibling module of `apiserver/`:
/// its parent module is `apiserver` for `objects.rs` and
/// `openapi/mod.rs`, its grandparent for `openapi/fields.rs`.
fn prefixes_of(relative: &Path) -> Vec<String> {
    let depth = relative.components().count();
    let own_mod = relative.file_name().is_some_and(|f| f == "mod.rs");
    let supers = if own_mod { depth - 1 } else { depth };
    vec![
        "crate::apiserver::".to_string(),
        "super::".repeat(supers.max(1)),
    ]
}

fn apiserver_graph() -> Graph {
    let root = apiserver();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f.strip_prefix(&root).expect("under apiserver")))
        .collect();
    let reexported = reexports(&fs::read_to_string(root.join("mod.rs")).expect("mod.rs"));
    let mut graph = Graph::new();
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under apiserver");
        let Some(from) = module_of(relative) else {
            continue;
        };
        let code = code_only(&fs::read_to_string(file).expect("read source"));
        let names: BTreeSet<String> = prefixes_of(relative)
            .iter()
            .flat_map(|prefix| path_heads(&code, prefix))
            .collect();
        add_edges(
            &mut graph,
            &from,
            &format!("src/apiserver/{}", relative.display()),
            names,
            &modules,
            &reexported,
        );
    }
    graph
}

#[test]
fn apiserver_files_form_no_cycle() {
    let graph = apiserver_graph();
    let handlers = ["objects", "watch", "patch", "eviction", "scale", "reviews"];
    assert!(
        handlers.iter().all(|h| graph
            .get("dispatch")
            .is_some_and(|edges| edges.contains_key(*h))),
        "the scan found the dispatcher's references: {:?}",
        graph.get("dispatch")
    );
    assert!(
        graph
            .get("handler")
            .is_some_and(|edges| edges.contains_key("dispatch")),
        "the scan found the handler's: {:?}",
        graph.get("handler")
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "files of src/apiserver/ depend on each other in a cycle: {}",
            describe(&cycle, &graph)
        );
    }
}

#[test]
fn files_name_their_siblings_from_any_depth() {
    assert_eq!(
        prefixes_of(Path::new("objects.rs")),
        ["crate::apiserver::", "super::"]
    );
    assert_eq!(
        prefixes_of(Path::new("openapi/mod.rs")),
        ["crate::apiserver::", "super::"]
    );
    assert_eq!(
        prefixes_of(Path::new("openapi/fields.rs")),
        ["crate::apiserver::", "super::super::"]
    );
    let code = code_only(
        "use super::definitions;\nuse super::super::kinds::served_kinds;\n\
         use super::super::{merge, status::ApiError};\nuse crate::apiserver::patch;\n",
    );
    assert_eq!(
        path_heads(&code, "super::super::"),
        BTreeSet::from(["kinds", "merge", "status"].map(String::from))
    );
    assert_eq!(
        path_heads(&code, "super::"),
        BTreeSet::from(["definitions".to_string()])
    );
    assert_eq!(
        module_of(Path::new("openapi/fields.rs")).as_deref(),
        Some("openapi")
    );
    assert_eq!(module_of(Path::new("mod.rs")), None);
}
