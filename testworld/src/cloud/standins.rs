//! The stand-ins for the commands a control-plane script runs on a
//! simulated machine: small bash scripts that behave as the real commands
//! do — same arguments, same output shape, same failures with the real
//! error text — against the machine's fake filesystem (`KUBESURGE_ROOT`).
//!
//! - Package state lives under `$KUBESURGE_ROOT/var/lib/kubesurge-sim`:
//!   `installed/<package>` holds the installed version (`1.35.2-1.1`),
//!   `held/<package>` marks an apt hold, `units/kubelet.changed` a unit
//!   file changed on disk since the last `systemctl daemon-reload`.
//! - The repositories are the machine's own apt sources and yum repos:
//!   `apt-get update` indexes the pkgs.k8s.io minors it finds (and fails on
//!   the removed apt.kubernetes.io, or without the signing key); `apt-get
//!   install` and `dnf install` offer only the versions of those minors.
//! - What changes the world (`kubeadm upgrade`, `systemctl restart
//!   kubelet`, `kubectl get`) goes to the cloud's control endpoint
//!   (`$KUBESURGE_SIM_CONTROL`) over loopback HTTP, with bash's own
//!   `/dev/tcp`, so no stand-in depends on a host HTTP client.
//!
//! Every stand-in refuses to run without `KUBESURGE_ROOT`, so a stray call
//! can never touch the host's own files.
//!
//! The bash lives in `standins/`: `prelude.sh`, which every stand-in starts
//! with, and one file per command (`dnf.sh` answers as yum too), each
//! citing the real behaviour it imitates. They are templates: [`all`] fills
//! in the `@NAME@`-style placeholders (the host's bash, the command's name,
//! the repositories' versions). shellcheck checks each file as it is
//! (`tests/it/controlplane_scripts.rs`).

use std::ops::RangeInclusive;

use super::state::{DEFAULT_IMAGE_MINORS, DEFAULT_IMAGE_PATCHES};

/// Minors pkgs.k8s.io has repositories for (builds start at v1.24; the
/// newest is the newest the cloud has images for).
pub const REPOSITORY_MINORS: RangeInclusive<u64> = 24..=*DEFAULT_IMAGE_MINORS.end();
/// Patches every repository offers (as many as the image catalogue).
pub const REPOSITORY_PATCHES: RangeInclusive<u64> = DEFAULT_IMAGE_PATCHES;
/// The OBS revision of the deb packages (`1.35.2-1.1`).
pub const DEB_REVISION: &str = "1.1";
/// The release of the rpm packages (`1.35.2-150500.1.1`).
pub const RPM_RELEASE: &str = "150500.1.1";

/// The directory of `PATH` a stand-in goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// On every machine.
    Common,
    /// apt-based machines.
    Apt,
    /// dnf-based machines (with `yum`, the alias RHEL 8+ ships).
    Dnf,
    /// Machines with yum only.
    Yum,
}

impl Family {
    pub fn dir_name(self) -> &'static str {
        match self {
            Family::Common => "common",
            Family::Apt => "apt",
            Family::Dnf => "dnf",
            Family::Yum => "yum",
        }
    }
}

/// One stand-in: the command name, where it goes, and its text.
#[derive(Clone, Debug)]
pub struct StandIn {
    pub name: &'static str,
    pub family: Family,
    /// The file in `standins/` (beside this module) its text comes from,
    /// after `prelude.sh`.
    pub file: &'static str,
    pub text: String,
}

/// Every stand-in, with `bash` as the interpreter of their `#!` line: the
/// prelude and the command's own file, with their placeholders filled in.
pub fn all(bash: &str) -> Vec<StandIn> {
    let make = |name: &'static str, family: Family, source: Source| StandIn {
        name,
        family,
        file: source.file,
        text: [PRELUDE, source.body]
            .concat()
            .replace("@BASH@", bash)
            .replace("@NAME@", name)
            .replace("@MIN_MINOR@", &REPOSITORY_MINORS.start().to_string())
            .replace("@MAX_MINOR@", &REPOSITORY_MINORS.end().to_string())
            .replace("@MAX_PATCH@", &REPOSITORY_PATCHES.end().to_string())
            .replace("@DEB_REVISION@", DEB_REVISION)
            .replace("@RPM_RELEASE@", RPM_RELEASE),
    };
    vec![
        make("kubeadm", Family::Common, KUBEADM),
        make("kubectl", Family::Common, KUBECTL),
        make("systemctl", Family::Common, SYSTEMCTL),
        make("gpg", Family::Common, GPG),
        make("curl", Family::Common, CURL),
        make("apt-get", Family::Apt, APT_GET),
        make("apt-mark", Family::Apt, APT_MARK),
        make("dnf", Family::Dnf, DNF),
        make("yum", Family::Dnf, DNF),
        make("yum", Family::Yum, DNF),
    ]
}

/// Host programs the scripts and stand-ins use, linked into the machines'
/// `PATH` (which holds nothing else, so the host's own package managers
/// stay out of sight). `timeout` is what `controlPlane.exec: ssh` runs a
/// script under on the node; `base64` (coreutils, on every node) is what
/// `controlPlane.exec: ssm`'s command line decodes the script with.
pub const HOST_TOOLS: &[&str] = &[
    "base64", "bash", "cat", "chmod", "cp", "cut", "date", "env", "flock", "grep", "head", "id",
    "ln", "ls", "mkdir", "mktemp", "mv", "rm", "sed", "setsid", "sleep", "sort", "tail", "timeout",
    "touch", "tr", "uname", "wc",
];

/// The start of every stand-in: its `#!` line, `set -euo pipefail`, and
/// the helpers the stand-ins share (package state, versions, the world's
/// control endpoint).
const PRELUDE: &str = include_str!("standins/prelude.sh");

/// The first two lines of every stand-in's own file: they point shellcheck
/// at the prelude (so it checks each file with the prelude's variables and
/// functions in view), and the stand-in is written with the prelude's text
/// in their place.
const PRELUDE_INCLUDE: &str = "# shellcheck shell=bash source-path=SCRIPTDIR\n\
                               source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines\n";

/// A stand-in's own file: its name in `standins/`, and its text after the
/// [`PRELUDE_INCLUDE`] lines.
#[derive(Clone, Copy)]
struct Source {
    file: &'static str,
    body: &'static str,
}

/// The [`Source`] of `standins/<file>`, checked at build time.
macro_rules! source {
    ($file:literal) => {
        Source {
            file: $file,
            body: after_prelude_include(include_str!(concat!("standins/", $file))),
        }
    };
}

/// A stand-in's file without its [`PRELUDE_INCLUDE`] lines; a file that
/// does not start with them fails the build.
const fn after_prelude_include(file: &'static str) -> &'static str {
    let (file_bytes, include) = (file.as_bytes(), PRELUDE_INCLUDE.as_bytes());
    assert!(
        file_bytes.len() >= include.len(),
        "a stand-in's file starts with PRELUDE_INCLUDE"
    );
    let mut index = 0;
    while index < include.len() {
        assert!(
            file_bytes[index] == include[index],
            "a stand-in's file starts with PRELUDE_INCLUDE"
        );
        index += 1;
    }
    file.split_at(include.len()).1
}

const KUBEADM: Source = source!("kubeadm.sh");
const KUBECTL: Source = source!("kubectl.sh");
const SYSTEMCTL: Source = source!("systemctl.sh");
const GPG: Source = source!("gpg.sh");
const CURL: Source = source!("curl.sh");
const APT_GET: Source = source!("apt-get.sh");
const APT_MARK: Source = source!("apt-mark.sh");
/// dnf, and yum as well: one program answers to both names.
const DNF: Source = source!("dnf.sh");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `@WORD@` (capitals and underscores) left in a text.
    fn unfilled_placeholders(text: &str) -> Vec<&str> {
        let pieces: Vec<&str> = text.split('@').collect();
        pieces
            .iter()
            .enumerate()
            .filter(|(index, piece)| {
                *index > 0
                    && *index < pieces.len() - 1
                    && !piece.is_empty()
                    && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .map(|(_, piece)| *piece)
            .collect()
    }

    #[test]
    fn every_stand_in_has_its_interpreter_and_refuses_to_run_without_a_root() {
        let all = all("/usr/bin/bash");
        assert!(all.len() >= 9);
        for s in &all {
            assert!(s.text.starts_with("#!/usr/bin/bash\n"), "{}", s.name);
            assert!(s.text.contains("KUBESURGE_ROOT:?"), "{}", s.name);
            for placeholder in [
                "@BASH@",
                "@NAME@",
                "@MIN_MINOR@",
                "@MAX_MINOR@",
                "@MAX_PATCH@",
                "@DEB_REVISION@",
                "@RPM_RELEASE@",
                "@PRELUDE@",
            ] {
                assert!(
                    !s.text.contains(placeholder),
                    "{} keeps {placeholder}",
                    s.name
                );
            }
            assert_eq!(
                unfilled_placeholders(&s.text),
                Vec::<&str>::new(),
                "{}",
                s.name
            );
            assert!(!s.text.contains("source prelude.sh"), "{}", s.name);
        }
        assert!(
            all.iter()
                .any(|s| s.name == "yum" && s.family == Family::Yum)
        );
        assert!(
            all.iter()
                .any(|s| s.name == "yum" && s.family == Family::Dnf)
        );
    }
}
