//! `controlPlane.exec: ssh`: the scripts run over the system's OpenSSH
//! client, which brings the user's ssh config, agent (`SSH_AUTH_SOCK`
//! passes through), known_hosts and ProxyJump for free.
//!
//! What runs, for a non-root user (root skips `sudo -n`):
//!
//! ```text
//! ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes … -p PORT -l USER -- HOST \
//!     'sudo -n timeout -k 10s SECONDSs bash -s'      < the script
//! ```
//!
//! - Host keys are always checked (`StrictHostKeyChecking=yes`): an unknown
//!   or changed key refuses the connection. `knownHosts` names the file.
//! - `BatchMode=yes`: never a prompt (passphrase, password, host key).
//! - The remote `timeout` kills the script where it runs when the deadline
//!   passes: killing the local ssh client alone would leave it running.
//!   A call that is dropped (the run aborted) kills the local client only;
//!   a bare script then dies on the node of SIGPIPE at its next line of
//!   output, which is why the control-plane commands are sent wrapped by
//!   [`crate::controlplane::detach`]: they finish (or meet that deadline) on
//!   the node, which leaves a `kubeadm upgrade` whole rather than cut
//!   half-way.
//! - `sudo -n` (never a password prompt): the user needs passwordless sudo;
//!   if sudo refuses, that is a [`ExecError::Transport`] naming it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
use tokio::process::Command;

use super::{ExecSettingsError, Finished, run_process, wrap_script_after};

/// Default `controlPlane.ssh.port`.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// `controlPlane.ssh` as configured. Paths are kept as written (`~` is
/// expanded where the connection is made: settings do no I/O).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSettings {
    pub user: Option<String>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
    pub port: u16,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            user: None,
            identity_file: None,
            known_hosts: None,
            port: DEFAULT_SSH_PORT,
        }
    }
}

/// Default for [`SshConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Once the remote `timeout` has sent SIGTERM, how long the script has to
/// stop before SIGKILL.
const REMOTE_KILL_AFTER: &str = "10s";

/// Keepalives: a connection that died silently (a node that lost power)
/// is noticed within about a minute instead of at the script's timeout.
const SERVER_ALIVE_INTERVAL_SECS: u32 = 15;
const SERVER_ALIVE_COUNT_MAX: u32 = 4;

/// Printed on stderr by the script's first command and kept out of its
/// output: until it comes, whatever fails is ssh or sudo, not the script.
/// ssh exits 255 both for its own failures and for a script that does.
const START_MARKER: &str = "kubesurge-exec: script started";

/// How to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfig {
    /// Login user.
    pub user: String,
    pub port: u16,
    /// Private key (`-i`, with `IdentitiesOnly=yes`); `None`: the ssh
    /// config's and the agent's keys. A leading `~` is the home directory.
    pub identity_file: Option<PathBuf>,
    /// Known-hosts file to check host keys against; `None`: ssh's own
    /// (`~/.ssh/known_hosts` and the system's). A leading `~` as above.
    pub known_hosts: Option<PathBuf>,
    /// Bound on establishing the connection (within the script's timeout).
    pub connect_timeout: Duration,
    /// Run the script with `sudo -n`. [`SshConfig::new`] sets it for any
    /// user but `root`.
    pub sudo: bool,
    /// The ssh client to run.
    pub program: PathBuf,
}

impl SshConfig {
    /// Port 22, ssh's own keys and known_hosts, `sudo` unless `user` is
    /// `root`.
    pub fn new(user: impl Into<String>) -> Self {
        let user = user.into();
        SshConfig {
            sudo: user != "root",
            user,
            port: DEFAULT_SSH_PORT,
            identity_file: None,
            known_hosts: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            program: PathBuf::from("ssh"),
        }
    }

    /// From `controlPlane.ssh`.
    pub fn from_settings(ssh: &SshSettings) -> Result<Self, ExecSettingsError> {
        let user = ssh.user.clone().ok_or(ExecSettingsError::NoSshUser)?;
        Ok(SshConfig {
            port: ssh.port,
            identity_file: ssh.identity_file.as_ref().map(PathBuf::from),
            known_hosts: ssh.known_hosts.as_ref().map(PathBuf::from),
            ..SshConfig::new(user)
        })
    }
}

/// [`NodeExec`] over the system ssh client.
#[derive(Clone, Debug)]
pub struct SshExec {
    config: SshConfig,
}

impl SshExec {
    pub fn new(config: SshConfig) -> Self {
        SshExec { config }
    }

    pub fn config(&self) -> &SshConfig {
        &self.config
    }
}

#[async_trait]
impl NodeExec for SshExec {
    /// Connects to `target.address` (else `target.node`) and runs the
    /// script there. Errors: [`ExecError::Unreachable`] when no connection
    /// could be made or it was lost, [`ExecError::Transport`] when ssh or
    /// sudo refused (host key, authentication), [`ExecError::Timeout`] when
    /// the deadline passed (the script was killed on the node).
    async fn run(
        &self,
        target: &ExecTarget,
        request: &ExecRequest,
        sink: &dyn OutputSink,
    ) -> Result<ExecOutput, ExecError> {
        let node = target.node.clone();
        let transport = |message: String| ExecError::Transport {
            node: node.clone(),
            message,
        };
        let host = host_of(target).map_err(transport)?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let args =
            ssh_args(&self.config, &host, request.timeout, home.as_deref()).map_err(transport)?;
        let mut command = Command::new(&self.config.program);
        command.args(args);
        let prelude = format!("printf '%s\\n' '{START_MARKER}' >&2; ");
        let finished = run_process(
            command,
            wrap_script_after(&prelude, &request.script),
            request.timeout,
            &target.node,
            sink,
            Some(START_MARKER),
        )
        .await
        .map_err(|e| {
            transport(format!(
                "cannot run {} (the OpenSSH client): {e}",
                self.config.program.display()
            ))
        })?;
        let (output, started) = match finished {
            Finished::Exited { output, started } => (output, started),
            Finished::TimedOut => {
                return Err(ExecError::Timeout {
                    node,
                    after: request.timeout,
                });
            }
        };
        match failure(&self.config, &host, &output, started) {
            None => Ok(output),
            Some(Failure::Unreachable(message)) => Err(ExecError::Unreachable { node, message }),
            Some(Failure::Transport(message)) => Err(ExecError::Transport { node, message }),
        }
    }
}

/// The host to connect to: the node's address, else its name.
fn host_of(target: &ExecTarget) -> Result<String, String> {
    let host = target
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or(&target.node);
    // ssh takes IPv6 literals bare.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '%'));
    if valid {
        Ok(host.to_string())
    } else {
        Err(format!(
            "{host:?} is not a host name or address to connect to"
        ))
    }
}

/// The remote command: the remote login shell runs it.
fn remote_command(sudo: bool, timeout: Duration) -> String {
    // `timeout 0` would mean no timeout at all.
    let seconds = timeout.max(Duration::from_millis(1)).as_secs_f64();
    format!(
        "{}timeout -k {REMOTE_KILL_AFTER} {seconds:.3}s bash -s",
        if sudo { "sudo -n " } else { "" }
    )
}

/// The ssh client's arguments.
fn ssh_args(
    config: &SshConfig,
    host: &str,
    timeout: Duration,
    home: Option<&Path>,
) -> Result<Vec<OsString>, String> {
    let connect_timeout = config.connect_timeout.min(timeout).as_secs().max(1);
    let mut args: Vec<OsString> = Vec::new();
    let mut option = |value: String| {
        args.push("-o".into());
        args.push(value.into());
    };
    option("BatchMode=yes".into());
    option("StrictHostKeyChecking=yes".into());
    // Only errors: warnings would mix with the script's stderr.
    option("LogLevel=ERROR".into());
    option(format!("ConnectTimeout={connect_timeout}"));
    option(format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_SECS}"));
    option(format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"));
    if let Some(known_hosts) = &config.known_hosts {
        let path = ssh_path(
            &expand_home(known_hosts, home),
            "controlPlane.ssh.knownHosts",
        )?;
        // Quoted: the option takes a space-separated list of files.
        option(format!("UserKnownHostsFile=\"{path}\""));
    }
    if let Some(identity) = &config.identity_file {
        let path = ssh_path(
            &expand_home(identity, home),
            "controlPlane.ssh.identityFile",
        )?;
        // Only this key (from the file or the agent): an agent with many
        // keys would otherwise exhaust the server's attempts first.
        option("IdentitiesOnly=yes".into());
        args.push("-i".into());
        args.push(path.into());
    }
    args.push("-T".into());
    args.push("-p".into());
    args.push(config.port.to_string().into());
    args.push("-l".into());
    args.push(config.user.clone().into());
    args.push("--".into());
    args.push(host.into());
    args.push(remote_command(config.sudo, timeout).into());
    Ok(args)
}

/// `~` or `~/…` under `home`; anything else as written.
fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// A path as ssh reads it in file options: `%` starts a token.
fn ssh_path(path: &Path, field: &str) -> Result<String, String> {
    let Some(text) = path.to_str() else {
        return Err(format!("{field}: {} is not UTF-8", path.display()));
    };
    if text.contains('"') {
        return Err(format!(
            "{field}: a path with a double quote is not supported"
        ));
    }
    Ok(text.replace('%', "%%"))
}

/// Why a finished ssh run is not the script's own outcome.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    Unreachable(String),
    Transport(String),
}

/// What ssh or sudo refused, or a connection lost while the script ran,
/// as opposed to what the script itself did. `started`: the script's
/// first command ran (its marker came).
fn failure(config: &SshConfig, host: &str, output: &ExecOutput, started: bool) -> Option<Failure> {
    let lines: Vec<&str> = output
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let context = format!("ssh {}@{host} port {}", config.user, config.port);
    let said = || {
        if lines.is_empty() {
            format!("ssh exited with {} and said nothing", output.exit_code)
        } else {
            lines[lines.len().saturating_sub(3)..].join("; ")
        }
    };
    let last = lines.last().copied().unwrap_or_default();
    if started {
        // The script ran: 255 is its own status unless ssh's last words
        // say the connection went away under it.
        const LOST: &[&str] = &[
            "closed by remote host",
            "Connection reset",
            "Broken pipe",
            "Timeout, server",
            "client_loop:",
        ];
        return (output.exit_code == 255 && LOST.iter().any(|p| last.contains(p))).then(|| {
            Failure::Unreachable(format!(
                "{context}: the connection was lost while the script ran: {}",
                said()
            ))
        });
    }
    if output.exit_code == 0 {
        // Nothing to run: an empty script still prints the marker, so this
        // is a login shell that ignored its command.
        return Some(Failure::Transport(format!(
            "{context}: the script did not start ({})",
            said()
        )));
    }
    if output.exit_code == 255 {
        const HOST_KEY: &[&str] = &[
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
        ];
        const AUTH: &[&str] = &["Permission denied", "Too many authentication failures"];
        const UNREACHABLE: &[&str] = &[
            "Connection refused",
            "Could not resolve hostname",
            "Connection timed out",
            "Operation timed out",
            "No route to host",
            "Network is unreachable",
            "Connection reset",
            "Connection closed by",
            "closed by remote host",
            "Broken pipe",
            "kex_exchange_identification",
        ];
        if lines.iter().any(|l| HOST_KEY.iter().any(|p| l.contains(p))) {
            let file = config
                .known_hosts
                .as_ref()
                .map_or("~/.ssh/known_hosts".to_string(), |f| {
                    f.display().to_string()
                });
            return Some(Failure::Transport(format!(
                "{context}: {} (the node's host key must be in {file}; see controlPlane.ssh.knownHosts)",
                said()
            )));
        }
        if AUTH.iter().any(|p| last.contains(p)) {
            return Some(Failure::Transport(format!(
                "{context}: {} (check controlPlane.ssh.user and identityFile, or the keys in ssh-agent)",
                said()
            )));
        }
        if UNREACHABLE.iter().any(|p| last.contains(p)) {
            return Some(Failure::Unreachable(format!("{context}: {}", said())));
        }
        return Some(Failure::Transport(format!("{context}: {}", said())));
    }
    // A failure before the script's first command: sudo refused, or the
    // node lacks `timeout` or `bash` (127), or bash found the script does
    // not parse (2: the script's own outcome).
    if config.sudo && lines.first().is_some_and(|l| l.starts_with("sudo: ")) {
        return Some(Failure::Transport(format!(
            "{context}: {} (the scripts run with `sudo -n`: {} needs passwordless sudo, or connect as root)",
            said(),
            config.user
        )));
    }
    if matches!(output.exit_code, 126 | 127) {
        return Some(Failure::Transport(format!(
            "{context}: the node cannot run the script (it needs bash and coreutils' timeout): {}",
            said()
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(node: &str, address: Option<&str>) -> ExecTarget {
        ExecTarget {
            node: node.into(),
            instance: None,
            address: address.map(Into::into),
        }
    }

    fn output(code: i32, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_code: code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn the_address_wins_over_the_node_name() {
        assert_eq!(
            host_of(&target("cp-1", Some("10.0.0.5"))).as_deref(),
            Ok("10.0.0.5")
        );
        assert_eq!(host_of(&target("cp-1", None)).as_deref(), Ok("cp-1"));
        assert_eq!(host_of(&target("cp-1", Some(" "))).as_deref(), Ok("cp-1"));
        assert_eq!(
            host_of(&target("cp-1", Some("[fd00::5]"))).as_deref(),
            Ok("fd00::5")
        );
    }

    #[test]
    fn hosts_that_ssh_would_read_as_options_are_refused() {
        assert!(host_of(&target("-oProxyCommand=x", None)).is_err());
        assert!(host_of(&target("a b", None)).is_err());
        assert!(host_of(&target("cp", Some("h;rm"))).is_err());
    }

    #[test]
    fn sudo_unless_root_and_the_remote_timeout_is_the_scripts() {
        assert!(SshConfig::new("ubuntu").sudo);
        assert!(!SshConfig::new("root").sudo);
        assert_eq!(
            remote_command(true, Duration::from_millis(1500)),
            "sudo -n timeout -k 10s 1.500s bash -s"
        );
        assert_eq!(
            remote_command(false, Duration::ZERO),
            "timeout -k 10s 0.001s bash -s"
        );
    }

    #[test]
    fn arguments_check_host_keys_never_prompt_and_end_with_host_and_command() {
        let mut config = SshConfig::new("ubuntu");
        config.port = 2222;
        config.identity_file = Some("~/.ssh/id 100%".into());
        config.known_hosts = Some("/etc/kubesurge/known hosts".into());
        let args = ssh_args(
            &config,
            "10.0.0.5",
            Duration::from_secs(600),
            Some(Path::new("/home/op")),
        )
        .map(|a| {
            a.into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        });
        let expected: Vec<String> = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            "UserKnownHostsFile=\"/etc/kubesurge/known hosts\"",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            "/home/op/.ssh/id 100%%",
            "-T",
            "-p",
            "2222",
            "-l",
            "ubuntu",
            "--",
            "10.0.0.5",
            "sudo -n timeout -k 10s 600.000s bash -s",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(args, Ok(expected));
    }

    #[test]
    fn the_connect_timeout_stays_within_the_script_timeout() {
        let args = ssh_args(
            &SshConfig::new("root"),
            "h",
            Duration::from_millis(2500),
            None,
        )
        .unwrap_or_default();
        assert!(args.iter().any(|a| a == "ConnectTimeout=2"), "{args:?}");
    }

    #[test]
    fn home_is_expanded_only_at_the_start() {
        let home = Some(Path::new("/root"));
        assert_eq!(
            expand_home(Path::new("~/.ssh/k"), home),
            PathBuf::from("/root/.ssh/k")
        );
        assert_eq!(expand_home(Path::new("~"), home), PathBuf::from("/root/"));
        assert_eq!(
            expand_home(Path::new("/a/~/k"), home),
            PathBuf::from("/a/~/k")
        );
        assert_eq!(expand_home(Path::new("~/k"), None), PathBuf::from("~/k"));
    }

    const NOT_STARTED: bool = false;
    const STARTED: bool = true;

    #[test]
    fn before_the_script_starts_ssh_failures_are_classified() {
        let config = SshConfig::new("ubuntu");
        let refused = output(
            255,
            "",
            "ssh: connect to host 10.0.0.5 port 22: Connection refused\n",
        );
        assert!(matches!(
            failure(&config, "10.0.0.5", &refused, NOT_STARTED),
            Some(Failure::Unreachable(m)) if m.starts_with("ssh ubuntu@10.0.0.5 port 22: ssh: connect")
        ));
        let host_key = output(
            255,
            "",
            "No ED25519 host key is known for 10.0.0.5 and you have requested strict checking.\nHost key verification failed.\n",
        );
        assert!(matches!(
            failure(&config, "10.0.0.5", &host_key, NOT_STARTED),
            Some(Failure::Transport(m)) if m.contains("Host key verification failed") && m.contains("knownHosts")
        ));
        let denied = output(255, "", "ubuntu@10.0.0.5: Permission denied (publickey).\n");
        assert!(matches!(
            failure(&config, "10.0.0.5", &denied, NOT_STARTED),
            Some(Failure::Transport(m)) if m.contains("Permission denied") && m.contains("identityFile")
        ));
        // Anything else ssh says before the script starts is still ssh's.
        let odd = output(255, "", "");
        assert!(matches!(
            failure(&config, "10.0.0.5", &odd, NOT_STARTED),
            Some(Failure::Transport(m)) if m.contains("exited with 255")
        ));
    }

    #[test]
    fn once_the_script_started_255_is_its_own_unless_the_connection_was_lost() {
        let config = SshConfig::new("ubuntu");
        let script = output(
            255,
            "step 1\n",
            "ls: cannot open directory: Permission denied\n",
        );
        assert_eq!(failure(&config, "10.0.0.5", &script, STARTED), None);
        let lost = output(
            255,
            "step 1\n",
            "Connection to 10.0.0.5 closed by remote host.\n",
        );
        assert!(matches!(
            failure(&config, "10.0.0.5", &lost, STARTED),
            Some(Failure::Unreachable(m)) if m.contains("lost while the script ran")
        ));
        assert_eq!(
            failure(&config, "10.0.0.5", &output(3, "", "x\n"), STARTED),
            None
        );
    }

    #[test]
    fn sudo_refusing_is_a_transport_error_but_a_script_failing_is_not() {
        let config = SshConfig::new("ubuntu");
        let refused = output(1, "", "sudo: a password is required\n");
        assert!(matches!(
            failure(&config, "h", &refused, NOT_STARTED),
            Some(Failure::Transport(m)) if m.contains("passwordless sudo")
        ));
        let script = output(1, "", "E: Unable to locate package kubeadm\n");
        assert_eq!(failure(&config, "h", &script, STARTED), None);
        // A script that does not parse: bash's own status, not a transport.
        let syntax = output(2, "", "bash: line 3: syntax error near `fi'\n");
        assert_eq!(failure(&config, "h", &syntax, NOT_STARTED), None);
        let no_timeout = output(127, "", "sudo: timeout: command not found\n");
        assert!(matches!(
            failure(&SshConfig::new("root"), "h", &no_timeout, NOT_STARTED),
            Some(Failure::Transport(m)) if m.contains("coreutils")
        ));
    }

    #[test]
    fn settings_without_a_user_name_the_field() {
        let ssh = SshSettings::default();
        let error = SshConfig::from_settings(&ssh).err();
        assert_eq!(error, Some(ExecSettingsError::NoSshUser));
        assert!(
            ExecSettingsError::NoSshUser
                .to_string()
                .contains("controlPlane.ssh.user")
        );
        let ssh = SshSettings {
            user: Some("ubuntu".into()),
            identity_file: Some("~/.ssh/id_ed25519".into()),
            known_hosts: None,
            port: 2222,
        };
        let config = SshConfig::from_settings(&ssh);
        assert_eq!(
            config
                .as_ref()
                .map(|c| (c.port, c.sudo, c.identity_file.clone())),
            Ok((2222, true, Some(PathBuf::from("~/.ssh/id_ed25519"))))
        );
    }
}
