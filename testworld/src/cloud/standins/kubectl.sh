# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# kubectl: every call goes to the world, which answers as the API server
# would; without the package installed the shell says "command not found".
if [[ -z "$(installed kubectl)" ]]; then
  echo "bash: kubectl: command not found" >&2
  exit 127
fi
sim_control kubectl "$@"
