//! The layers of `src/`: the command line sits on top, and the library
//! never reaches up into it (it must work without a terminal: from the
//! sandbox, the benchmark, tests).

use std::path::{Path, PathBuf};

/// True when a line of Rust names the `cli` module through a path
/// (`crate::cli::…`, `kubesurge::cli`, `super::cli`) or a grouped
/// import (`use crate::{cli, …}`). Comments do not count.
fn names_cli(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or_default();
    let by_path = ["crate::cli", "kubesurge::cli", "super::cli"]
        .iter()
        .any(|path| {
            code.match_indices(path).any(|(at, _)| {
                let next = code[at + path.len()..].chars().next();
                !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        });
    let grouped = ["use crate::{", "use kubesurge::{"]
        .iter()
        .any(|group| code.contains(group))
        && code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "cli");
    by_path || grouped
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_detector_sees_every_way_of_naming_cli() {
    for line in [
        "use crate::cli::CommandError;",
        "    crate::cli::upgrade::run(&global, args).await",
        "use super::cli;",
        "use crate::{cli, plan};",
        "use kubesurge::cli::Cli;",
    ] {
        assert!(names_cli(line), "{line}");
    }
    for line in [
        "use crate::client;",
        "use crate::kube::client;",
        "// the cli calls crate::cli::run",
        "let cli = Cli::parse();",
        "use crate::{client, plan};",
    ] {
        assert!(!names_cli(line), "{line}");
    }
}

#[test]
fn no_module_outside_cli_imports_cli() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The command line itself, and the binary that runs it.
    let allowed = [src.join("cli"), src.join("main.rs")];
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| !allowed.iter().any(|a| file.starts_with(a)))
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            text.lines()
                .enumerate()
                .filter(|(_, line)| names_cli(line))
                .map(|(n, line)| format!("{}:{}: {}", file.display(), n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(files.len() > 50, "scanned only {} files", files.len());
    assert!(
        offenders.is_empty(),
        "the library reaches into the command line:\n{}",
        offenders.join("\n")
    );
}
