# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# gpg: only `gpg --dearmor -o <keyring>`, as the install docs use it to
# store the pkgs.k8s.io key
# (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/).
# gpg(1): an existing output file is overwritten only with --yes; otherwise
# gpg asks on the terminal, which a script run has not, so it fails on
# /dev/tty.
dearmor=false
overwrite=false
output=''
while (($#)); do
  case "$1" in
    --dearmor) dearmor=true ;;
    --batch | --no-tty | --quiet | -q) ;;
    --yes) overwrite=true ;;
    -o | --output)
      output=${2:-}
      shift
      ;;
    --output=*) output=${1#*=} ;;
    *)
      echo "gpg: kubesurge-sim: unsupported argument $1" >&2
      exit 2
      ;;
  esac
  shift
done
if ! ${dearmor}; then
  echo "gpg: kubesurge-sim: only --dearmor is simulated" >&2
  exit 2
fi
input="$(cat)"
if [[ "${input}" != *'-----BEGIN PGP PUBLIC KEY BLOCK-----'* ]]; then
  echo 'gpg: no valid OpenPGP data found.' >&2
  exit 2
fi
if [[ -z "${output}" || "${output}" == - ]]; then
  printf 'kubesurge-sim dearmored key\n'
  exit 0
fi
if [[ "${output}" != "${ROOT}"/* ]]; then
  echo "gpg: kubesurge-sim: refusing to write ${output} outside the machine's root" >&2
  exit 2
fi
if [[ -e "${output}" ]] && ! ${overwrite}; then
  echo "gpg: cannot open '/dev/tty': No such device or address" >&2
  exit 2
fi
printf 'kubesurge-sim dearmored key\n' >"${output}"
