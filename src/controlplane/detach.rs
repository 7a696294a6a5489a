//! A control-plane command that outlives the connection that started it.
//!
//! Over SSH, and on this machine, the script's output goes back through a
//! pipe to the kubesurge process. When that process dies (Ctrl-C, SIGTERM
//! from a CronJob or from Terraform, a dropped connection), the remote
//! shell and `kubeadm` die of SIGPIPE at their next line of output or of
//! the SIGHUP of the closed session: `kubeadm upgrade apply` stops half-way
//! and its own rollback never runs (kubeadm restores a component's manifest
//! only when the command itself sees the failure:
//! `cmd/kubeadm/app/phases/upgrade/staticpods.go`, `rollbackOldManifests`).
//!
//! So every control-plane command is sent wrapped in [`wrap`]: the wrapper
//! starts the command in a session of its own (`setsid`), with its output
//! going to a file on the node and its exit status recorded there, and only
//! follows that file back to the caller (`tail --pid`). Whatever happens to
//! the caller, the command runs to its end (or to its own timeout).
//!
//! A node-wide `flock` on `/var/lib/kubesurge/exec/node.lock`, held by the
//! detached command until it ends, makes sure there is never a second
//! kubesurge command on a node while one is alive: a rerun that sends the
//! same command (same text, so the same key) re-attaches to the running one
//! and reports its result; a different command is refused with
//! [`BUSY_EXIT`]. A finished command's result stays on the node: sent again,
//! a command that succeeded less than [`REUSE_SUCCESS_FOR`] ago is reported
//! without running it again (the rerun of an interrupted run gets the
//! result the interrupted run missed; the follower of a caller that went
//! away may outlive it, so no follower can know it was the last to look);
//! a failure is shown and the command run again.
//!
//! Limit: on a host whose systemd-logind kills a session's processes when
//! it ends (`KillUserProcesses=yes`; not the default of the distributions
//! kubeadm supports), a new session does not leave the login's cgroup and
//! the command dies with the connection; SSM-run commands are not affected.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Exit status of the wrapper when another kubesurge command is running on
/// the node (EX_TEMPFAIL of sysexits.h: try again later).
pub const BUSY_EXIT: i32 = 75;

/// How long a success stands for the same command sent again: a rerun
/// within it gets the result instead of a second run. The same text is only
/// ever sent for the same node, step and target version, whose effect that
/// success put in place; older results are removed from the node.
pub const REUSE_SUCCESS_FOR: Duration = Duration::from_secs(6 * 3600);

/// How long the command itself may run on the node (`timeout -k 10s`).
/// The caller's own deadline should be the same: whichever ends first, the
/// command does not outlive it by more than the kill grace.
const KILL_GRACE: &str = "10s";

/// The key of a command: the start of the SHA-256 of its text. The same
/// command sent again by a rerun has the same key.
pub fn key(script: &str) -> String {
    let digest = Sha256::digest(script.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// `script` wrapped so that it runs detached from the caller under the
/// node's kubesurge lock, with `timeout` as its own limit on the node.
pub fn wrap(script: &str, timeout: Duration) -> String {
    let key = key(script);
    let terminator = heredoc_terminator(&key, script);
    let mut body = script.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    WRAPPER
        .replace("@KEY@", &key)
        .replace("@TIMEOUT@", &timeout.as_secs().max(1).to_string())
        .replace("@KILL_GRACE@", KILL_GRACE)
        .replace("@REUSE@", &REUSE_SUCCESS_FOR.as_secs().to_string())
        .replace("@BUSY@", &BUSY_EXIT.to_string())
        .replace("@TERMINATOR@", &terminator)
        .replace("@SCRIPT@", &body)
}

/// A heredoc terminator no line of `script` equals.
fn heredoc_terminator(key: &str, script: &str) -> String {
    let mut terminator = format!("KUBESURGE_COMMAND_{key}");
    while script.lines().any(|line| line == terminator) {
        terminator.push('_');
    }
    terminator
}

/// The wrapper. `@SCRIPT@` is replaced last, so nothing in the script is
/// ever taken for a placeholder.
const WRAPPER: &str = r#"# kubesurge: the command below runs detached from this connection (its own
# session, output to a file on the node) under the node's kubesurge lock;
# this shell only follows its output. Paths are under KUBESURGE_ROOT, which is
# unset on a real node.
set -u
readonly ks_base="${KUBESURGE_ROOT:-}/var/lib/kubesurge/exec"
readonly ks_dir="${ks_base}/@KEY@"
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
    if [ $(( ks_now - ${ks_when:-0} )) -ge @REUSE@ ]; then
      rm -rf "${ks_old%/result}"
    fi
  done
  if [ -f "${ks_dir}/result" ]; then
    read -r ks_code ks_finished <"${ks_dir}/result" || ks_code=1
    ks_age=$(( ks_now - ${ks_finished:-0} ))
    if [ "${ks_code}" = 0 ] && [ "${ks_age}" -lt @REUSE@ ]; then
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
  cat >"${ks_dir}/command" <<'@TERMINATOR@'
@SCRIPT@@TERMINATOR@
  : >"${ks_dir}/output"
  # Its own session, nothing of this connection's: it keeps fd 9 (the lock)
  # until it has written its result, and the command itself runs without it
  # so that nothing the command leaves behind holds the lock. (The inner
  # script's expansions are its own: single quotes on purpose.)
  # shellcheck disable=SC2016
  setsid bash -c '
    timeout -k @KILL_GRACE@ @TIMEOUT@s bash "$1/command" >"$1/output" 2>&1 </dev/null 9>&-
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
    exit @BUSY@
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
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The wrapper around a small command equals its golden copy, which
    /// shellcheck checks with the scripts (tests/it/controlplane_scripts.rs);
    /// `KUBESURGE_BLESS=1` rewrites it after an intended change.
    #[test]
    fn the_wrapper_matches_its_golden_copy() {
        let rendered = format!(
            "#!/usr/bin/env bash\n{}",
            wrap("kubeadm upgrade node\n", Duration::from_secs(1800))
        );
        crate::controlplane::golden::assert_matches("detached-command.sh", &rendered);
    }

    #[test]
    fn the_same_command_has_the_same_key_and_another_command_another() {
        assert_eq!(key("kubeadm upgrade apply"), key("kubeadm upgrade apply"));
        assert_ne!(key("kubeadm upgrade apply"), key("kubeadm upgrade node"));
        assert_eq!(key("x").len(), 24);
    }

    #[test]
    fn the_script_is_carried_verbatim_in_a_quoted_heredoc() {
        let script = "echo \"$HOME\" '@KEY@' `date`\necho done";
        let wrapped = wrap(script, Duration::from_secs(90));
        let terminator = format!("KUBESURGE_COMMAND_{}", key(script));
        assert!(wrapped.contains(&format!("<<'{terminator}'\n{script}\n{terminator}\n")));
        assert!(wrapped.contains("timeout -k 10s 90s bash"));
    }

    #[test]
    fn a_line_equal_to_the_terminator_gets_another_terminator() {
        let script = "cat <<X\nKUBESURGE_COMMAND_k\nKUBESURGE_COMMAND_k_\nX\n";
        assert_eq!(heredoc_terminator("k", script), "KUBESURGE_COMMAND_k__");
        assert_eq!(heredoc_terminator("j", script), "KUBESURGE_COMMAND_j");
    }
}
