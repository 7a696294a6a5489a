# shellcheck shell=bash source-path=SCRIPTDIR
source prelude.sh # @PRELUDE@: standins.rs writes prelude.sh in place of these two lines

# systemctl: the kubelet unit only.
# - `restart` after a package changed the unit file but before `daemon-reload`
#   warns as systemd does (systemd src/systemctl/systemctl-util.c,
#   warn_unit_file_changed) and still restarts.
# - An unknown unit exits 5, "program is not installed": systemd maps
#   NoSuchUnit to EXIT_NOTINSTALLED (systemctl-util.c,
#   translate_bus_error_to_exit_status; systemctl(1), "Exit status").
# The upgrade docs run `systemctl daemon-reload` then `systemctl restart
# kubelet` (https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/).
command=${1:-}
unit=${2:-}
case "${command}" in
  daemon-reload)
    rm -f "${STATE}/units/kubelet.changed"
    ;;
  restart | try-restart | start)
    if [[ "${unit%.service}" != kubelet || -z "$(installed kubelet)" ]]; then
      echo "Failed to ${command} ${unit%.service}.service: Unit ${unit%.service}.service not found." >&2
      exit 5
    fi
    if [[ -e "${STATE}/units/kubelet.changed" ]]; then
      echo "Warning: The unit file, source configuration file or drop-ins of kubelet.service changed on disk. Run 'systemctl daemon-reload' to reload units." >&2
    fi
    sim_control restart-kubelet
    ;;
  is-active)
    echo active
    ;;
  *)
    echo "kubesurge-sim: systemctl ${command} is not simulated" >&2
    exit 1
    ;;
esac
