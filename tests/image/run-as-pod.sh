#!/usr/bin/env bash
# Runs a command in an unpacked image's rootfs the way the scheduled
# module's pod runs its container (terraform/modules/scheduled), without a
# container runtime: in a private mount namespace (`unshare -m`), the root
# read-only (readOnlyRootFilesystem), an empty writable /tmp (the module's
# emptyDir), the config directory read-only at /etc/kubesurge (the
# ConfigMap volume), the service-account files read-only where the kubelet
# mounts them, and the process as uid/gid 65532 (runAsUser/runAsGroup).
# The network is the caller's (loopback reaches the test world).
#
#   tests/image/run-as-pod.sh ROOTFS CONFIG_DIR SERVICE_ACCOUNT_DIR COMMAND [ARGS...]
#
# The environment is passed through as given: the caller sets the pod's.
set -euo pipefail

if [ "$#" -lt 4 ]; then
  echo "usage: $0 ROOTFS CONFIG_DIR SERVICE_ACCOUNT_DIR COMMAND [ARGS...]" >&2
  exit 2
fi

if [ -z "${KUBESURGE_IN_POD_NAMESPACE:-}" ]; then
  # Mounts made from here on vanish with the namespace when the command
  # ends, and never reach the host.
  KUBESURGE_IN_POD_NAMESPACE=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
unset KUBESURGE_IN_POD_NAMESPACE

root=$1
config_dir=$2
service_account_dir=$3
shift 3

# Where the kubelet mounts the projected service-account volume
# (https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#opt-out-of-api-credential-automounting
# and kubernetes pkg/kubelet/kubelet_pods.go makeMounts); /var/run is a
# symlink to /run in Debian, so the mount point is made through /run.
service_account_mount=/run/secrets/kubernetes.io/serviceaccount
config_mount=/etc/kubesurge

# The runtime creates the mount points before the root turns read-only.
mkdir -p "$root$service_account_mount" "$root$config_mount" "$root/tmp" "$root/proc" "$root/dev"

mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount --bind "$config_dir" "$root$config_mount"
mount -o remount,bind,ro "$root$config_mount"
mount --bind "$service_account_dir" "$root$service_account_mount"
mount -o remount,bind,ro "$root$service_account_mount"
mount -o remount,bind,ro "$root"

# chroot lives in sbin, which the pod's PATH may not have: found here,
# and the PATH given passes to the command untouched.
chroot_program=$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot)
exec "$chroot_program" --userspec=65532:65532 "$root" "$@"
