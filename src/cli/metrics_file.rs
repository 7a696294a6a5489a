//! `--metrics-file PATH`: the run's report as Prometheus text, written so
//! that a reader never sees half a file. The node-exporter textfile
//! collector asks for exactly this: write to a temporary file in the same
//! directory, then rename it over the old one
//! (<https://github.com/prometheus/node_exporter#textfile-collector>); a
//! rename within one file system is atomic.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::report_metrics::{RunMetrics, exposition};

use super::output::eprint_error;

/// Write the metrics when `--metrics-file` was given. A file that cannot
/// be written does not change the run's exit status (the run itself is
/// what the status reports); it is said on stderr, and the stale
/// `kubesurge_run_last_finished_timestamp_seconds` shows it to monitoring.
pub fn write_if_asked(path: Option<&Path>, metrics: &RunMetrics<'_>) {
    let Some(path) = path else { return };
    if let Err(error) = write_atomically(path, &exposition(metrics)) {
        eprint_error(&format!(
            "cannot write the metrics file {}: {error}",
            path.display()
        ));
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// A name beside `path` that the textfile collector ignores (it reads only
/// `*.prom`) and that no other kubesurge process uses at the same time.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "metrics".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubesurge.prom");
        std::fs::write(&path, "old\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kubesurge.prom")]);
        let temporary = temporary_path(&path);
        assert_eq!(temporary.parent(), path.parent());
        assert!(!temporary.to_string_lossy().ends_with(".prom"));
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/kubesurge.prom");
        assert!(write_atomically(&path, "x\n").is_err());
    }
}
