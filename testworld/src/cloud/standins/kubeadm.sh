# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# kubeadm: `kubeadm version` answers here, as the real one does
# (https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-version/:
# `-o short` prints the bare version, no flag prints version.Info); every
# other subcommand (upgrade plan/apply/node) goes to the world. Without the
# package installed the shell says "command not found" (exit 127).
version="$(installed kubeadm)"
if [[ -z "${version}" ]]; then
  echo "bash: kubeadm: command not found" >&2
  exit 127
fi
version="v${version%%-*}"

case "${1:-}" in
  version)
    shift
    case "$*" in
      '-o short' | '--output=short' | '--output short' | '-o=short')
        echo "${version}"
        ;;
      '')
        printf 'kubeadm version: &version.Info{Major:"1", Minor:"%s", GitVersion:"%s", GitCommit:"0000000000000000000000000000000000000000", GitTreeState:"clean", BuildDate:"2025-01-01T00:00:00Z", GoVersion:"go1.24.0", Compiler:"gc", Platform:"linux/amd64"}\n' \
          "$(minor_of "${version}")" "${version}"
        ;;
      *)
        echo "error: unsupported output format: $*" >&2
        exit 1
        ;;
    esac
    ;;
  *)
    sim_control kubeadm "$@"
    ;;
esac
