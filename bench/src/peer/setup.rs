//! The peer as a new user would install it: `pip install
//! eks-rolling-update==1.1.8` into a venv under `.tools/`, made once and
//! reused; and the `kubectl` it drains with, behind a shim for the flag it
//! passes that kubectl no longer knows.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The version measured.
pub const EKS_ROLLING_UPDATE: &str = "eks-rolling-update==1.1.8";
/// Its venv under the workspace's `.tools/`.
pub const VENV: &str = "eks-rolling-update";

/// Why the peer cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot run {what}: {source}")]
    Run {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}); python3 with the venv module and access to PyPI are needed")]
    Failed { what: String, status: String },
    #[error("no kubectl on PATH nor at /usr/bin/kubectl (tests/run.sh installs it)")]
    NoKubectl,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the installed peer is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInstall {
    /// `eks_rolling_update.py`, the console script pip made.
    pub program: PathBuf,
    /// The venv's `bin`, for the PATH.
    pub venv_bin: PathBuf,
    /// The directory holding the `kubectl` shim, first in the PATH.
    pub shim_dir: PathBuf,
    /// The real kubectl the shim runs.
    pub kubectl: PathBuf,
}

/// The workspace's `.tools/`.
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools")
}

/// Install the peer into `tools/eks-rolling-update` unless it is there,
/// and write the `kubectl` shim into `workdir/peer-bin`.
pub fn install(tools: &Path, workdir: &Path) -> Result<PeerInstall, SetupError> {
    let venv = tools.join(VENV);
    let python = venv.join("bin/python");
    // The package only: its modules make boto3 clients on import, which
    // need a region this check has no reason to set.
    let installed = || {
        Command::new(&python)
            .args(["-c", "import eksrollup"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !installed() {
        eprintln!(
            "kubesurge-bench: installing {EKS_ROLLING_UPDATE} into {}",
            venv.display()
        );
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
        run(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", EKS_ROLLING_UPDATE]),
            "pip install eks-rolling-update",
        )?;
    }
    let kubectl = find_kubectl().ok_or(SetupError::NoKubectl)?;
    let shim_dir = workdir.join("peer-bin");
    write_shim(&shim_dir, &kubectl)?;
    Ok(PeerInstall {
        program: venv.join("bin/eks_rolling_update.py"),
        venv_bin: venv.join("bin"),
        shim_dir,
        kubectl,
    })
}

fn run(command: &mut Command, what: &str) -> Result<(), SetupError> {
    let status = command.status().map_err(|source| SetupError::Run {
        what: what.to_string(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(SetupError::Failed {
            what: what.to_string(),
            status: status.to_string(),
        })
    }
}

/// `kubectl` on the PATH, else where the tests find it.
fn find_kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let fallback = PathBuf::from("/usr/bin/kubectl");
        fallback.is_file().then_some(fallback)
    })
}

/// The shim's script: eks-rolling-update 1.1.8 drains with
/// `--delete-local-data`, which kubectl deprecated for
/// `--delete-emptydir-data` in v1.20 and removed in v1.31
/// (kubernetes/kubectl `pkg/cmd/drain/drain.go`); the shim renames it and
/// passes everything else through unchanged.
pub fn shim_script(kubectl: &Path) -> String {
    format!(
        "#!/bin/sh\n\
         # eks-rolling-update passes --delete-local-data, gone from kubectl >= 1.31.\n\
         for arg do\n  shift\n  case \"$arg\" in\n    \
         --delete-local-data) set -- \"$@\" --delete-emptydir-data ;;\n    \
         *) set -- \"$@\" \"$arg\" ;;\n  esac\ndone\n\
         exec '{}' \"$@\"\n",
        kubectl.display()
    )
}

fn write_shim(dir: &Path, kubectl: &Path) -> Result<(), SetupError> {
    let path = dir.join("kubectl");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, shim_script(kubectl))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    };
    write().map_err(|source| SetupError::Write {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_renames_the_removed_drain_flag_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in kubectl that prints its arguments one per line.
        let echo = dir.path().join("echo-args");
        std::fs::write(&echo, "#!/bin/sh\nfor a do echo \"$a\"; done\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&echo, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("bin");
        write_shim(&bin, &echo).unwrap();
        let out = Command::new(bin.join("kubectl"))
            .args([
                "drain",
                "node 1",
                "--ignore-daemonsets",
                "--delete-local-data",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "drain\nnode 1\n--ignore-daemonsets\n--delete-emptydir-data\n"
        );
    }
}
