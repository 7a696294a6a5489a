//! The shell scripts that upgrade a control-plane node in place (design
//! §7): one rendered bash script per node and step, run through a
//! `NodeExec`.
//!
//! Every script:
//! - is bash with `set -euo pipefail`, shellcheck-clean (golden copies of
//!   every variant sit in `testdata/` and CI runs shellcheck on them);
//! - finds the package manager at run time (apt-get, else dnf, else yum);
//! - points the pkgs.k8s.io repository at the target minor (one repository
//!   per minor), migrating a node that still uses the legacy
//!   apt.kubernetes.io / yum.kubernetes.io repositories (removed on
//!   2024-03-04) and disabling any other Kubernetes repository;
//! - installs its packages pinned to the target patch (`1.X.Y-*`), held
//!   again afterwards on apt (and excluded from routine updates on rpm);
//! - is idempotent: a step that is already done is skipped, so a rerun
//!   after a crash, or a second run, changes nothing;
//! - prints `kubesurge: …` progress lines on stdout and `kubesurge: error:
//!   …` on stderr before it fails;
//! - reads every path under `KUBESURGE_ROOT` (unset on a real node), so
//!   the test world runs the very same text against its stand-ins.
//!
//! Rendering is pure: the same step and node always give the same text.

use crate::version::KubeVersion;

/// One step of the control-plane phase on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Switch the repository to the target minor, install kubeadm at
    /// `version`, then `kubeadm upgrade apply` (`first`: the first
    /// control-plane node of the hop) or `kubeadm upgrade node` (the
    /// others, after the first).
    UpgradeControlPlane { version: KubeVersion, first: bool },
    /// Install kubelet and kubectl at `version`, then restart the kubelet.
    /// Only once the node's own control plane runs `version` (the script
    /// refuses otherwise) and, for the skew policy, once every apiserver
    /// does (the phase driver's order).
    UpgradeKubelet { version: KubeVersion },
}

impl Step {
    /// The version the step moves the node to.
    pub fn version(self) -> KubeVersion {
        match self {
            Step::UpgradeControlPlane { version, .. } | Step::UpgradeKubelet { version } => version,
        }
    }

    /// What the step does, for logs and `ExecRequest::description`:
    /// `kubeadm upgrade apply v1.35.2`.
    pub fn description(self) -> String {
        match self {
            Step::UpgradeControlPlane {
                version,
                first: true,
            } => format!("kubeadm upgrade apply {version}"),
            Step::UpgradeControlPlane {
                version,
                first: false,
            } => format!("kubeadm upgrade node to {version}"),
            Step::UpgradeKubelet { version } => {
                format!("kubelet and kubectl {version}, kubelet restart")
            }
        }
    }
}

/// What the scripts need to know about the node they run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// The Kubernetes node name: the kubelet step compares the version the
    /// Node reports with the target to decide whether to restart.
    pub name: String,
}

/// Render the script of `step` for `node`.
pub fn render(step: Step, node: &NodeFacts) -> String {
    let version = step.version();
    let (title, functions, main) = match step {
        Step::UpgradeControlPlane { first: true, .. } => (
            "upgrade the control plane of this node with kubeadm upgrade apply\n\
             # (the first control-plane node of the hop).",
            [KUBEADM_FUNCTIONS, CLUSTER_VERSION_FUNCTION].concat(),
            MAIN_APPLY,
        ),
        Step::UpgradeControlPlane { first: false, .. } => (
            "upgrade the control plane of this node with kubeadm upgrade node\n\
             # (after kubeadm upgrade apply ran on the first control-plane node).",
            KUBEADM_FUNCTIONS.to_string(),
            MAIN_NODE,
        ),
        Step::UpgradeKubelet { .. } => (
            "upgrade kubelet and kubectl on this node and restart the kubelet\n\
             # (after the control plane of every node runs the target).",
            KUBELET_FUNCTIONS.to_string(),
            MAIN_KUBELET,
        ),
    };
    [HEADER, COMMON, DETECT, INSTALL_FUNCTIONS, &functions, main]
        .concat()
        .replace("@REPO_BASE@", REPO_BASE)
        .replace("@TITLE@", title)
        .replace("@NODE_NAME@", &shell_quote(&node.name))
        .replace("@TARGET_VERSION@", &version.bare())
        .replace("@TARGET_MINOR@", &version.minor_string())
}

/// The start of every pkgs.k8s.io repository's URL; the minor (`1.35`)
/// ends it. One repository per minor since 2023
/// (https://kubernetes.io/blog/2023/08/15/pkgs-k8s-io-introduction/).
pub(super) const REPO_BASE: &str = "https://pkgs.k8s.io/core:/stable:/v";

/// `'text'`, safe in bash whatever the text holds.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

const HEADER: &str = r#"#!/usr/bin/env bash
# kubesurge: @TITLE@
#
# Rendered by kubesurge. Safe to run again: a step that is already done is
# skipped. Every path is read under KUBESURGE_ROOT, which is unset on a real
# node (kubesurge's test world sets it to run this very script).
set -euo pipefail

readonly NODE_NAME=@NODE_NAME@
readonly TARGET_VERSION='@TARGET_VERSION@'
readonly TARGET_MINOR='@TARGET_MINOR@'
"#;

const COMMON: &str = r#"
readonly ROOT="${KUBESURGE_ROOT:-}"
readonly KUBERNETES_DIR="${ROOT}/etc/kubernetes"
readonly APT_SOURCES="${ROOT}/etc/apt/sources.list"
readonly APT_SOURCES_DIR="${ROOT}/etc/apt/sources.list.d"
readonly APT_KEYRINGS_DIR="${ROOT}/etc/apt/keyrings"
readonly YUM_REPOS_DIR="${ROOT}/etc/yum.repos.d"
# pkgs.k8s.io has one repository per minor. The legacy apt.kubernetes.io and
# yum.kubernetes.io repositories were removed on 2024-03-04.
readonly REPO_URL="@REPO_BASE@${TARGET_MINOR}"
readonly KUBERNETES_REPOS='pkgs\.k8s\.io|pkgs\.kubernetes\.io|packages\.kubernetes\.io|apt\.kubernetes\.io|yum\.kubernetes\.io|packages\.cloud\.google\.com/(apt|yum)'
readonly LEGACY_REPOS='apt\.kubernetes\.io|yum\.kubernetes\.io|packages\.cloud\.google\.com/(apt|yum)'

export DEBIAN_FRONTEND=noninteractive
"#;

/// Logging and the package manager's detection: in every script.
pub(super) const DETECT: &str = r#"
PACKAGE_MANAGER=''

log() {
  printf 'kubesurge: %s\n' "$*"
}

fail() {
  printf 'kubesurge: error: %s\n' "$*" >&2
  exit 1
}

detect_package_manager() {
  local candidate
  for candidate in apt-get dnf yum; do
    if command -v "${candidate}" >/dev/null 2>&1; then
      PACKAGE_MANAGER="${candidate}"
      log "package manager: ${candidate}"
      return 0
    fi
  done
  fail 'found none of apt-get, dnf or yum on this node'
}
"#;

/// Pointing the repository at the target minor and installing from it.
const INSTALL_FUNCTIONS: &str = r#"
# Comments out the lines of one apt source list that use a Kubernetes
# repository: a second one would offer other versions, and the legacy ones
# make apt-get update fail.
disable_apt_source_lines() {
  local file=$1
  if grep -Eq "^[[:space:]]*deb(-src)?[[:space:]].*(${KUBERNETES_REPOS})" "${file}"; then
    log "disabling the Kubernetes repository lines of ${file#"${ROOT}"} (kubernetes.list replaces them)"
    sed -i -E "s%^([[:space:]]*deb(-src)?[[:space:]].*(${KUBERNETES_REPOS}).*)%# disabled by kubesurge: \\1%" "${file}"
  fi
}

configure_apt_repository() {
  local list="${APT_SOURCES_DIR}/kubernetes.list"
  local keyring="${APT_KEYRINGS_DIR}/kubernetes-apt-keyring.gpg"
  # apt reads signed-by on the node itself: the path has no ROOT.
  local source="deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] ${REPO_URL}/deb/ /"
  local file
  mkdir -p "${APT_SOURCES_DIR}" "${APT_KEYRINGS_DIR}"
  for file in "${APT_SOURCES}" "${APT_SOURCES_DIR}"/*.list; do
    if [[ -f "${file}" && "${file}" != "${list}" ]]; then
      disable_apt_source_lines "${file}"
    fi
  done
  for file in "${APT_SOURCES_DIR}"/*.sources; do
    if [[ -f "${file}" ]] && grep -Eq "${KUBERNETES_REPOS}" "${file}"; then
      log "disabling ${file#"${ROOT}"} (kubernetes.list replaces it)"
      mv "${file}" "${file}.disabled-by-kubesurge"
    fi
  done
  if [[ ! -s "${keyring}" ]]; then
    log "installing the signing key of pkgs.k8s.io in ${keyring#"${ROOT}"}"
    curl -fsSL "${REPO_URL}/deb/Release.key" | gpg --dearmor --batch --yes -o "${keyring}.new"
    chmod 0644 "${keyring}.new"
    mv "${keyring}.new" "${keyring}"
  fi
  if [[ "$(cat "${list}" 2>/dev/null || true)" != "${source}" ]]; then
    if grep -Eq "${LEGACY_REPOS}" "${list}" 2>/dev/null; then
      log "migrating ${list#"${ROOT}"} from the removed apt.kubernetes.io repository to pkgs.k8s.io"
    fi
    log "pointing ${list#"${ROOT}"} at the Kubernetes ${TARGET_MINOR} repository"
    printf '%s\n' "${source}" >"${list}.new"
    mv "${list}.new" "${list}"
  fi
  log 'refreshing the package index'
  apt-get update
}

configure_rpm_repository() {
  local repo="${YUM_REPOS_DIR}/kubernetes.repo"
  local definition file
  # The exclude line keeps routine updates away from these packages; the
  # install below lifts it for this repository only.
  definition="[kubernetes]
name=Kubernetes
baseurl=${REPO_URL}/rpm/
enabled=1
gpgcheck=1
gpgkey=${REPO_URL}/rpm/repodata/repomd.xml.key
exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni"
  mkdir -p "${YUM_REPOS_DIR}"
  for file in "${YUM_REPOS_DIR}"/*.repo; do
    if [[ -f "${file}" && "${file}" != "${repo}" ]] &&
      grep -Eq "^[[:space:]]*baseurl[[:space:]]*=.*(${KUBERNETES_REPOS})" "${file}"; then
      log "disabling ${file#"${ROOT}"} (kubernetes.repo replaces it)"
      mv "${file}" "${file}.disabled-by-kubesurge"
    fi
  done
  if [[ "$(cat "${repo}" 2>/dev/null || true)" != "${definition}" ]]; then
    if grep -Eq "${LEGACY_REPOS}" "${repo}" 2>/dev/null; then
      log "migrating ${repo#"${ROOT}"} from the removed yum.kubernetes.io repository to pkgs.k8s.io"
    fi
    log "pointing ${repo#"${ROOT}"} at the Kubernetes ${TARGET_MINOR} repository"
    printf '%s\n' "${definition}" >"${repo}.new"
    mv "${repo}.new" "${repo}"
  fi
}

configure_repository() {
  case "${PACKAGE_MANAGER}" in
    apt-get) configure_apt_repository ;;
    *) configure_rpm_repository ;;
  esac
}

# apt: the packages stay held so that no routine upgrade moves them. The
# hold is lifted for this install only, and put back even when it fails.
apt_install_pinned() {
  local versions=() package
  for package in "$@"; do
    versions+=("${package}=${TARGET_VERSION}-*")
  done
  apt-mark unhold "$@"
  if ! apt-get install -y "${versions[@]}"; then
    apt-mark hold "$@" >/dev/null 2>&1 || true
    fail "apt-get could not install ${versions[*]}"
  fi
  apt-mark hold "$@"
}

rpm_install_pinned() {
  local versions=() package
  local exclusions='--disableexcludes=kubernetes'
  for package in "$@"; do
    versions+=("${package}-${TARGET_VERSION}-*")
  done
  # DNF5 spells --disableexcludes as the disable_excludes option.
  if [[ "${PACKAGE_MANAGER}" == dnf && "$(dnf --version 2>/dev/null || true)" == dnf5* ]]; then
    exclusions='--setopt=disable_excludes=kubernetes'
  fi
  "${PACKAGE_MANAGER}" install -y "${versions[@]}" "${exclusions}"
}

install_pinned() {
  log "installing $* at ${TARGET_VERSION}"
  case "${PACKAGE_MANAGER}" in
    apt-get) apt_install_pinned "$@" ;;
    *) rpm_install_pinned "$@" ;;
  esac
}

# The version (vX.Y.Z) of a component's static pod manifest on this node,
# from its image tag; empty when there is no such manifest.
manifest_version() {
  local manifest="${KUBERNETES_DIR}/manifests/$1.yaml"
  local line
  [[ -f "${manifest}" ]] || return 0
  while IFS= read -r line; do
    if [[ "${line}" =~ $1:(v[0-9]+\.[0-9]+\.[0-9]+) ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
  done <"${manifest}"
}
"#;

const KUBEADM_FUNCTIONS: &str = r#"
check_kubeadm_version() {
  local version
  version="$(kubeadm version -o short)"
  if [[ "${version}" != "v${TARGET_VERSION}" ]]; then
    fail "kubeadm reports ${version} after the install, not v${TARGET_VERSION}"
  fi
  log "kubeadm is v${TARGET_VERSION}"
}

# Whether this node's apiserver, controller-manager and scheduler run the
# target (etcd follows its own versions).
control_plane_at_target() {
  local component
  for component in kube-apiserver kube-controller-manager kube-scheduler; do
    [[ "$(manifest_version "${component}")" == "v${TARGET_VERSION}" ]] || return 1
  done
}
"#;

const CLUSTER_VERSION_FUNCTION: &str = r#"
# The cluster's kubernetesVersion (kubeadm-config), which kubeadm upgrade
# apply sets last; empty when it cannot be read (then apply runs again,
# which is safe).
cluster_version() {
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl --kubeconfig "${KUBERNETES_DIR}/admin.conf" --request-timeout=10s \
    -n kube-system get configmap kubeadm-config \
    -o 'jsonpath={.data.ClusterConfiguration}' 2>/dev/null |
    sed -n 's/^kubernetesVersion:[[:space:]]*//p' || true
}
"#;

const KUBELET_FUNCTIONS: &str = r#"
# A kubelet newer than its own node's control plane breaks the skew policy:
# refuse before touching a package.
check_control_plane_first() {
  local apiserver
  apiserver="$(manifest_version kube-apiserver)"
  if [[ "${apiserver}" =~ ^v1\.([0-9]+)\. ]] && ((BASH_REMATCH[1] < ${TARGET_MINOR#*.})); then
    fail "the control plane of ${NODE_NAME} runs ${apiserver}: upgrade it to v${TARGET_VERSION} before its kubelet"
  fi
}

# The kubelet version the Node reports; empty when it cannot be read (then
# the kubelet restarts, which is safe).
node_kubelet_version() {
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl --kubeconfig "${KUBERNETES_DIR}/kubelet.conf" --request-timeout=10s \
    get node "${NODE_NAME}" -o 'jsonpath={.status.nodeInfo.kubeletVersion}' 2>/dev/null || true
}
"#;

const MAIN_APPLY: &str = r#"
main() {
  log "upgrading the control plane of ${NODE_NAME} to v${TARGET_VERSION} (kubeadm upgrade apply)"
  detect_package_manager
  configure_repository
  install_pinned kubeadm
  check_kubeadm_version
  if control_plane_at_target && [[ "$(cluster_version)" == "v${TARGET_VERSION}" ]]; then
    log "the control plane of ${NODE_NAME} and the cluster configuration are at v${TARGET_VERSION} already: skipping kubeadm upgrade apply"
  else
    log "running kubeadm upgrade apply v${TARGET_VERSION}"
    kubeadm upgrade apply "v${TARGET_VERSION}" -y
  fi
  control_plane_at_target ||
    fail "kubeadm upgrade apply finished but the static pods of ${NODE_NAME} do not all run v${TARGET_VERSION}"
  log "the control plane of ${NODE_NAME} runs v${TARGET_VERSION}"
}

main
"#;

const MAIN_NODE: &str = r#"
main() {
  log "upgrading the control plane of ${NODE_NAME} to v${TARGET_VERSION} (kubeadm upgrade node)"
  detect_package_manager
  configure_repository
  install_pinned kubeadm
  check_kubeadm_version
  if control_plane_at_target; then
    log "the control plane of ${NODE_NAME} is at v${TARGET_VERSION} already: skipping kubeadm upgrade node"
  else
    log 'running kubeadm upgrade node'
    kubeadm upgrade node
  fi
  control_plane_at_target ||
    fail "kubeadm upgrade node finished but the static pods of ${NODE_NAME} do not all run v${TARGET_VERSION} (did kubeadm upgrade apply v${TARGET_VERSION} run on the first control-plane node?)"
  log "the control plane of ${NODE_NAME} runs v${TARGET_VERSION}"
}

main
"#;

const MAIN_KUBELET: &str = r#"
main() {
  log "upgrading kubelet and kubectl on ${NODE_NAME} to v${TARGET_VERSION}"
  check_control_plane_first
  detect_package_manager
  configure_repository
  install_pinned kubelet kubectl
  if [[ "$(node_kubelet_version)" == "v${TARGET_VERSION}" ]]; then
    log "the kubelet of ${NODE_NAME} runs v${TARGET_VERSION} already: not restarting it"
  else
    log 'restarting the kubelet'
    systemctl daemon-reload
    systemctl restart kubelet
  fi
  log "kubelet and kubectl on ${NODE_NAME} are at v${TARGET_VERSION}"
}

main
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_VERSION: KubeVersion = KubeVersion::new(1, 35, 2);

    /// Every variant with its golden file name.
    fn variants() -> Vec<(&'static str, Step)> {
        vec![
            (
                "upgrade-control-plane-first.sh",
                Step::UpgradeControlPlane {
                    version: GOLDEN_VERSION,
                    first: true,
                },
            ),
            (
                "upgrade-control-plane-other.sh",
                Step::UpgradeControlPlane {
                    version: GOLDEN_VERSION,
                    first: false,
                },
            ),
            (
                "upgrade-kubelet.sh",
                Step::UpgradeKubelet {
                    version: GOLDEN_VERSION,
                },
            ),
        ]
    }

    /// The rendered scripts equal their golden copies, which shellcheck
    /// checks (tests/it/controlplane_scripts.rs). `KUBESURGE_BLESS=1`
    /// rewrites the copies after an intended change.
    #[test]
    fn rendered_scripts_match_their_golden_copies() {
        let node = NodeFacts {
            name: "cp-1".into(),
        };
        for (file, step) in variants() {
            crate::controlplane::golden::assert_matches(file, &render(step, &node));
        }
    }

    #[test]
    fn scripts_pin_the_target_and_switch_the_repository_to_its_minor() {
        let node = NodeFacts {
            name: "cp-2".into(),
        };
        let version = KubeVersion::new(1, 34, 7);
        let script = render(
            Step::UpgradeControlPlane {
                version,
                first: false,
            },
            &node,
        );
        assert!(script.starts_with("#!/usr/bin/env bash\n"));
        assert!(script.contains("\nset -euo pipefail\n"));
        assert!(script.contains("readonly TARGET_VERSION='1.34.7'\n"));
        assert!(script.contains("readonly TARGET_MINOR='1.34'\n"));
        assert!(script.contains("readonly NODE_NAME='cp-2'\n"));
        assert!(script.contains(r#"versions+=("${package}=${TARGET_VERSION}-*")"#));
        assert!(script.contains(r#"versions+=("${package}-${TARGET_VERSION}-*")"#));
        assert!(script.contains("--disableexcludes=kubernetes"));
        assert!(script.contains("    kubeadm upgrade node\n"));
        assert!(!script.contains("kubeadm upgrade apply \""));
    }

    #[test]
    fn only_the_first_node_applies() {
        let node = NodeFacts {
            name: "cp-1".into(),
        };
        let version = KubeVersion::new(1, 35, 2);
        let first = render(
            Step::UpgradeControlPlane {
                version,
                first: true,
            },
            &node,
        );
        assert!(first.contains(r#"kubeadm upgrade apply "v${TARGET_VERSION}" -y"#));
        assert!(!first.contains("    kubeadm upgrade node\n"));
        let kubelet = render(Step::UpgradeKubelet { version }, &node);
        assert!(!kubelet.contains("kubeadm upgrade"));
        assert!(kubelet.contains("install_pinned kubelet kubectl"));
        assert!(kubelet.contains("systemctl restart kubelet"));
    }

    #[test]
    fn node_names_are_quoted_for_the_shell() {
        let node = NodeFacts {
            name: "it's; rm -rf /".into(),
        };
        let script = render(
            Step::UpgradeKubelet {
                version: GOLDEN_VERSION,
            },
            &node,
        );
        assert!(script.contains(r"readonly NODE_NAME='it'\''s; rm -rf /'"));
    }

    #[test]
    fn steps_describe_themselves() {
        let version = GOLDEN_VERSION;
        assert_eq!(
            Step::UpgradeControlPlane {
                version,
                first: true
            }
            .description(),
            "kubeadm upgrade apply v1.35.2"
        );
        assert_eq!(
            Step::UpgradeControlPlane {
                version,
                first: false
            }
            .description(),
            "kubeadm upgrade node to v1.35.2"
        );
        assert_eq!(Step::UpgradeKubelet { version }.version(), version);
    }
}
