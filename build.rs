//! Records the git commit the binary is built from, for `kubesurge version`
//! (`unknown` outside a git checkout or without git).

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KUBESURGE_GIT_COMMIT={commit}");
    // A new commit moves HEAD or the branch it names. In a worktree `.git`
    // is a file: HEAD is in the worktree's own git dir, the branches in
    // the common one.
    let git_path = |what: &str| {
        Command::new("git")
            .args(["rev-parse", "--git-path", what])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    for what in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git_path(what).filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
