//! shellcheck on the repository's own scripts: CI's entry point, the test
//! provisioning and dependency-policy scripts, the image scripts (the
//! rendered control-plane scripts and the world's stand-ins are checked in
//! `controlplane_scripts`; tests/run.sh installs shellcheck from apt).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `.sh` files directly in `dir`, sorted.
pub(crate) fn shell_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    files.sort();
    files
}

#[test]
fn repository_scripts_pass_shellcheck() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts = vec![root.join(".ci/run")];
    scripts.extend(shell_files(&root.join("tests")));
    scripts.extend(shell_files(&root.join("tests/image")));
    for expected in [
        "tests/run.sh",
        "tests/deny.sh",
        "tests/terraform.sh",
        "tests/image/build.sh",
        "tests/image/run-as-pod.sh",
    ] {
        assert!(
            scripts.contains(&root.join(expected)),
            "{expected} is checked"
        );
    }
    for script in &scripts {
        // From the root, as CI runs them: `source tests/terraform.sh` is
        // followed (--external-sources).
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style", "--external-sources"])
            .arg(script)
            .current_dir(root)
            .output()
            .expect("shellcheck runs (apt-get install shellcheck; tests/run.sh does)");
        assert!(
            out.status.success(),
            "{}:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
