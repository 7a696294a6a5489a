//! Whether a control-plane node's package manager can install the
//! packages of an upgrade, found out without changing the node: a
//! rendered read-only query script (run through a `NodeExec`) and the
//! reading of its answer. Both pure.
//!
//! The upgrade scripts (`script`) point the node's pkgs.k8s.io repository
//! at each hop's minor before installing; the query must not: it reads the
//! repository of every minor asked for directly, leaving the node's
//! configured sources, package lists and packages as they are.
//!
//! - apt: pkgs.k8s.io's deb repositories are flat repositories (the
//!   sources line ends in `/deb/ /`), whose package index `Packages` sits
//!   at the repository's root beside `Release`
//!   (https://wiki.debian.org/DebianRepository/Format#Flat_Repository_Format);
//!   curl reads it. A minor without a repository answers an HTTP error.
//! - dnf (and yum, which is dnf from RHEL 8): `repoquery` with
//!   `--repofrompath=<id>,<url>`, which adds a repository for this one
//!   command, and `--repo=<id>`, which queries that repository only
//!   (dnf(8): https://dnf.readthedocs.io/en/latest/command_ref.html, and
//!   dnf5's https://dnf5.readthedocs.io/en/latest/commands/repoquery.8.html);
//!   it installs nothing and writes no repository file. The spec is the
//!   one the upgrade installs (`<name>-<version>-*`). Before it, curl asks
//!   for the repository's `repodata/repomd.xml`, so that a minor without a
//!   repository reads as missing rather than as a failed query.

use std::collections::BTreeMap;

use super::script::{DETECT, REPO_BASE};
use crate::version::KubeVersion;

/// What kubesurge installs from pkgs.k8s.io on a control-plane node.
pub const KUBEADM: &str = "kubeadm";
pub const KUBELET: &str = "kubelet";
pub const KUBECTL: &str = "kubectl";

/// The marker of the query's answer lines:
/// `kubesurge-query: <package> <version> <available|missing|unknown> <detail>`.
const ANSWER_PREFIX: &str = "kubesurge-query: ";

/// Whether one package at one version can be installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The repository offers it (`detail`: where it was found).
    Available,
    /// The repository does not offer it, or there is no repository for its
    /// minor; `detail` says which.
    Missing { detail: String },
    /// The query could not tell (the repository unreachable, the package
    /// manager failing, no answer line).
    Unknown { detail: String },
}

/// Render the query for `wanted`: per version, the packages to look for.
pub fn render_query(wanted: &BTreeMap<KubeVersion, Vec<&'static str>>) -> String {
    let queries: Vec<String> = wanted
        .iter()
        .filter(|(_, packages)| !packages.is_empty())
        .map(|(version, packages)| format!("'{} {}'", version.bare(), packages.join(" ")))
        .collect();
    [QUERY_HEADER, DETECT, QUERY_FUNCTIONS]
        .concat()
        .replace("@REPO_BASE@", REPO_BASE)
        .replace("@QUERIES@", &queries.join(" "))
}

/// Read the query's output: the availability of every package of
/// `wanted`, `Unknown` where the output has no answer for it.
pub fn read_answers(
    stdout: &str,
    wanted: &BTreeMap<KubeVersion, Vec<&'static str>>,
) -> BTreeMap<(KubeVersion, &'static str), Availability> {
    let mut answers: BTreeMap<(KubeVersion, &'static str), Availability> = wanted
        .iter()
        .flat_map(|(version, packages)| {
            packages.iter().map(|package| {
                (
                    (*version, *package),
                    Availability::Unknown {
                        detail: "the query gave no answer for it".into(),
                    },
                )
            })
        })
        .collect();
    for line in stdout.lines() {
        let Some(answer) = line.strip_prefix(ANSWER_PREFIX) else {
            continue;
        };
        let mut words = answer.splitn(4, ' ');
        let (Some(package), Some(version), Some(status)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let detail = words.next().unwrap_or_default().trim().to_string();
        let Ok(version) = version.parse::<KubeVersion>() else {
            continue;
        };
        let Some(slot) = answers
            .iter_mut()
            .find(|((v, p), _)| *v == version && *p == package)
            .map(|(_, slot)| slot)
        else {
            continue;
        };
        *slot = match status {
            "available" => Availability::Available,
            "missing" => Availability::Missing { detail },
            _ => Availability::Unknown { detail },
        };
    }
    answers
}

const QUERY_HEADER: &str = r#"#!/usr/bin/env bash
# kubesurge: find out, changing nothing, whether this node's package manager
# offers the Kubernetes packages of an upgrade.
#
# Rendered by kubesurge. Read-only: it reads the package index of each
# version's pkgs.k8s.io repository (one repository per minor) and leaves the
# node's configured repositories, package lists and packages as they are.
# One answer line per package and version:
#   kubesurge-query: <package> <version> <available|missing|unknown> <detail>
set -euo pipefail

# Each: a version, then the packages wanted at it.
readonly QUERIES=(@QUERIES@)
readonly REPO_BASE='@REPO_BASE@'
# The repository --repofrompath adds for one dnf command.
readonly QUERY_REPO_ID='kubesurge-query'
"#;

const QUERY_FUNCTIONS: &str = r#"
answer() {
  printf 'kubesurge-query: %s %s %s %s\n' "$1" "$2" "$3" "$4"
}

# 1.35.2 -> https://pkgs.k8s.io/core:/stable:/v1.35
repository_of() {
  printf '%s%s\n' "${REPO_BASE}" "${1%.*}"
}

# Answers every package of a version the same way.
answer_all() {
  local version=$1 status=$2 detail=$3 package
  shift 3
  for package in "$@"; do
    answer "${package}" "${version}" "${status}" "${detail}"
  done
}

# curl's exit code 22 is an HTTP error answered by the server (curl(1),
# EXIT CODES): the repository does not exist. Any other is a failure to ask.
answer_unreadable() {
  local version=$1 code=$2 url=$3
  shift 3
  if ((code == 22)); then
    answer_all "${version}" missing "pkgs.k8s.io has no repository for Kubernetes ${version%.*} (${url} answers an HTTP error)" "$@"
  else
    answer_all "${version}" unknown "cannot read ${url} (curl exit ${code})" "$@"
  fi
}

# Whether a deb package index offers package $2 at version $3 (any
# revision): its stanzas have "Package:" and "Version:" fields (deb-control(5)).
index_offers() {
  local line current=''
  while IFS= read -r line; do
    case "${line}" in
      'Package: '*) current=${line#Package: } ;;
      'Version: '*)
        if [[ "${current}" == "$2" && "${line#Version: }" == "$3"-* ]]; then
          return 0
        fi
        ;;
    esac
  done <<<"$1"
  return 1
}

query_apt() {
  local version=$1 url index package code=0
  shift
  url="$(repository_of "${version}")/deb/Packages"
  index="$(curl -fsSL "${url}")" || code=$?
  if ((code != 0)); then
    answer_unreadable "${version}" "${code}" "${url}" "$@"
    return 0
  fi
  for package in "$@"; do
    if index_offers "${index}" "${package}" "${version}"; then
      answer "${package}" "${version}" available "${url}"
    else
      answer "${package}" "${version}" missing "${url} does not offer ${package} ${version}"
    fi
  done
}

query_rpm() {
  local version=$1 url found package code=0
  shift
  url="$(repository_of "${version}")/rpm/"
  curl -fsSL "${url}repodata/repomd.xml" >/dev/null || code=$?
  if ((code != 0)); then
    answer_unreadable "${version}" "${code}" "${url}repodata/repomd.xml" "$@"
    return 0
  fi
  for package in "$@"; do
    code=0
    found="$("${PACKAGE_MANAGER}" repoquery --quiet "--repofrompath=${QUERY_REPO_ID},${url}" \
      "--repo=${QUERY_REPO_ID}" "${package}-${version}-*" 2>&1)" || code=$?
    if ((code != 0)); then
      answer "${package}" "${version}" unknown "${PACKAGE_MANAGER} repoquery failed (exit ${code}): ${found//$'\n'/ }"
    elif grep -q "^${package}-" <<<"${found}"; then
      answer "${package}" "${version}" available "${url}"
    else
      answer "${package}" "${version}" missing "${url} does not offer ${package} ${version}"
    fi
  done
}

main() {
  local query version names packages=()
  detect_package_manager
  for query in "${QUERIES[@]}"; do
    read -r version names <<<"${query}"
    read -r -a packages <<<"${names}"
    case "${PACKAGE_MANAGER}" in
      apt-get) query_apt "${version}" "${packages[@]}" ;;
      *) query_rpm "${version}" "${packages[@]}" ;;
    esac
  done
}

main
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> BTreeMap<KubeVersion, Vec<&'static str>> {
        BTreeMap::from([
            (KubeVersion::new(1, 36, 0), vec![KUBEADM, KUBELET, KUBECTL]),
            (KubeVersion::new(1, 37, 2), vec![KUBEADM]),
        ])
    }

    #[test]
    fn the_query_names_every_version_and_package_and_installs_nothing() {
        let script = render_query(&wanted());
        assert!(script.starts_with("#!/usr/bin/env bash\n"));
        assert!(script.contains("\nset -euo pipefail\n"));
        assert!(
            script.contains("readonly QUERIES=('1.36.0 kubeadm kubelet kubectl' '1.37.2 kubeadm')")
        );
        assert!(script.contains("readonly REPO_BASE='https://pkgs.k8s.io/core:/stable:/v'"));
        for placeholder in ["@QUERIES@", "@REPO_BASE@"] {
            assert!(!script.contains(placeholder), "{script}");
        }
        // Nothing that changes the node.
        for mutation in [
            "apt-get update",
            "apt-get install",
            " install ",
            "sources.list",
            "yum.repos.d",
            "apt-mark",
            "mv ",
            "rm ",
        ] {
            assert!(!script.contains(mutation), "{mutation:?} in the query");
        }
    }

    /// The rendered query equals its golden copy, which shellcheck checks
    /// with the upgrade scripts' (tests/it/controlplane_scripts.rs).
    /// `KUBESURGE_BLESS=1` rewrites it after an intended change.
    #[test]
    fn the_rendered_query_matches_its_golden_copy() {
        crate::controlplane::golden::assert_matches("query-packages.sh", &render_query(&wanted()));
    }

    #[test]
    fn answers_are_read_per_package_and_version() {
        let stdout = "kubesurge: package manager: apt-get\n\
             kubesurge-query: kubeadm 1.36.0 available https://pkgs.k8s.io/core:/stable:/v1.36/deb/Packages\n\
             kubesurge-query: kubelet 1.36.0 missing https://x does not offer kubelet 1.36.0\n\
             kubesurge-query: kubeadm 1.37.2 unknown cannot read https://y (curl exit 6)\n";
        let answers = read_answers(stdout, &wanted());
        let v36 = KubeVersion::new(1, 36, 0);
        assert_eq!(answers[&(v36, KUBEADM)], Availability::Available);
        assert_eq!(
            answers[&(v36, KUBELET)],
            Availability::Missing {
                detail: "https://x does not offer kubelet 1.36.0".into()
            }
        );
        assert!(matches!(
            &answers[&(KubeVersion::new(1, 37, 2), KUBEADM)],
            Availability::Unknown { detail } if detail.contains("curl exit 6")
        ));
        // No line for kubectl: not known, never assumed available.
        assert!(matches!(
            answers[&(v36, KUBECTL)],
            Availability::Unknown { .. }
        ));
        assert_eq!(answers.len(), 4);
    }
}
