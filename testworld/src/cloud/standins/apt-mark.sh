# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# apt-mark: hold, unhold and showhold of the Kubernetes packages, with
# apt-mark's own messages (apt-mark(8); apt's cmdline/apt-mark.cc).
command=${1:-}
shift || true
case "${command}" in
  hold | unhold)
    for package in "$@"; do
      if ! is_kubernetes_package "${package}"; then
        echo "E: Unable to locate package ${package}" >&2
        exit 100
      fi
    done
    mkdir -p "${STATE}/held"
    for package in "$@"; do
      if [[ "${command}" == hold ]]; then
        if [[ -e "${STATE}/held/${package}" ]]; then
          echo "${package} was already set on hold."
        else
          : >"${STATE}/held/${package}"
          echo "${package} set on hold."
        fi
      elif [[ -e "${STATE}/held/${package}" ]]; then
        rm -f "${STATE}/held/${package}"
        echo "Canceled hold on ${package}."
      else
        echo "${package} was already not on hold."
      fi
    done
    ;;
  showhold)
    for package in "${KUBERNETES_PACKAGES[@]}"; do
      if [[ -e "${STATE}/held/${package}" ]]; then
        echo "${package}"
      fi
    done
    ;;
  *)
    echo "E: Invalid operation ${command}" >&2
    exit 100
    ;;
esac
