//! Golden copies of the rendered node scripts in `testdata/`, which
//! shellcheck checks (tests/it/controlplane_scripts.rs).

use std::path::PathBuf;

/// `rendered` equals `testdata/<file>`; with `KUBESURGE_BLESS=1` the copy
/// is rewritten instead (after an intended change: review the diff).
pub(crate) fn assert_matches(file: &str, rendered: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/controlplane/testdata");
    let path = dir.join(file);
    if std::env::var_os("KUBESURGE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("testdata directory");
        std::fs::write(&path, rendered).expect("write golden copy");
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (render it with KUBESURGE_BLESS=1)", path.display()));
    assert!(
        golden == rendered,
        "{file} differs from what is rendered now; if the change is intended, rerun with \
         KUBESURGE_BLESS=1 and review the diff"
    );
}
