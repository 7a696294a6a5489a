//! The SSH and local `NodeExec`: scripts through the real OpenSSH client
//! against a real `sshd` that each test starts on loopback with generated
//! host and user keys, and through a local `bash`; and `kubesurge upgrade`
//! with `controlPlane.exec: ssh` running the real control-plane scripts over
//! that sshd on the simulated machines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubesurge::exec::{ExecSettingsError, LocalExec, SshConfig, SshExec};
use kubesurge::settings::{ExecMethod, Settings};
use kubesurge::wiring::{WiringError, node_exec};
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
use kubesurge_testworld::Timing;
use kubesurge_testworld::observer::{Observer, PoolFloor};
use kubesurge_testworld::resources::NODES;
use kubesurge_testworld::world::{POOL_LABEL, PoolSpec, World, WorldConfig};
use serde_json::Value;
use tempfile::TempDir;

use super::rotation::{control_plane_versions, kubesurge, run_to_end, text};
use super::upgrade::assert_stopped_by_kubeadm_apply;

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
    /// Starts one on 127.0.0.1.
    fn start() -> Sshd {
        Sshd::start_with(&[Ipv4Addr::LOCALHOST], "")
    }

    /// Starts one listening on each of `addresses` (one port for all), with
    /// `extra` appended to its config (`Match` blocks); a port taken
    /// between choosing and binding it is retried.
    fn start_with(addresses: &[Ipv4Addr], extra: &str) -> Sshd {
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
            let listen: String = addresses
                .iter()
                .map(|a| format!("ListenAddress {a}\n"))
                .collect();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\n{listen}HostKey {}\nAuthorizedKeysFile {}\n\
                     PidFile {}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nLogLevel VERBOSE\n{extra}",
                    host_key.display(),
                    authorized.display(),
                    dir.path().join("sshd.pid").display(),
                ),
            )
            .expect("sshd_config");
            let known: String = addresses
                .iter()
                .map(|a| format!("[{a}]:{port} {}\n", public_key(&host_key)))
                .collect();
            std::fs::write(&known_hosts, known).expect("known_hosts");
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
            if addresses
                .iter()
                .all(|address| wait_listening(&mut child, *address, port))
            {
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

/// Until sshd accepts connections on `address`:`port`, or it exited.
fn wait_listening(child: &mut Child, address: Ipv4Addr, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect((address, port)).is_ok() {
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
    interrupt_after(&LocalExec::new(), dir.path(), &script, "started").await;
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
    assert!(matches!(
        node_exec(&settings),
        Err(WiringError::NodeExec(ExecSettingsError::NoLocalNode))
    ));
    assert!(message(&settings).contains("controlPlane.node"));
    settings.control_plane.node = Some("cp-1".into());
    assert!(node_exec(&settings).is_ok());
}

// ---------------------------------------------------------------------------
// The control-plane upgrade over SSH, end to end

const FROM: &str = "v1.34.3";
const TO: &str = "v1.35.3";
const POOL: &str = "general";

/// A world whose control-plane machines answer SSH, as real nodes do: each
/// machine moved to a loopback address of its own, where one sshd serves
/// it with that machine's script environment (its filesystem as
/// `KUBESURGE_ROOT`, its stand-ins on `PATH`, its control endpoint), the
/// way the node's own sshd would. Workers are replaced through the sim
/// provider; the observer watches the whole run.
struct SshWorld {
    world: World,
    sshd: Sshd,
    observer: Arc<Observer>,
    /// Holds the config files and the sudo stand-in.
    _dir: TempDir,
    kubeconfig: PathBuf,
    config: PathBuf,
    /// Control-plane node name → its address and its instance.
    control_planes: BTreeMap<String, (Ipv4Addr, String)>,
    original_workers: BTreeSet<String>,
}

impl SshWorld {
    async fn start(control_planes: usize, workers: usize) -> SshWorld {
        let world = World::start(WorldConfig {
            cluster_name: "e2e".into(),
            control_planes,
            pools: vec![PoolSpec {
                name: POOL.into(),
                workers,
            }],
            zones: 3,
            version: FROM.into(),
            timing: Timing::fast(),
            workloads: true,
        })
        .await
        .expect("world starts");
        world
            .wait_ready(Duration::from_secs(30))
            .await
            .expect("world ready");
        let dir = TempDir::new().expect("temp dir");

        // The login user is the one the scripts run as; one who is not
        // root goes through `sudo -n`, which the machines lack.
        let sudo_dir = dir.path().join("sudo");
        std::fs::create_dir_all(&sudo_dir).expect("sudo dir");
        let sudo = sudo_dir.join("sudo");
        std::fs::write(&sudo, "#!/bin/sh\n[ \"$1\" = -n ] && shift\nexec \"$@\"\n")
            .expect("sudo stand-in");
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        let mut nodes = BTreeMap::new();
        let mut matches = String::new();
        for i in 0..control_planes {
            let name = format!("cp-{}", i + 1);
            let machine = world.cloud.machine_of_node(&name).expect("machine");
            let address = Ipv4Addr::new(127, 0, 86, u8::try_from(i + 1).expect("few nodes"));
            world
                .cloud
                .set_private_ip(&machine.instance_id, IpAddr::V4(address))
                .expect("readdress");
            let mut env = world
                .cloud
                .script_environment(&machine.instance_id)
                .expect("the machine runs scripts");
            if let Some(path) = env.get_mut("PATH") {
                path.push(':');
                path.push_str(&sudo_dir.display().to_string());
            }
            matches.push_str(&format!("Match LocalAddress {address}\n  SetEnv"));
            for (name, value) in &env {
                assert!(!value.contains('"'), "{name}={value}");
                matches.push_str(&format!(" \"{name}={value}\""));
            }
            matches.push('\n');
            nodes.insert(name, (address, machine.instance_id));
        }
        let addresses: Vec<Ipv4Addr> = nodes.values().map(|(a, _)| *a).collect();
        let sshd = Sshd::start_with(&addresses, &matches);

        // The run reads the addresses from the Nodes: wait until every
        // kubelet reports its new one.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, (address, _)) in &nodes {
            while internal_ip(&world, name).as_deref() != Some(address.to_string().as_str()) {
                assert!(
                    Instant::now() < deadline,
                    "{name} does not report {address}: {:?}",
                    internal_ip(&world, name)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        let (kubeconfig, _) = world.write_config_files(dir.path()).expect("files");
        let config = dir.path().join("upgrade.yaml");
        std::fs::write(&config, config_yaml(&world, &sshd)).expect("config");
        let observer = Observer::attach(&world.store);
        observer.set_pool_floors(vec![PoolFloor {
            name: POOL.into(),
            selector: BTreeMap::from([(POOL_LABEL.to_string(), POOL.to_string())]),
            floor: workers,
        }]);
        let original_workers = worker_names(&world);
        SshWorld {
            world,
            sshd,
            observer,
            _dir: dir,
            kubeconfig,
            config,
            control_planes: nodes,
            original_workers,
        }
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        run_to_end(kubesurge(&self.kubeconfig, &self.config, args)).await
    }

    /// Connections the sshd accepted on `address`.
    fn connections_to(&self, address: Ipv4Addr) -> usize {
        let log = std::fs::read_to_string(self.sshd.path("sshd.log")).expect("sshd log");
        let on = format!(" on {address} port {} ", self.sshd.port);
        log.lines()
            .filter(|l| l.starts_with("Connection from ") && l.contains(&on))
            .count()
    }

    fn assert_no_violations(&self) {
        let violations = self.observer.violations();
        assert!(
            violations.is_empty(),
            "invariant violations: {violations:#?}"
        );
    }
}

/// The pools launch through the sim provider; the control plane is reached
/// over SSH as the sshd's login user, checking its host key.
fn config_yaml(world: &World, sshd: &Sshd) -> String {
    format!(
        "apiVersion: kubesurge.io/v1alpha1\nkind: RotationConfig\ncluster:\n  name: e2e\n\
         controlPlane:\n  exec: ssh\n  ssh:\n    user: \"{user}\"\n    port: {port}\n    \
         identityFile: \"{identity}\"\n    knownHosts: \"{known_hosts}\"\n\
         pools:\n  - name: {POOL}\n    selector: {{ {POOL_LABEL}: {POOL} }}\n    provider: sim\n    \
         sim: {{ endpoint: \"{url}\" }}\n    maxSurge: 1\n    maxUnavailable: 0\n    \
         nodeLabels: {{ {POOL_LABEL}: {POOL} }}\n\
         drain: {{ timeout: 60s, onTimeout: fail, unmanagedPods: delete }}\n\
         join: {{ tokenTTL: 2m }}\nhealth: {{ newNodeTimeout: 20s, settle: 1s }}\n",
        user = sshd.user,
        port = sshd.port,
        identity = sshd.user_key.display(),
        known_hosts = sshd.known_hosts.display(),
        url = world.cloud.url(),
    )
}

fn internal_ip(world: &World, node: &str) -> Option<String> {
    let node = world.store.get(&NODES, "", node)?;
    node.pointer("/status/addresses")?
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")?["address"]
        .as_str()
        .map(str::to_string)
}

fn worker_names(world: &World) -> BTreeSet<String> {
    let (nodes, _) = world.store.list(&NODES, None, |_| true);
    nodes
        .iter()
        .filter(|n| n["metadata"]["labels"].get(POOL_LABEL).is_some())
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// `controlPlane.exec: ssh`: the rendered upgrade scripts run over SSH on
/// each control-plane node in turn, against its own machine; the nodes are
/// upgraded in place (same names, same instances), then the workers are
/// replaced, with no invariant broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_upgrades_the_control_plane_in_place_then_replaces_the_workers() {
    let w = SshWorld::start(3, 2).await;
    let output = w.run(&["upgrade", "--to", TO, "--yes", "-o", "json"]).await;
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report["outcome"]["result"], "succeeded", "{report}");
    assert_eq!(report["hops"].as_array().map(Vec::len), Some(1), "{report}");

    for (pod, version) in control_plane_versions(&w.world) {
        assert_eq!(version, TO, "{pod}");
    }
    let events = w.world.cloud.control_events();
    for (name, (address, instance)) in &w.control_planes {
        let node = w
            .world
            .store
            .get(&NODES, "", name)
            .unwrap_or_else(|| panic!("{name} kept, upgraded in place"));
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], TO, "{name}");
        assert_eq!(node["spec"].get("unschedulable"), None, "{name} uncordoned");
        let machine = w.world.cloud.machine_of_node(name).expect("machine");
        assert_eq!(
            &machine.instance_id, instance,
            "{name} on the same instance"
        );
        assert_eq!(machine.private_ip, address.to_string(), "{name}'s instance");
        assert_eq!(
            internal_ip(&w.world, name),
            Some(address.to_string()),
            "{name}'s Node"
        );
        assert!(
            w.connections_to(*address) > 0,
            "no SSH connection reached {name} at {address}"
        );
        // Its own scripts acted on its own machine, once each.
        for change in ["kube-apiserver", "kubelet restarted"] {
            let count = events
                .iter()
                .filter(|e| &e.node == name && e.change.starts_with(change))
                .count();
            assert_eq!(count, 1, "{name}: {change}: {events:?}");
        }
    }

    let now = worker_names(&w.world);
    assert_eq!(
        now.len(),
        w.original_workers.len(),
        "the pool keeps its size"
    );
    for name in &now {
        assert!(
            !w.original_workers.contains(name),
            "{name} is an old worker"
        );
        let node = w.world.store.get(&NODES, "", name).expect("worker");
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], TO, "{name}");
    }
    w.assert_no_violations();
}

/// A step that fails on the node over SSH stops the run with exit 1,
/// naming the step and quoting the command's output, with nothing else
/// touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_failing_kubeadm_apply_stops_with_exit_1_and_its_output() {
    let w = SshWorld::start(1, 1).await;
    w.world
        .cloud
        .with_faults(|f| f.fail_kubeadm_upgrade(Some("cp-1"), 1));
    let output = w.run(&["upgrade", "--to", TO, "--yes"]).await;
    assert_stopped_by_kubeadm_apply(&output);
    let (address, _) = w.control_planes["cp-1"];
    assert!(w.connections_to(address) > 0, "the step ran over SSH");
    for (pod, version) in control_plane_versions(&w.world) {
        assert_eq!(version, FROM, "{pod} untouched");
    }
    assert_eq!(
        worker_names(&w.world),
        w.original_workers,
        "workers untouched"
    );
    let (nodes, _) = w.world.store.list(&NODES, None, |_| true);
    for node in nodes.iter() {
        assert_eq!(
            node["spec"].get("unschedulable"),
            None,
            "{} cordoned",
            node["metadata"]["name"]
        );
    }
    w.assert_no_violations();
}

// ---------------------------------------------------------------------------
// Control-plane commands detached from the caller (kubesurge::controlplane::detach)

/// A stand-in for a long `kubeadm upgrade apply`: prints a line every
/// 100 ms for three seconds, then records its completion (one line per
/// run) in `runs`. Like kubeadm, it dies of SIGPIPE if its output goes
/// nowhere, so it only completes if nothing of the caller's connection
/// reaches it.
fn long_command(dir: &Path) -> (String, PathBuf) {
    let runs = dir.join("runs");
    let command = format!(
        "for i in $(seq 1 30); do echo \"upgrading $i\"; sleep 0.1; done\n\
         echo completed >> '{runs}'\necho done\n",
        runs = runs.display()
    );
    (command, runs)
}

/// What the control-plane phase sends: the command wrapped to run detached
/// (node paths under `root`, as `KUBESURGE_ROOT` puts them in the world).
fn detached(root: &Path, command: &str) -> String {
    format!(
        "export KUBESURGE_ROOT='{}'\n{}",
        root.display(),
        kubesurge::controlplane::detach::wrap(command, Duration::from_secs(60))
    )
}

fn completions(runs: &Path) -> usize {
    std::fs::read_to_string(runs).map_or(0, |text| text.lines().count())
}

/// Runs `script` and kills the caller once `line` of its output has come
/// (the local process and its pipes go, as with Ctrl-C, a CronJob's SIGTERM
/// or a dropped connection).
async fn interrupt_after(exec: &dyn NodeExec, dir: &Path, script: &str, line: &str) {
    let seen = dir.join(format!("seen-{:016x}", rand_u64()));
    let sink = Recorder::touching(line, seen.clone());
    let (target, request) = (target(), request(script, Duration::from_secs(60)));
    let call = exec.run(&target, &request, &sink);
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::pin!(call);
        loop {
            tokio::select! {
                result = &mut call => panic!("the command ended before {line:?}: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    if seen.exists() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "{line:?} never came: {:?}", sink.lines());
}

/// The caller is killed three lines into the command: on the code before
/// the detached wrapper the command died with it (SIGPIPE at its next line),
/// its completion never recorded. Now it runs to its end; a rerun sent
/// while it still runs follows it and reports its success, and a rerun
/// after the end gets that success without running it again.
async fn an_interrupted_command_completes_and_is_not_run_twice(exec: &dyn NodeExec, dir: &Path) {
    let root = dir.join("node");
    let (command, runs) = long_command(dir);
    let script = detached(&root, &command);
    interrupt_after(exec, dir, &script, "upgrading 3").await;
    assert_eq!(completions(&runs), 0, "the command cannot be done yet");

    // A rerun while it still runs: follows the same command to its end.
    let followed = run(exec, &script, Duration::from_secs(60))
        .await
        .expect("the rerun reaches the node");
    assert_eq!(followed.exit_code, 0, "{followed:?}");
    assert!(followed.stdout.ends_with("done\n"), "{followed:?}");
    assert!(
        followed.stderr.contains("already running on this node"),
        "the rerun says it follows the earlier command: {followed:?}"
    );
    assert_eq!(completions(&runs), 1, "the command ran exactly once");

    // Interrupted again, and the rerun comes after the end: the result the
    // interrupted caller missed, without running it again.
    let other = detached(&root, &format!("{command}# second\n"));
    interrupt_after(exec, dir, &other, "upgrading 3").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while completions(&runs) < 2 {
        assert!(
            Instant::now() < deadline,
            "the interrupted command never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let collected = run(exec, &other, Duration::from_secs(60))
            .await
            .expect("the rerun reaches the node");
        assert_eq!(collected.exit_code, 0, "{collected:?}");
        assert!(
            collected.stderr.contains("already ran to success"),
            "{collected:?}"
        );
        assert!(collected.stdout.ends_with("done\n"), "{collected:?}");
    }
    assert_eq!(completions(&runs), 2, "neither was run a second time");
}

/// While one kubesurge command runs on a node, a different one is refused
/// (exit 75) rather than started beside it; once the first has ended, the
/// second runs.
async fn a_second_command_waits_for_the_first(exec: &dyn NodeExec, dir: &Path) {
    let root = dir.join("node");
    let (command, runs) = long_command(dir);
    let first = detached(&root, &command);
    interrupt_after(exec, dir, &first, "upgrading 3").await;
    let second = detached(&root, "echo second\n");
    let refused = run(exec, &second, Duration::from_secs(60))
        .await
        .expect("reaches the node");
    assert_eq!(
        refused.exit_code,
        kubesurge::controlplane::detach::BUSY_EXIT,
        "{refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains("another kubesurge command is running on this node"),
        "{refused:?}"
    );
    assert!(!refused.stdout.contains("second"), "{refused:?}");
    let finished = run(exec, &first, Duration::from_secs(60))
        .await
        .expect("reaches the node");
    assert_eq!(finished.exit_code, 0, "{finished:?}");
    assert_eq!(completions(&runs), 1);
    let ran = run(exec, &second, Duration::from_secs(60))
        .await
        .expect("reaches the node");
    assert_eq!((ran.exit_code, ran.stdout.as_str()), (0, "second\n"));
}

#[tokio::test]
async fn ssh_an_interrupted_command_completes_and_is_not_run_twice() {
    let sshd = Sshd::start();
    an_interrupted_command_completes_and_is_not_run_twice(&sshd.exec(), sshd.dir.path()).await;
}

#[tokio::test]
async fn ssh_a_second_command_waits_for_the_first() {
    let sshd = Sshd::start();
    a_second_command_waits_for_the_first(&sshd.exec(), sshd.dir.path()).await;
}

#[tokio::test]
async fn local_an_interrupted_command_completes_and_is_not_run_twice() {
    let dir = TempDir::new().expect("temp dir");
    an_interrupted_command_completes_and_is_not_run_twice(&LocalExec::new(), dir.path()).await;
}

#[tokio::test]
async fn local_a_second_command_waits_for_the_first() {
    let dir = TempDir::new().expect("temp dir");
    a_second_command_waits_for_the_first(&LocalExec::new(), dir.path()).await;
}

/// Why the wrapper exists: the same command sent bare and interrupted the
/// same way dies on the node with its caller (SIGPIPE at its next line of
/// output) and never records its completion.
#[tokio::test]
async fn ssh_an_interrupted_bare_command_dies_with_its_caller() {
    let sshd = Sshd::start();
    let (command, runs) = long_command(sshd.dir.path());
    interrupt_after(&sshd.exec(), sshd.dir.path(), &command, "upgrading 3").await;
    // Twice the command's whole length.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        completions(&runs),
        0,
        "the bare command survived its caller"
    );
}
