//! Running the control-plane scripts on nodes without a cloud API: over SSH
//! ([`SshExec`]) or on this machine ([`LocalExec`]). Both implement
//! [`NodeExec`](kubesurge_provider::NodeExec); the SSM one lives with the
//! aws provider.
//!
//! Both feed the script to `bash -s` on stdin, never on a command line: no
//! quoting, nothing in `ps`, no argument-length limit. The script is wrapped
//! in a brace group with stdin from `/dev/null` ([`wrap_script`]) so that
//! bash reads all of it before running any of it: a command in the script
//! that reads stdin (a package manager asking a question) cannot swallow the
//! rest of the script, and a script with a syntax error runs nothing.

pub mod local;
pub mod ssh;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use kubesurge_provider::{ExecOutput, OutputSink};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use local::LocalExec;
pub use ssh::{DEFAULT_SSH_PORT, SshConfig, SshExec, SshSettings};

/// Why the settings give no way to run scripts on control-plane nodes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ExecSettingsError {
    #[error(
        "controlPlane.exec is not set: say how kubesurge reaches control-plane nodes (ssm, ssh or local)"
    )]
    NoMethod,
    #[error("controlPlane.ssh.user is required with controlPlane.exec: ssh")]
    NoSshUser,
    #[error(
        "controlPlane.node is required with controlPlane.exec: local: name the control-plane node kubesurge runs on"
    )]
    NoLocalNode,
    #[error("controlPlane.exec: {method} is not available in this build of kubesurge")]
    Unavailable { method: &'static str },
}

/// Longest line passed to the sink in one piece; longer runs without a
/// newline (binary noise) are cut so that one line cannot take all memory.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Output kept per stream for [`ExecOutput`]: the tail, which is what error
/// messages show. Everything still goes to the sink.
const MAX_CAPTURED_BYTES: usize = 1024 * 1024;

/// After the script's process exits, how long output still held open by
/// something it left running in the background is read before returning.
const OUTPUT_LINGER: Duration = Duration::from_secs(2);

/// The script as bash reads it from stdin: one brace group, so bash parses
/// all of it before running any of it, with the group's stdin from
/// `/dev/null`, so no command in it can read the rest of the script. The
/// group opens on the script's first line, which keeps line numbers in
/// bash's error messages those of the script.
pub fn wrap_script(script: &str) -> String {
    wrap_script_after("", script)
}

/// [`wrap_script`] with `prelude` (commands ending in `;`) run first, on
/// the same line.
pub(crate) fn wrap_script_after(prelude: &str, script: &str) -> String {
    let mut wrapped = String::with_capacity(prelude.len() + script.len() + 32);
    wrapped.push_str("{ :; ");
    wrapped.push_str(prelude);
    wrapped.push_str(script);
    if !script.ends_with('\n') {
        wrapped.push('\n');
    }
    wrapped.push_str("} </dev/null\n");
    wrapped
}

/// How a script's process ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// It exited (any status); everything it printed, and whether the
    /// start marker came (see [`run_process`]).
    Exited { output: ExecOutput, started: bool },
    /// The deadline passed; its process group was killed.
    TimedOut,
}

/// Run `command` (which reads a script on stdin) with `stdin` written to
/// it, streaming its output lines to `sink` as `node`, until it exits or
/// `timeout` passes. The command runs in its own process group, which is
/// killed on timeout and if this future is dropped before the end.
///
/// A stderr line equal to `start_marker` is neither passed on nor kept: it
/// only tells that the script itself started.
pub(crate) async fn run_process(
    mut command: Command,
    stdin: String,
    timeout: Duration,
    node: &str,
    sink: &dyn OutputSink,
    start_marker: Option<&str>,
) -> io::Result<Finished> {
    let deadline = Instant::now() + timeout;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut group = GroupKiller(child.id());

    // The writer and readers are tasks so that a script larger than a pipe
    // buffer cannot deadlock against output nobody reads yet.
    if let Some(mut input) = child.stdin.take() {
        tokio::spawn(async move {
            // A process that exits early (a syntax error) closes its stdin:
            // that is its outcome to report, not a write error.
            let _ = input.write_all(stdin.as_bytes()).await;
            let _ = input.shutdown().await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, String)>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);

    let mut stdout = Captured::default();
    let mut stderr = Captured::default();
    let mut status: Option<ExitStatus> = None;
    let mut started = false;
    let mut output_open = true;
    let mut stop_reading_at = deadline;
    while status.is_none() || output_open {
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some((stream, text)) => {
                    let line = text.trim_end_matches(['\n', '\r']);
                    if matches!(stream, Stream::Stderr) && !started && start_marker == Some(line) {
                        started = true;
                        continue;
                    }
                    sink.line(node, line);
                    match stream {
                        Stream::Stdout => stdout.push(&text),
                        Stream::Stderr => stderr.push(&text),
                    }
                }
                None => output_open = false,
            },
            exited = child.wait(), if status.is_none() => {
                let exited = exited?;
                // Reaped: its group id may be reused from now on.
                group.disarm();
                status = Some(exited);
                stop_reading_at = deadline.min(Instant::now() + OUTPUT_LINGER);
            },
            () = tokio::time::sleep_until(stop_reading_at) => {
                if status.is_some() {
                    break;
                }
                group.kill();
                // Reap it; SIGKILL cannot be ignored, the bound is a guard.
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                return Ok(Finished::TimedOut);
            }
        }
    }
    let code = status.map_or(-1, exit_code);
    Ok(Finished::Exited {
        output: ExecOutput {
            exit_code: code,
            stdout: stdout.finish(),
            stderr: stderr.finish(),
        },
        started,
    })
}

/// The shell's convention for a process killed by a signal: 128 + signal.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[derive(Clone, Copy, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

/// Forward `stream` line by line (newline kept when there is one).
async fn read_lines(
    mut stream: impl AsyncRead + Unpin,
    which: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = line_end(&pending) {
            let line: Vec<u8> = pending.drain(..end).collect();
            if tx
                .send((which, String::from_utf8_lossy(&line).into_owned()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx
            .send((which, String::from_utf8_lossy(&pending).into_owned()))
            .await;
    }
}

/// Where the first complete line of `pending` ends (after its newline), or
/// where an overlong one is cut.
fn line_end(pending: &[u8]) -> Option<usize> {
    match pending.iter().position(|b| *b == b'\n') {
        Some(newline) if newline < MAX_LINE_BYTES => Some(newline + 1),
        _ if pending.len() >= MAX_LINE_BYTES => Some(MAX_LINE_BYTES),
        _ => None,
    }
}

/// The tail of one output stream, at most [`MAX_CAPTURED_BYTES`] of it.
#[derive(Default)]
struct Captured {
    text: String,
    dropped: usize,
}

impl Captured {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        // Trim in large steps so that the cost stays linear.
        if self.text.len() > 2 * MAX_CAPTURED_BYTES {
            let mut cut = self.text.len() - MAX_CAPTURED_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
            self.dropped += cut;
        }
    }

    fn finish(mut self) -> String {
        if self.text.len() > MAX_CAPTURED_BYTES {
            let mut cut = self.text.len() - MAX_CAPTURED_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
            self.dropped += cut;
        }
        if self.dropped == 0 {
            return self.text;
        }
        format!(
            "[{} earlier bytes of output not kept]\n{}",
            self.dropped, self.text
        )
    }
}

/// SIGKILL to a process group unless disarmed: on timeout, and when the
/// future running the script is dropped half-way.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(&mut self) {
        self.0 = None;
    }

    /// Through `sh`'s `kill`: the crate has no unsafe code, so no `kill(2)`.
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = std::process::Command::new("sh")
                .args(["-c", "kill -s KILL -- \"-$1\" 2>/dev/null", "sh"])
                .arg(group.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapped_script_keeps_line_numbers_and_ends_the_group() {
        assert_eq!(
            wrap_script("set -e\necho hi\n"),
            "{ :; set -e\necho hi\n} </dev/null\n"
        );
        // A last line without a newline (a heredoc terminator) stays whole.
        assert_eq!(
            wrap_script("cat <<EOF\nx\nEOF"),
            "{ :; cat <<EOF\nx\nEOF\n} </dev/null\n"
        );
        // An empty script is still a valid group.
        assert_eq!(wrap_script(""), "{ :; \n} </dev/null\n");
    }

    #[test]
    fn lines_end_at_newlines_and_overlong_ones_are_cut() {
        assert_eq!(line_end(b"ab\ncd"), Some(3));
        assert_eq!(line_end(b"abcd"), None);
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        assert_eq!(line_end(&long), Some(MAX_LINE_BYTES));
    }

    #[test]
    fn captured_output_keeps_the_tail_and_says_how_much_was_dropped() {
        let mut captured = Captured::default();
        let line = format!("{}\n", "é".repeat(1000));
        for _ in 0..1500 {
            captured.push(&line);
        }
        let text = captured.finish();
        assert!(text.starts_with("[") && text.contains("earlier bytes of output not kept]\n"));
        assert!(text.len() <= MAX_CAPTURED_BYTES + 64);
        assert!(text.ends_with(&line));
    }
}
