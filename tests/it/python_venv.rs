//! Python venvs with a package from PyPI, under the test target directory:
//! made once and reused. Tests run as threads of one process, so a lock
//! keeps two of them from making the same venv at once (one would find it
//! half made).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static MAKING: Mutex<()> = Mutex::new(());

/// The Python of the venv `name`, where `import` works once `package` is
/// installed.
pub(crate) fn python_with(name: &str, package: &str, import: &str) -> PathBuf {
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", &format!("import {import}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !importable(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(
            made.success(),
            "python3 -m venv failed (python3-venv is needed)"
        );
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", package])
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install {package} failed");
    }
    assert!(importable(&python), "{import} is not importable");
    python
}
