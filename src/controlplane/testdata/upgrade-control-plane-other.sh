#!/usr/bin/env bash
# kubesurge: upgrade the control plane of this node with kubeadm upgrade node
# (after kubeadm upgrade apply ran on the first control-plane node).
#
# Rendered by kubesurge. Safe to run again: a step that is already done is
# skipped. Every path is read under KUBESURGE_ROOT, which is unset on a real
# node (kubesurge's test world sets it to run this very script).
set -euo pipefail

readonly NODE_NAME='cp-1'
readonly TARGET_VERSION='1.35.2'
readonly TARGET_MINOR='1.35'

readonly ROOT="${KUBESURGE_ROOT:-}"
readonly KUBERNETES_DIR="${ROOT}/etc/kubernetes"
readonly APT_SOURCES="${ROOT}/etc/apt/sources.list"
readonly APT_SOURCES_DIR="${ROOT}/etc/apt/sources.list.d"
readonly APT_KEYRINGS_DIR="${ROOT}/etc/apt/keyrings"
readonly YUM_REPOS_DIR="${ROOT}/etc/yum.repos.d"
# pkgs.k8s.io has one repository per minor. The legacy apt.kubernetes.io and
# yum.kubernetes.io repositories were removed on 2024-03-04.
readonly REPO_URL="https://pkgs.k8s.io/core:/stable:/v${TARGET_MINOR}"
readonly KUBERNETES_REPOS='pkgs\.k8s\.io|pkgs\.kubernetes\.io|packages\.kubernetes\.io|apt\.kubernetes\.io|yum\.kubernetes\.io|packages\.cloud\.google\.com/(apt|yum)'
readonly LEGACY_REPOS='apt\.kubernetes\.io|yum\.kubernetes\.io|packages\.cloud\.google\.com/(apt|yum)'

export DEBIAN_FRONTEND=noninteractive

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
