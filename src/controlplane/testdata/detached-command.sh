#!/usr/bin/env bash
# kubesurge: the command below runs detached from this connection (its own
# session, output to a file on the node) under the node's kubesurge lock;
# this shell only follows its output. Paths are under KUBESURGE_ROOT, which is
# unset on a real node.
set -u
readonly ks_base="${KUBESURGE_ROOT:-}/var/lib/kubesurge/exec"
readonly ks_dir="${ks_base}/b27c68319a0e21a4cc0d4ace"
ks_note() { printf 'kubesurge-exec: %s\n' "$*" >&2; }
# Exit with the finished command's exit status (the result stays: see
# kubesurge's controlplane/detach.rs).
ks_collect() {
  local code
  read -r code _ <"${ks_dir}/result" || code=1
  exit "${code}"
}
mkdir -p "${ks_base}" || exit 1
exec 9>>"${ks_base}/node.lock"
if flock -n 9; then
  ks_now=$(date +%s)
  for ks_old in "${ks_base}"/*/result; do
    [ -f "${ks_old}" ] || continue
    read -r _ ks_when <"${ks_old}" || ks_when=0
    if [ $(( ks_now - ${ks_when:-0} )) -ge 21600 ]; then
      rm -rf "${ks_old%/result}"
    fi
  done
  if [ -f "${ks_dir}/result" ]; then
    read -r ks_code ks_finished <"${ks_dir}/result" || ks_code=1
    ks_age=$(( ks_now - ${ks_finished:-0} ))
    if [ "${ks_code}" = 0 ] && [ "${ks_age}" -lt 21600 ]; then
      ks_note "this command already ran to success ${ks_age}s ago for a caller that went away; not running it again. Its output:"
      cat "${ks_dir}/output"
      ks_collect
    fi
    ks_note "an earlier attempt of this command ended with exit ${ks_code} ${ks_age}s ago; its last lines:"
    tail -n 20 "${ks_dir}/output" >&2
    ks_note "running it again"
  fi
  rm -rf "${ks_dir}"
  mkdir -p "${ks_dir}" || exit 1
  cat >"${ks_dir}/command" <<'KUBESURGE_COMMAND_b27c68319a0e21a4cc0d4ace'
kubeadm upgrade node
KUBESURGE_COMMAND_b27c68319a0e21a4cc0d4ace
  : >"${ks_dir}/output"
  # Its own session, nothing of this connection's: it keeps fd 9 (the lock)
  # until it has written its result, and the command itself runs without it
  # so that nothing the command leaves behind holds the lock. (The inner
  # script's expansions are its own: single quotes on purpose.)
  # shellcheck disable=SC2016
  setsid bash -c '
    timeout -k 10s 1800s bash "$1/command" >"$1/output" 2>&1 </dev/null 9>&-
    code=$?
    printf "%s %s\n" "${code}" "$(date +%s)" >"$1/result.partial"
    mv "$1/result.partial" "$1/result"
  ' kubesurge-exec "${ks_dir}" </dev/null >/dev/null 2>&1 &
  printf '%s\n' "$!" >"${ks_dir}/pid"
  exec 9>&-
else
  # Another kubesurge command holds the node: the same one (re-attach) or a
  # different one (refuse). The holder writes its pid right after starting.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -s "${ks_dir}/pid" ] || [ -f "${ks_dir}/result" ] && break
    sleep 0.5
  done
  if [ ! -s "${ks_dir}/pid" ] && [ ! -f "${ks_dir}/result" ]; then
    ks_note "another kubesurge command is running on this node (see ${ks_base}); not starting a second one: rerun when it has ended"
    exit 75
  fi
  ks_note "this command is already running on this node, started by an earlier kubesurge; following it"
fi
exec 9>&-
ks_pid=$(cat "${ks_dir}/pid")
tail -n +1 -s 0.2 -f --pid="${ks_pid}" "${ks_dir}/output"
# The result is written before the command's process ends; a moment for
# the file system.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -f "${ks_dir}/result" ] && ks_collect
  sleep 0.5
done
ks_note "the command (pid ${ks_pid}) ended without recording its exit status"
exit 1
