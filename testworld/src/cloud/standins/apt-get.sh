# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# apt-get: `update` and `install`, against the machine's sources.
# - Sources: one-line `deb [options] uri suite` lines and deb822 stanzas
#   (sources.list(5)), with signed-by naming the keyring.
# - `update` fails on the removed apt.kubernetes.io ("does not have a
#   Release file") and on a pkgs.k8s.io repository whose key is missing
#   ("is not signed", NO_PUBKEY 234654DA9A296436, the pkgs.k8s.io key);
#   apt-get(8): exit 100 on error.
# - `install pkg=version` takes a version glob, as the upgrade docs'
#   kubeadm='1.35.x-*' (https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/).
# - With -y, changing a held package or downgrading fails unless allowed:
#   apt's apt-private/private-install.cc (InstallPackages) refuses with
#   "Held packages were changed and -y was used without
#   --allow-change-held-packages." and "Packages were downgraded and -y was
#   used without --allow-downgrades."; without -y the prompt aborts.
# The revision of the packages (1.35.2-1.1) is filled in by standins.rs.
readonly LISTS="${ROOT}/var/lib/apt/lists/kubesurge-sim-kubernetes"
readonly REVISION='@DEB_REVISION@'

apt_error() {
  echo "E: $*" >&2
  exit 100
}

# One active one-line source: "<uri> <suite> <keyring or ->".
one_line_source() {
  local words=() keyring=- index=1 option
  read -r -a words <<<"$1"
  if ((${#words[@]} < 3)) || [[ "${words[0]}" != deb ]]; then
    return 0
  fi
  if [[ "${words[1]}" == '['* ]]; then
    while ((index < ${#words[@]})); do
      option=${words[index]#[}
      option=${option%]}
      [[ "${option}" == signed-by=* ]] && keyring=${option#signed-by=}
      [[ "${words[index]}" == *']' ]] && break
      index=$((index + 1))
    done
    index=$((index + 1))
  fi
  ((index + 1 < ${#words[@]})) || return 0
  printf '%s %s %s\n' "${words[index]}" "${words[index + 1]}" "${keyring}"
}

deb822_stanza() {
  local uri_list=() suite_list=() uri
  [[ -n "$1" && "$4" != no ]] || return 0
  read -r -a uri_list <<<"$1"
  read -r -a suite_list <<<"$2"
  for uri in "${uri_list[@]}"; do
    printf '%s %s %s\n' "${uri}" "${suite_list[0]:-/}" "$3"
  done
}

deb822_sources() {
  local line key value uris='' suites='' keyring=- enabled=yes
  while IFS= read -r line || [[ -n "${line}" ]]; do
    if [[ -z "${line//[[:space:]]/}" ]]; then
      deb822_stanza "${uris}" "${suites}" "${keyring}" "${enabled}"
      uris='' suites='' keyring=- enabled=yes
      continue
    fi
    [[ "${line}" == '#'* || "${line}" != *:* ]] && continue
    key=${line%%:*}
    value=${line#*:}
    value=${value#"${value%%[![:space:]]*}"}
    case "${key,,}" in
      uris) uris=${value} ;;
      suites) suites=${value} ;;
      signed-by) keyring=${value} ;;
      enabled) enabled=${value,,} ;;
    esac
  done <"$1"
  deb822_stanza "${uris}" "${suites}" "${keyring}" "${enabled}"
}

apt_sources() {
  local file line
  for file in "${ROOT}/etc/apt/sources.list" "${ROOT}/etc/apt/sources.list.d"/*.list; do
    [[ -f "${file}" ]] || continue
    while IFS= read -r line || [[ -n "${line}" ]]; do
      one_line_source "${line}"
    done <"${file}"
  done
  for file in "${ROOT}/etc/apt/sources.list.d"/*.sources; do
    [[ -f "${file}" ]] || continue
    deb822_sources "${file}"
  done
}

trusted() {
  if [[ "$1" == - ]]; then
    compgen -G "${ROOT}/etc/apt/trusted.gpg.d/*" >/dev/null
  else
    [[ -s "${ROOT}$1" ]]
  fi
}

cmd_update() {
  local uri suite keyring minor number=0 failed=false minors=()
  while read -r uri suite keyring; do
    number=$((number + 1))
    case "${uri}" in
      *apt.kubernetes.io* | *packages.cloud.google.com/apt*)
        echo "Ign:${number} ${uri} ${suite} InRelease"
        echo "Err:${number} ${uri} ${suite} Release"
        echo "  404  Not Found"
        echo "E: The repository '${uri} ${suite} Release' does not have a Release file." >&2
        failed=true
        ;;
      https://pkgs.k8s.io/core:/stable:/v1.*/deb/ | https://pkgs.k8s.io/core:/stable:/v1.*/deb)
        minor=${uri#https://pkgs.k8s.io/core:/stable:/v1.}
        minor=${minor%%/*}
        if ! [[ "${minor}" =~ ^[0-9]+$ ]] || ((minor < MIN_MINOR || minor > MAX_MINOR)); then
          echo "Err:${number} ${uri} ${suite} InRelease"
          echo "  404  Not Found"
          echo "E: The repository '${uri} ${suite} InRelease' does not have a Release file." >&2
          failed=true
        elif ! trusted "${keyring}"; then
          echo "Get:${number} ${uri} ${suite} InRelease [1186 B]"
          echo "Err:${number} ${uri} ${suite} InRelease"
          echo "  The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 234654DA9A296436"
          echo "E: The repository '${uri} ${suite} InRelease' is not signed." >&2
          failed=true
        else
          echo "Hit:${number} ${uri} ${suite} InRelease"
          minors+=("${minor}")
        fi
        ;;
      *)
        echo "Hit:${number} ${uri} ${suite} InRelease"
        ;;
    esac
  done < <(apt_sources)
  echo 'Reading package lists...'
  mkdir -p "${LISTS%/*}"
  if ((${#minors[@]})); then
    printf '%s\n' "${minors[@]}" >"${LISTS}"
  else
    : >"${LISTS}"
  fi
  if ${failed}; then
    exit 100
  fi
}

cmd_install() {
  local assume_yes=false allow_held=false allow_downgrades=false
  local specs=() minors=() names=() versions=() changes=() held_changed=() downgraded=()
  local argument spec name pattern candidate best minor patch index current
  for argument in "$@"; do
    case "${argument}" in
      -y | --yes | --assume-yes) assume_yes=true ;;
      -q | -qq | --quiet) ;;
      --allow-change-held-packages) allow_held=true ;;
      --allow-downgrades) allow_downgrades=true ;;
      -*) apt_error "Command line option '${argument}' is not understood in combination with the other options" ;;
      *) specs+=("${argument}") ;;
    esac
  done
  if [[ -f "${LISTS}" ]]; then
    mapfile -t minors <"${LISTS}"
  fi
  echo 'Reading package lists...'
  echo 'Building dependency tree...'
  echo 'Reading state information...'
  for spec in "${specs[@]}"; do
    name=${spec%%=*}
    pattern='*'
    [[ "${spec}" == *=* ]] && pattern=${spec#*=}
    if ! is_kubernetes_package "${name}" || ((${#minors[@]} == 0)); then
      apt_error "Unable to locate package ${name}"
    fi
    best=''
    for minor in "${minors[@]}"; do
      for ((patch = 0; patch <= MAX_PATCH; patch++)); do
        candidate="1.${minor}.${patch}-${REVISION}"
        # shellcheck disable=SC2053 # the requested version is a glob
        [[ "${candidate}" == ${pattern} ]] || continue
        if [[ -z "${best}" ]] || (($(version_key "${candidate}") > $(version_key "${best}"))); then
          best=${candidate}
        fi
      done
    done
    [[ -n "${best}" ]] || apt_error "Version '${pattern}' for '${name}' was not found"
    names+=("${name}")
    versions+=("${best}")
  done
  for index in "${!names[@]}"; do
    name=${names[index]}
    current="$(installed "${name}")"
    if [[ "${current}" == "${versions[index]}" ]]; then
      echo "${name} is already the newest version (${current})."
      continue
    fi
    if [[ "${name}" == kubelet ]] && ! kubelet_after_control_plane "${versions[index]}"; then
      exit 100
    fi
    if [[ -e "${STATE}/held/${name}" ]] && ! ${allow_held}; then
      held_changed+=("${name}")
    fi
    if [[ -n "${current}" ]] && (($(version_key "${versions[index]}") < $(version_key "${current}"))) && ! ${allow_downgrades}; then
      downgraded+=("${name}")
    fi
    changes+=("${index}")
  done
  if ((${#changes[@]} == 0)); then
    echo '0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.'
    return 0
  fi
  if ((${#held_changed[@]})); then
    echo 'The following held packages will be changed:'
    echo "  ${held_changed[*]}"
    apt_error 'Held packages were changed and -y was used without --allow-change-held-packages.'
  fi
  if ((${#downgraded[@]})); then
    echo 'The following packages will be DOWNGRADED:'
    echo "  ${downgraded[*]}"
    apt_error 'Packages were downgraded and -y was used without --allow-downgrades.'
  fi
  if ! ${assume_yes}; then
    echo 'Do you want to continue? [Y/n] Abort.'
    exit 1
  fi
  mkdir -p "${STATE}/installed" "${STATE}/units"
  for index in "${changes[@]}"; do
    name=${names[index]}
    echo "Unpacking ${name} (${versions[index]}) ..."
    printf '%s\n' "${versions[index]}" >"${STATE}/installed/${name}"
    echo "Setting up ${name} (${versions[index]}) ..."
    if [[ "${name}" == kubelet ]]; then
      : >"${STATE}/units/kubelet.changed"
    fi
  done
}

command=''
arguments=()
for argument in "$@"; do
  if [[ -z "${command}" && "${argument}" != -* ]]; then
    command=${argument}
  else
    arguments+=("${argument}")
  fi
done
case "${command}" in
  update) cmd_update ;;
  install) cmd_install "${arguments[@]}" ;;
  *) apt_error "Invalid operation ${command}" ;;
esac
