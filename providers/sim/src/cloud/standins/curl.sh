# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# curl: serves the pkgs.k8s.io signing keys (deb Release.key, rpm
# repomd.xml.key) for the minors the repositories have
# (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/);
# the legacy repositories (apt.kubernetes.io, yum.kubernetes.io,
# packages.cloud.google.com) answer 404: they are gone
# (https://kubernetes.io/blog/2023/08/31/legacy-package-repository-deprecation/).
# Exit codes from curl(1), "EXIT CODES": 6 could not resolve host, 22 HTTP
# error with --fail, 23 write error.
fail_on_http_error=false
output=''
url=''
while (($#)); do
  case "$1" in
    -o | --output)
      output=${2:-}
      shift
      ;;
    --fail) fail_on_http_error=true ;;
    --silent | --show-error | --location) ;;
    -[fsSL]*)
      [[ "$1" == *f* ]] && fail_on_http_error=true
      ;;
    -*)
      echo "curl: option $1: is unknown" >&2
      exit 2
      ;;
    *) url=$1 ;;
  esac
  shift
done
host=${url#*://}
host=${host%%/*}
not_found() {
  if ${fail_on_http_error}; then
    echo "curl: (22) The requested URL returned error: 404" >&2
    exit 22
  fi
  echo '<html><body>404 Not Found</body></html>'
  exit 0
}
case "${url}" in
  https://pkgs.k8s.io/core:/stable:/v1.*/deb/Release.key | https://pkgs.k8s.io/core:/stable:/v1.*/rpm/repodata/repomd.xml.key)
    minor=${url#https://pkgs.k8s.io/core:/stable:/v1.}
    minor=${minor%%/*}
    if ! [[ "${minor}" =~ ^[0-9]+$ ]] || ((minor < MIN_MINOR || minor > MAX_MINOR)); then
      not_found
    fi
    key='-----BEGIN PGP PUBLIC KEY BLOCK-----
Comment: kubesurge-sim stand-in for the pkgs.k8s.io signing key

mQINBGMHoXcBEADJ2kWsbmVhXrBHvLdGyb1M6ZMnJ1kGEmFtMlzZpeTEu2cVmIlg
-----END PGP PUBLIC KEY BLOCK-----'
    ;;
  https://apt.kubernetes.io/* | https://yum.kubernetes.io/* | https://packages.cloud.google.com/*)
    not_found
    ;;
  *)
    echo "curl: (6) Could not resolve host: ${host}" >&2
    exit 6
    ;;
esac
if [[ -n "${output}" ]]; then
  if [[ "${output}" != "${ROOT}"/* ]]; then
    echo "curl: kubesurge-sim: refusing to write ${output} outside the machine's root" >&2
    exit 23
  fi
  printf '%s\n' "${key}" >"${output}"
else
  printf '%s\n' "${key}"
fi
