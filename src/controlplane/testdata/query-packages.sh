#!/usr/bin/env bash
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
readonly QUERIES=('1.36.0 kubeadm kubelet kubectl' '1.37.2 kubeadm')
readonly REPO_BASE='https://pkgs.k8s.io/core:/stable:/v'
# The repository --repofrompath adds for one dnf command.
readonly QUERY_REPO_ID='kubesurge-query'

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
