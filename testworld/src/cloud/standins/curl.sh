# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# curl: serves the pkgs.k8s.io signing keys (deb Release.key, rpm
# repomd.xml.key) for the minors the repositories have
# (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/);
# the legacy repositories (apt.kubernetes.io, yum.kubernetes.io,
# packages.cloud.google.com) answer 404: they are gone
# (https://kubernetes.io/blog/2023/08/31/legacy-package-repository-deprecation/).
# It also serves what the repositories' readers fetch, from the same
# contents apt-get and dnf install from (minors MIN_MINOR..MAX_MINOR, patches
# 0..MAX_PATCH, the packages' revision and release):
# - the package index of a deb repository: pkgs.k8s.io's are flat
#   repositories, whose `Packages` sits at the repository's root
#   (https://wiki.debian.org/DebianRepository/Format#Flat_Repository_Format),
#   a stanza per package version with deb-control(5) fields;
# - an rpm repository's `repodata/repomd.xml` (its metadata's index,
#   as createrepo_c writes it, https://github.com/rpm-software-management/createrepo_c).
# A minor without a repository answers 404, like the rest of pkgs.k8s.io.
# Exit codes from curl(1), "EXIT CODES": 6 could not resolve host, 22 HTTP
# error with --fail, 23 write error.
readonly DEB_REVISION='@DEB_REVISION@'
readonly RPM_RELEASE='@RPM_RELEASE@'

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
# Sets minor to the minor of a pkgs.k8s.io URL whose repository exists;
# answers 404 otherwise.
repository_minor() {
  minor=${url#https://pkgs.k8s.io/core:/stable:/v1.}
  minor=${minor%%/*}
  if ! [[ "${minor}" =~ ^[0-9]+$ ]] || ((minor < MIN_MINOR || minor > MAX_MINOR)); then
    not_found
  fi
}
# The deb package index of a minor's repository.
deb_packages() {
  local package patch
  for package in "${KUBERNETES_PACKAGES[@]}"; do
    for ((patch = 0; patch <= MAX_PATCH; patch++)); do
      printf 'Package: %s\nArchitecture: amd64\nVersion: 1.%s.%s-%s\nFilename: %s_1.%s.%s-%s_amd64.deb\n\n' \
        "${package}" "$1" "${patch}" "${DEB_REVISION}" "${package}" "$1" "${patch}" "${DEB_REVISION}"
    done
  done
}
case "${url}" in
  https://pkgs.k8s.io/core:/stable:/v1.*/deb/Packages)
    repository_minor
    body="$(deb_packages "${minor}")"
    ;;
  https://pkgs.k8s.io/core:/stable:/v1.*/rpm/repodata/repomd.xml)
    repository_minor
    body="<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<repomd xmlns=\"http://linux.duke.edu/metadata/repo\">
  <revision>1.${minor}.${MAX_PATCH}-${RPM_RELEASE}</revision>
  <data type=\"primary\"><location href=\"repodata/primary.xml.gz\"/></data>
</repomd>"
    ;;
  https://pkgs.k8s.io/core:/stable:/v1.*/deb/Release.key | https://pkgs.k8s.io/core:/stable:/v1.*/rpm/repodata/repomd.xml.key)
    repository_minor
    body='-----BEGIN PGP PUBLIC KEY BLOCK-----
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
  printf '%s\n' "${body}" >"${output}"
else
  printf '%s\n' "${body}"
fi
