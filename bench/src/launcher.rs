//! Where `kubesurge` is started from: a small process of its own.
//!
//! Linux records, at `exec`, the high-water RSS of the process image being
//! replaced into the new program's `maxrss` (`setmax_mm_hiwater_rss` in
//! `exec_mmap`), so a child spawned by the world's process would report
//! the world's peak memory as its own. The scenario process therefore
//! starts this launcher (this binary with `--launcher`) before it builds
//! the world, while it is still small, and has it spawn every `kubesurge`
//! run: one JSON request per line on stdin, one JSON answer per line on
//! stdout, with the launcher's `getrusage(RUSAGE_CHILDREN)` after each run.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::measure::{self, Usage};

/// How often the launcher looks whether the child has exited: the wall
/// time's resolution.
const EXIT_POLL: Duration = Duration::from_millis(5);
/// How often the launcher adds up the memory of the run's process tree.
const TREE_SAMPLE: Duration = Duration::from_millis(100);

/// Run `program args…` with stdout and stderr to files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub timeout_s: f64,
}

/// How it went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Launched {
    /// `exit status: 0`, or why it could not run.
    pub status: String,
    pub success: bool,
    pub timed_out: bool,
    pub wall_s: f64,
    /// Every child the launcher has waited for so far.
    pub children: Usage,
    /// The largest resident memory of this run's whole process tree (the
    /// program and its children at once), sampled every
    /// [`TREE_SAMPLE`], KiB.
    #[serde(default)]
    pub tree_peak_rss_kib: u64,
}

/// The launcher process's loop.
pub fn serve() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Launch>(&line) {
            Ok(request) => launch(&request),
            Err(e) => Launched {
                status: format!("bad request: {e}"),
                ..Launched::default()
            },
        };
        let Ok(text) = serde_json::to_string(&answer) else {
            return ExitCode::FAILURE;
        };
        if writeln!(stdout, "{text}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn launch(request: &Launch) -> Launched {
    let usage = || measure::children().unwrap_or_default();
    let failed = |status: String| Launched {
        status,
        children: usage(),
        ..Launched::default()
    };
    let (stdout, stderr) = match (
        std::fs::File::create(&request.stdout),
        std::fs::File::create(&request.stderr),
    ) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => return failed(format!("cannot create its output files: {e}")),
    };
    let mut command = Command::new(&request.program);
    command
        .args(&request.args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for name in &request.env_remove {
        command.env_remove(name);
    }
    for (name, value) in &request.env {
        command.env(name, value);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(request.timeout_s.max(0.0));
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", request.program.display())),
    };
    // A bounded poll: std has no wait with a deadline, and the launcher
    // must be able to stop a hung run; the tree's memory is sampled on the
    // way, as no counter of the kernel adds it up.
    let mut tree_peak_rss_kib = 0;
    let mut next_sample = started;
    let status = loop {
        if Instant::now() >= next_sample {
            tree_peak_rss_kib = tree_peak_rss_kib.max(measure::tree_rss_kib(child.id()));
            next_sample += TREE_SAMPLE;
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(true);
            }
            Ok(None) => std::thread::sleep(EXIT_POLL),
            Err(_) => break Err(false),
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    match status {
        Ok(status) => Launched {
            status: status.to_string(),
            success: status.success(),
            timed_out: false,
            wall_s,
            children: usage(),
            tree_peak_rss_kib,
        },
        Err(timed_out) => Launched {
            status: if timed_out {
                "killed at its deadline".into()
            } else {
                "lost track of it".into()
            },
            success: false,
            timed_out,
            wall_s,
            children: usage(),
            tree_peak_rss_kib,
        },
    }
}

/// The scenario process's end of a launcher.
pub struct Launcher {
    _child: Child,
    requests: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Launcher {
    /// Start one; do it before the world makes this process big.
    pub fn start() -> std::io::Result<Launcher> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--launcher")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let missing = || std::io::Error::other("the launcher's pipes are missing");
        let requests = child.stdin.take().ok_or_else(missing)?;
        let answers = BufReader::new(child.stdout.take().ok_or_else(missing)?).lines();
        Ok(Launcher {
            _child: child,
            requests,
            answers,
        })
    }

    pub async fn run(&mut self, launch: &Launch) -> std::io::Result<Launched> {
        let mut line = serde_json::to_string(launch).map_err(std::io::Error::other)?;
        line.push('\n');
        self.requests.write_all(line.as_bytes()).await?;
        self.requests.flush().await?;
        let answer = self
            .answers
            .next_line()
            .await?
            .ok_or_else(|| std::io::Error::other("the launcher exited"))?;
        serde_json::from_str(&answer).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dir: &std::path::Path, script: &str, timeout_s: f64) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("BENCH_GREETING".into(), "hello".into())],
            env_remove: vec!["HOME".into()],
            stdout: dir.join("out"),
            stderr: dir.join("err"),
            timeout_s,
        }
    }

    #[test]
    fn a_run_writes_its_output_files_and_reports_its_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let ok = launch(&request(
            dir.path(),
            "echo \"$BENCH_GREETING ${HOME:-unset}\"; echo oops >&2",
            30.0,
        ));
        assert!(ok.success && !ok.timed_out, "{ok:?}");
        let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert_eq!(out, "hello unset\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "oops\n"
        );
        assert!(ok.children.max_rss_kib > 0, "the child was accounted");
        let tree = launch(&request(dir.path(), "sleep 0.3 & sleep 0.3; wait", 30.0));
        assert!(tree.success && tree.tree_peak_rss_kib > 0, "{tree:?}");

        let failed = launch(&request(dir.path(), "exit 3", 30.0));
        assert!(!failed.success && !failed.timed_out);
        assert!(failed.status.contains('3'), "{}", failed.status);
    }

    #[test]
    fn a_run_past_its_deadline_is_killed_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let hung = launch(&request(dir.path(), "exec sleep 30", 0.2));
        assert!(hung.timed_out && !hung.success, "{hung:?}");
        assert!(hung.wall_s < 10.0, "{hung:?}");
    }

    #[test]
    fn a_program_that_cannot_start_is_a_failure_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut missing = request(dir.path(), "", 1.0);
        missing.program = dir.path().join("no-such-program");
        let r = launch(&missing);
        assert!(!r.success && r.status.contains("cannot start"), "{r:?}");
    }
}
