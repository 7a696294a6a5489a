//! The SSH and local `NodeExec`: scripts through the real OpenSSH client
//! against a real `sshd` that each test starts on loopback with generated
//! host and user keys, and through a local `bash`.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubesurge::exec::{ExecSettingsError, LocalExec, SshConfig, SshExec};
use kubesurge::settings::{ExecMethod, Settings};
use kubesurge::wiring::{WiringError, node_exec};
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
use tempfile::TempDir;

const SSHD: &str = "/usr/sbin/sshd";
const NODE: &str = "cp-1";

/// A private sshd on 127.0.0.1, running as the current user.
struct Sshd {
    dir: TempDir,
    port: u16,
    child: Child,
    user: String,
    user_key: PathBuf,
    other_key: PathBuf,
    known_hosts: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts one; a port taken between choosing and binding it is retried.
    fn start() -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "sshd is required for these tests and was not found at {SSHD}: \
             install openssh-server (tests/run.sh does)"
        );
        let dir = TempDir::new().expect("temp dir");
        let host_key = keygen(dir.path(), "host_key");
        let user_key = keygen(dir.path(), "user_key");
        let other_key = keygen(dir.path(), "other_key");
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(user_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let user = command_output("id", &["-un"]);
        if command_output("id", &["-u"]) == "0" {
            // sshd started as root insists on its privilege-separation dir.
            std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        }
        let known_hosts = dir.path().join("known_hosts");
        let config = dir.path().join("sshd_config");
        let log = dir.path().join("sshd.log");
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PidFile {}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n",
                    host_key.display(),
                    authorized.display(),
                    dir.path().join("sshd.pid").display(),
                ),
            )
            .expect("sshd_config");
            std::fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {}\n", public_key(&host_key)),
            )
            .expect("known_hosts");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("sshd log"))
                .spawn()
                .expect("sshd starts");
            if wait_listening(&mut child, port) {
                return Sshd {
                    dir,
                    port,
                    child,
                    user,
                    user_key,
                    other_key,
                    known_hosts,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start:\n{last_log}");
    }

    /// Connects as the current user with the authorised key and the right
    /// known_hosts. The scripts run as that user: no sudo in these tests.
    fn config(&self) -> SshConfig {
        SshConfig {
            port: self.port,
            identity_file: Some(self.user_key.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            sudo: false,
            ..SshConfig::new(self.user.clone())
        }
    }

    fn exec(&self) -> SshExec {
        SshExec::new(self.config())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Until sshd accepts connections on `port`, or it exited.
fn wait_listening(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {name}");
    path
}

/// `ssh-ed25519 AAAA…` of a key pair.
fn public_key(private: &Path) -> String {
    let text = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn command_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A loopback port nothing listens on (right now).
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The target as the control-plane phase builds it: the node's name and
/// its InternalIP.
fn target() -> ExecTarget {
    ExecTarget {
        node: NODE.into(),
        instance: None,
        address: Some("127.0.0.1".into()),
    }
}

fn request(script: impl Into<String>, timeout: Duration) -> ExecRequest {
    ExecRequest {
        script: script.into(),
        description: "test script".into(),
        timeout,
    }
}

/// Every line the sink received, and an action on one of them.
struct Recorder {
    lines: Mutex<Vec<(String, String)>>,
    on_line: Option<(String, PathBuf)>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            lines: Mutex::new(Vec::new()),
            on_line: None,
        }
    }

    /// Creates `file` when `line` arrives.
    fn touching(line: &str, file: PathBuf) -> Self {
        Recorder {
            lines: Mutex::new(Vec::new()),
            on_line: Some((line.into(), file)),
        }
    }

    fn lines(&self) -> Vec<(String, String)> {
        self.lines.lock().expect("lock").clone()
    }
}

impl OutputSink for Recorder {
    fn line(&self, node: &str, line: &str) {
        self.lines
            .lock()
            .expect("lock")
            .push((node.to_string(), line.to_string()));
        if let Some((expected, file)) = &self.on_line
            && line == expected
        {
            std::fs::write(file, "go").expect("write the go file");
        }
    }
}

async fn run(
    exec: &dyn NodeExec,
    script: &str,
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    let sink = Recorder::new();
    exec.run(&target(), &request(script, timeout), &sink).await
}

// ---------------------------------------------------------------------------
// Behaviour shared by both transports.

/// Output reaches the sink while the script runs (the script waits for
/// the test to see its third line), in order, and is returned.
async fn streams_line_by_line(exec: &dyn NodeExec, dir: &Path) {
    let go = dir.join("go");
    let script = format!(
        r#"set -euo pipefail
echo one
echo two >&2
echo "waiting for the test"
for _ in $(seq 1 1000); do [ -e '{go}' ] && break; sleep 0.01; done
[ -e '{go}' ] || {{ echo "the line never reached the test" >&2; exit 9; }}
echo three
"#,
        go = go.display()
    );
    let sink = Recorder::touching("waiting for the test", go);
    let output = exec
        .run(&target(), &request(script, Duration::from_secs(30)), &sink)
        .await
        .expect("the script runs");
    assert_eq!(
        output,
        ExecOutput {
            exit_code: 0,
            stdout: "one\nwaiting for the test\nthree\n".into(),
            stderr: "two\n".into(),
        }
    );
    let lines = sink.lines();
    assert!(lines.iter().all(|(node, _)| node == NODE), "{lines:?}");
    let stdout_lines: Vec<&str> = lines
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(|line| *line != "two")
        .collect();
    assert_eq!(stdout_lines, ["one", "waiting for the test", "three"]);
    assert_eq!(lines.len(), 4, "{lines:?}");
}

/// A failing script is an outcome, with its code and output — 255
/// included, which ssh also uses for its own failures.
async fn nonzero_exit_is_returned(exec: &dyn NodeExec) {
    let output = run(
        exec,
        "echo partial\necho 'E: broken' >&2\nexit 7\n",
        Duration::from_secs(30),
    )
    .await
    .expect("a failing script is an outcome");
    assert_eq!(output.exit_code, 7);
    assert_eq!(output.stdout, "partial\n");
    assert_eq!(output.stderr, "E: broken\n");
    assert_eq!(output.tail(1), "E: broken");

    let output = run(
        exec,
        "echo 'ls: cannot open directory: Permission denied' >&2\nexit 255\n",
        Duration::from_secs(30),
    )
    .await
    .expect("a script exiting 255 is an outcome");
    assert_eq!(output.exit_code, 255);

    // A script that does not parse runs nothing, not even its first line.
    let output = run(
        exec,
        "echo first\nif true; then\n  echo never\n",
        Duration::from_secs(30),
    )
    .await
    .expect("bash's verdict is an outcome");
    assert_eq!((output.exit_code, output.stdout.as_str()), (2, ""));
    assert!(output.stderr.contains("syntax error"), "{}", output.stderr);

    // set -e stops at the first failing command.
    let output = run(
        exec,
        "set -euo pipefail\necho before\nfalse\necho after\n",
        Duration::from_secs(30),
    )
    .await
    .expect("outcome");
    assert_eq!((output.exit_code, output.stdout.as_str()), (1, "before\n"));
}

/// Past the timeout the call returns `Timeout` promptly, and the script
/// and what it started are gone.
async fn timeout_kills_the_script(exec: &dyn NodeExec, dir: &Path, timeout: Duration) {
    let pid = dir.join("pid");
    let child = dir.join("child");
    let script = format!(
        "echo $$ > '{pid}'\nsleep 30 &\necho $! > '{child}'\necho started\nwait\n",
        pid = pid.display(),
        child = child.display()
    );
    let started = Instant::now();
    let result = run(exec, &script, timeout).await;
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        Err(ExecError::Timeout {
            node: NODE.into(),
            after: timeout,
        })
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(5),
        "returned after {elapsed:?}"
    );
    let pids: Vec<u32> = [&pid, &child]
        .iter()
        .map(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("the script started and wrote {file:?}: {e}"))
                .trim()
                .parse()
                .expect("a pid")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "the script's processes {pids:?} are still running after its timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A script of more than 20 KB full of quotes, `$`, backticks,
/// backslashes, `%` and heredocs arrives byte for byte, on stdin: it is in
/// no process's command line, and a command in it that reads stdin finds
/// it empty instead of eating the rest of the script.
async fn large_script_arrives_intact(exec: &dyn NodeExec) {
    let marker = format!("kubesurge-marker-{:016x}", rand_u64());
    let mut payload = String::new();
    let mut i = 0;
    while payload.len() < 21 * 1024 {
        payload.push_str(&format!(
            "{i:04} single ' double \" backtick ` dollar $HOME ${{x}} $(echo no) \\ back\\slash %s %% }} {{ tab\t é 日本 {marker}\n"
        ));
        i += 1;
    }
    let script = format!(
        r#"#!/usr/bin/env bash
set -euo pipefail
if read -r stolen; then echo "stdin gave: $stolen"; else echo "stdin is empty"; fi
cat <<'PAYLOAD'
{payload}PAYLOAD
x=41
echo "sum: $((x + 1)) and '${{x}}' and \$x"
printf '%s\n' 'single "quotes" $x `x`'
cat <<EOF
expanded: $x ${{x}} \$x
EOF
m=$(mktemp)
cat >"$m" <<'MARK'
{marker}
MARK
n=$(grep -lsaF -f "$m" /proc/[0-9]*/cmdline | wc -l || true)
rm -f "$m"
echo "processes with the script in their command line: $n"
echo done
"#
    );
    assert!(script.len() > 20 * 1024, "{} bytes", script.len());
    let sink = Recorder::new();
    let output = exec
        .run(&target(), &request(script, Duration::from_secs(30)), &sink)
        .await
        .expect("the script runs");
    let expected = format!(
        "stdin is empty\n{payload}sum: 42 and '41' and $x\nsingle \"quotes\" $x `x`\n\
         expanded: 41 41 $x\nprocesses with the script in their command line: 0\ndone\n"
    );
    assert_eq!(output.stderr, "");
    assert_eq!(output.exit_code, 0);
    assert!(
        output.stdout == expected,
        "the output differs:\n{}",
        output.stdout
    );
    assert_eq!(sink.lines().len(), expected.lines().count());
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

// ---------------------------------------------------------------------------
// SSH

#[tokio::test]
async fn ssh_script_output_streams_line_by_line_in_order() {
    let sshd = Sshd::start();
    streams_line_by_line(&sshd.exec(), sshd.dir.path()).await;
}

#[tokio::test]
async fn ssh_nonzero_exit_is_the_scripts_outcome() {
    let sshd = Sshd::start();
    nonzero_exit_is_returned(&sshd.exec()).await;
}

#[tokio::test]
async fn ssh_timeout_kills_the_script_on_the_node() {
    let sshd = Sshd::start();
    timeout_kills_the_script(&sshd.exec(), sshd.dir.path(), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn ssh_large_script_arrives_intact_through_stdin() {
    let sshd = Sshd::start();
    large_script_arrives_intact(&sshd.exec()).await;
}

/// The script that must not have run.
fn touch_script(sshd: &Sshd) -> (String, PathBuf) {
    let ran = sshd.path("ran");
    (format!("touch '{}'\n", ran.display()), ran)
}

#[tokio::test]
async fn ssh_unknown_or_changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let (script, ran) = touch_script(&sshd);

    let empty = sshd.path("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let changed = sshd.path("changed_known_hosts");
    std::fs::write(
        &changed,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port,
            public_key(&sshd.other_key)
        ),
    )
    .expect("write");

    for known_hosts in [empty, changed] {
        let exec = SshExec::new(SshConfig {
            known_hosts: Some(known_hosts.clone()),
            ..sshd.config()
        });
        match run(&exec, &script, Duration::from_secs(30)).await {
            Err(ExecError::Transport { node, message }) => {
                assert_eq!(node, NODE);
                assert!(
                    message.contains("Host key verification failed")
                        && message.contains(&known_hosts.display().to_string()),
                    "{known_hosts:?}: {message}"
                );
            }
            other => panic!("{known_hosts:?}: expected a transport error, got {other:?}"),
        }
    }
    assert!(!ran.exists(), "the script ran despite the host key");
}

#[tokio::test]
async fn ssh_wrong_user_key_is_refused() {
    let sshd = Sshd::start();
    let (script, ran) = touch_script(&sshd);
    let exec = SshExec::new(SshConfig {
        identity_file: Some(sshd.other_key.clone()),
        ..sshd.config()
    });
    match run(&exec, &script, Duration::from_secs(30)).await {
        Err(ExecError::Transport { message, .. }) => {
            assert!(message.contains("Permission denied"), "{message}");
            assert!(message.contains(&sshd.user), "{message}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(
        !ran.exists(),
        "the script ran with a key that is not authorised"
    );
}

#[tokio::test]
async fn ssh_closed_port_is_unreachable() {
    let sshd = Sshd::start();
    let exec = SshExec::new(SshConfig {
        port: free_port(),
        ..sshd.config()
    });
    match run(&exec, "true\n", Duration::from_secs(30)).await {
        Err(ExecError::Unreachable { node, message }) => {
            assert_eq!(node, NODE);
            assert!(message.contains("Connection refused"), "{message}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

/// With no address the node name is the host to connect to.
#[tokio::test]
async fn ssh_connects_to_the_node_name_without_an_address() {
    let sshd = Sshd::start();
    let target = ExecTarget {
        node: "127.0.0.1".into(),
        instance: None,
        address: None,
    };
    let output = sshd
        .exec()
        .run(
            &target,
            &request("echo hello\n", Duration::from_secs(30)),
            &(),
        )
        .await
        .expect("runs");
    assert_eq!(output.stdout, "hello\n");
}

// ---------------------------------------------------------------------------
// Local

#[tokio::test]
async fn local_script_output_streams_line_by_line_in_order() {
    let dir = TempDir::new().expect("temp dir");
    streams_line_by_line(&LocalExec::new(), dir.path()).await;
}

#[tokio::test]
async fn local_nonzero_exit_is_the_scripts_outcome() {
    nonzero_exit_is_returned(&LocalExec::new()).await;
}

#[tokio::test]
async fn local_timeout_kills_the_whole_process_group() {
    let dir = TempDir::new().expect("temp dir");
    timeout_kills_the_script(&LocalExec::new(), dir.path(), Duration::from_millis(500)).await;
}

/// A caller that gives up (the run is aborted) takes the script with it.
#[tokio::test]
async fn local_dropping_the_call_kills_the_script() {
    let dir = TempDir::new().expect("temp dir");
    let pid = dir.path().join("pid");
    let script = format!(
        "sleep 30 &\necho $! > '{pid}'\necho started\nwait\n",
        pid = pid.display()
    );
    let ready = dir.path().join("ready");
    let sink = Recorder::touching("started", ready.clone());
    let exec = LocalExec::new();
    let (target, request) = (target(), request(script, Duration::from_secs(60)));
    let call = exec.run(&target, &request, &sink);
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::pin!(call);
        loop {
            tokio::select! {
                result = &mut call => panic!("the script ended on its own: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    if ready.exists() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the script never said it started");
    let pid: u32 = std::fs::read_to_string(&pid)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the script's sleep {pid} outlived the call"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn local_large_script_arrives_intact_through_stdin() {
    large_script_arrives_intact(&LocalExec::new()).await;
}

// ---------------------------------------------------------------------------
// Wiring

#[test]
fn node_exec_follows_control_plane_exec() {
    let mut settings = Settings::default();
    let message = |settings: &Settings| match node_exec(settings) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    assert!(matches!(
        node_exec(&settings),
        Err(WiringError::NodeExec(ExecSettingsError::NoMethod))
    ));
    assert!(message(&settings).contains("controlPlane.exec"));

    settings.control_plane.exec = Some(ExecMethod::Ssh);
    assert!(matches!(
        node_exec(&settings),
        Err(WiringError::NodeExec(ExecSettingsError::NoSshUser))
    ));
    assert!(message(&settings).contains("controlPlane.ssh.user"));
    settings.control_plane.ssh.user = Some("ubuntu".into());
    assert!(node_exec(&settings).is_ok());

    settings.control_plane.exec = Some(ExecMethod::Local);
    assert!(node_exec(&settings).is_ok());
}
