# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# dnf, and yum (on RHEL 8+ yum is dnf; on yum-only machines the same
# file stands in for yum): `install`/`upgrade` against the machine's
# /etc/yum.repos.d.
# - Repositories: baseurl, enabled and exclude/excludepkgs (dnf.conf(5));
#   --disableexcludes=<repo|all> lifts a repository's excludes (dnf(8)), as
#   the install and upgrade docs use with exclude=kubelet kubeadm kubectl
#   (https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/).
# - A removed repository (yum.kubernetes.io) or a pkgs.k8s.io minor that
#   does not exist fails on its metadata (Status code: 404, exit 1).
# - A spec that matches nothing says "No match for argument", one whose
#   matches are all excluded "All matches were filtered out by exclude
#   filtering for argument" (dnf/base.py), then "Error: Unable to find a
#   match" (dnf/cli/commands/install.py), exit 1.
# The release of the packages (1.35.2-150500.1.1) is filled in by
# standins.rs.
readonly TOOL=${0##*/}
readonly RELEASE='@RPM_RELEASE@'

# Enabled repositories: "<id><TAB><baseurl><TAB><excluded packages>".
repo_entry() {
  [[ -n "$1" && -n "$2" && "$3" != 0 ]] || return 0
  printf '%s\t%s\t%s\n' "$1" "$2" "${4//,/ }"
}

rpm_repos() {
  local file line section baseurl enabled exclude
  for file in "${ROOT}/etc/yum.repos.d"/*.repo; do
    [[ -f "${file}" ]] || continue
    section='' baseurl='' enabled=1 exclude=''
    while IFS= read -r line || [[ -n "${line}" ]]; do
      [[ "${line}" == '#'* ]] && continue
      if [[ "${line}" =~ ^\[(.+)\][[:space:]]*$ ]]; then
        repo_entry "${section}" "${baseurl}" "${enabled}" "${exclude}"
        section=${BASH_REMATCH[1]} baseurl='' enabled=1 exclude=''
      elif [[ "${line}" =~ ^([a-z_]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
        case "${BASH_REMATCH[1]}" in
          baseurl) baseurl=${BASH_REMATCH[2]} ;;
          enabled) enabled=${BASH_REMATCH[2]} ;;
          exclude | excludepkgs) exclude=${BASH_REMATCH[2]} ;;
        esac
      fi
    done <"${file}"
    repo_entry "${section}" "${baseurl}" "${enabled}" "${exclude}"
  done
}

metadata_error() {
  echo "Errors during downloading metadata for repository '$1':" >&2
  echo "  - Status code: 404 for ${2%/}/repodata/repomd.xml" >&2
  echo "Error: Failed to download metadata for repo '$1': Cannot download repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried" >&2
  exit 1
}

# The repositories a command reads, in repo_ids/repo_minors/repo_excludes:
# the enabled pkgs.k8s.io repositories of /etc/yum.repos.d and those of
# --repofrompath (added_ids/added_urls); with --repo, only those named
# (only_ids). A repository whose metadata cannot be read fails the command.
repo_ids=() repo_minors=() repo_excludes=() added_ids=() added_urls=() only_ids=()
load_repositories() {
  local id baseurl exclude minor index wanted
  while IFS=$'\t' read -r id baseurl exclude; do
    if ((${#only_ids[@]})); then
      wanted=false
      for index in "${only_ids[@]}"; do
        [[ "${index}" == "${id}" ]] && wanted=true
      done
      ${wanted} || continue
    fi
    case "${baseurl}" in
      *yum.kubernetes.io* | *packages.cloud.google.com/yum*)
        metadata_error "${id}" "${baseurl}"
        ;;
      https://pkgs.k8s.io/core:/stable:/v1.*/rpm/ | https://pkgs.k8s.io/core:/stable:/v1.*/rpm)
        minor=${baseurl#https://pkgs.k8s.io/core:/stable:/v1.}
        minor=${minor%%/*}
        if ! [[ "${minor}" =~ ^[0-9]+$ ]] || ((minor < MIN_MINOR || minor > MAX_MINOR)); then
          metadata_error "${id}" "${baseurl}"
        fi
        repo_ids+=("${id}")
        repo_minors+=("${minor}")
        repo_excludes+=(" ${exclude} ")
        ;;
    esac
  done < <(
    rpm_repos
    for index in "${!added_ids[@]}"; do
      repo_entry "${added_ids[index]}" "${added_urls[index]}" 1 ''
    done
  )
}

# The newest version (1.35.2-150500.1.1) the repositories offer for spec
# $1 into best, its package name into name; filtered=true when only
# excluded packages match. $2.. are the repositories whose excludes are
# lifted (or all). With match_all=true, every match is printed as a NEVRA
# instead.
match_all=false
match_spec() {
  local spec=$1 package pattern='*' index id excluded patch candidate
  shift
  name='' best='' filtered=false
  for package in "${KUBERNETES_PACKAGES[@]}"; do
    if [[ "${spec}" == "${package}" ]]; then
      name=${package}
    elif [[ "${spec}" == "${package}"-[0-9]* ]]; then
      name=${package}
      pattern=${spec#"${package}"-}
    fi
  done
  [[ -n "${name}" ]] || return 0
  for index in "${!repo_ids[@]}"; do
    excluded=false
    if [[ "${repo_excludes[index]}" == *" ${name} "* ]]; then
      excluded=true
      for id in "$@"; do
        if [[ "${id}" == all || "${id}" == "${repo_ids[index]}" ]]; then
          excluded=false
        fi
      done
    fi
    for ((patch = 0; patch <= MAX_PATCH; patch++)); do
      candidate="1.${repo_minors[index]}.${patch}-${RELEASE}"
      # shellcheck disable=SC2053 # the requested version is a glob
      [[ "${candidate}" == ${pattern} ]] || continue
      if ${excluded}; then
        filtered=true
        continue
      fi
      if ${match_all}; then
        printf '%s-0:%s.x86_64\n' "${name}" "${candidate}"
      fi
      if [[ -z "${best}" ]] || (($(version_key "${candidate}") > $(version_key "${best}"))); then
        best=${candidate}
      fi
    done
  done
}

cmd_install() {
  local assume_yes=false disabled=() specs=() missing=() names=() versions=() changes=()
  local argument spec name best filtered index current
  for argument in "$@"; do
    case "${argument}" in
      -y | --assumeyes) assume_yes=true ;;
      -q | --quiet | --refresh) ;;
      --disableexcludes=*) disabled+=("${argument#--disableexcludes=}") ;;
      --setopt=disable_excludes=*) disabled+=("${argument#--setopt=disable_excludes=}") ;;
      -*)
        echo "${TOOL}: error: unrecognized arguments: ${argument}" >&2
        exit 2
        ;;
      *) specs+=("${argument}") ;;
    esac
  done
  load_repositories
  echo 'Last metadata expiration check: 0:00:01 ago.'
  for spec in "${specs[@]}"; do
    match_spec "${spec}" "${disabled[@]}"
    if [[ -z "${best}" ]]; then
      if ${filtered}; then
        echo "All matches were filtered out by exclude filtering for argument: ${spec}" >&2
      else
        echo "No match for argument: ${spec}" >&2
      fi
      missing+=("${spec}")
      continue
    fi
    names+=("${name}")
    versions+=("${best}")
  done
  if ((${#missing[@]})); then
    echo "Error: Unable to find a match: ${missing[*]}" >&2
    exit 1
  fi
  for index in "${!names[@]}"; do
    current="$(installed "${names[index]}")"
    if [[ "${current}" == "${versions[index]}" ]]; then
      echo "Package ${names[index]}-${current}.x86_64 is already installed."
      continue
    fi
    if [[ "${names[index]}" == kubelet ]] && ! kubelet_after_control_plane "${versions[index]}"; then
      echo "Error: Transaction test error" >&2
      exit 1
    fi
    changes+=("${index}")
  done
  echo 'Dependencies resolved.'
  if ((${#changes[@]} == 0)); then
    echo 'Nothing to do.'
    echo 'Complete!'
    return 0
  fi
  if ! ${assume_yes}; then
    echo 'Is this ok [y/N]: Operation aborted.'
    exit 1
  fi
  mkdir -p "${STATE}/installed" "${STATE}/units"
  echo 'Upgraded:'
  for index in "${changes[@]}"; do
    printf '%s\n' "${versions[index]}" >"${STATE}/installed/${names[index]}"
    echo "  ${names[index]}-${versions[index]}.x86_64"
    if [[ "${names[index]}" == kubelet ]]; then
      : >"${STATE}/units/kubelet.changed"
    fi
  done
  echo 'Complete!'
}

# repoquery: every version the repositories offer for each spec, one
# NEVRA a line (name-epoch:version-release.arch, dnf's default format);
# nothing, and exit 0, for a spec that matches nothing. It changes nothing.
# --repofrompath=<id>,<url> adds a repository for this command only and
# --repo=<id> restricts the query to the repositories named (dnf(8),
# https://dnf.readthedocs.io/en/latest/command_ref.html#repoquery-command).
cmd_repoquery() {
  local specs=() disabled=() argument spec name best filtered
  while (($#)); do
    argument=$1
    case "${argument}" in
      -q | --quiet) ;;
      --repofrompath=*,* | --repofrompath)
        if [[ "${argument}" == --repofrompath ]]; then
          argument=--repofrompath=${2:-}
          shift
        fi
        argument=${argument#--repofrompath=}
        added_ids+=("${argument%%,*}")
        added_urls+=("${argument#*,}")
        ;;
      --repo=* | --repoid=*) only_ids+=("${argument#*=}") ;;
      --disableexcludes=*) disabled+=("${argument#--disableexcludes=}") ;;
      -*)
        echo "${TOOL}: error: unrecognized arguments: ${argument}" >&2
        exit 2
        ;;
      *) specs+=("${argument}") ;;
    esac
    shift
  done
  load_repositories
  match_all=true
  for spec in "${specs[@]}"; do
    match_spec "${spec}" "${disabled[@]}"
  done
}

case "${1:-}" in
  install | upgrade)
    shift
    cmd_install "$@"
    ;;
  repoquery)
    shift
    cmd_repoquery "$@"
    ;;
  --version)
    echo '4.14.0'
    ;;
  makecache)
    echo 'Metadata cache created.'
    ;;
  *)
    echo "No such command: ${1:-}. Please use /usr/bin/${TOOL} --help" >&2
    exit 1
    ;;
esac
