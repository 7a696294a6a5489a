//! Running scripts on nodes (control-plane upgrades go through this).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ExecError, InstanceId};

/// Where a script runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTarget {
    /// Kubernetes node name.
    pub node: String,
    /// The instance behind it, for transports that address instances (SSM).
    pub instance: Option<InstanceId>,
    /// Address for transports that connect to hosts (SSH).
    pub address: Option<String>,
}

/// One script to run.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// Full text of a bash script.
    pub script: String,
    /// What the script does, for logs (`kubeadm upgrade apply v1.34.2`).
    pub description: String,
    pub timeout: Duration,
}

/// The result of a script that ran to completion (any exit status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The last `lines` lines of stdout and stderr, for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let mut all: Vec<&str> = self.stdout.lines().chain(self.stderr.lines()).collect();
        let start = all.len().saturating_sub(lines);
        all.drain(..start);
        all.join("\n")
    }
}

/// Receives output lines while a script runs.
pub trait OutputSink: Send + Sync {
    fn line(&self, node: &str, line: &str);
}

/// A sink that drops everything.
impl OutputSink for () {
    fn line(&self, _node: &str, _line: &str) {}
}

/// Runs scripts on nodes: SSM, SSH, local, or the simulated machines.
#[async_trait]
pub trait NodeExec: Send + Sync {
    /// Run `request.script` with bash on `target`, streaming output lines to
    /// `sink`, and return its exit status and output. A non-zero exit is an
    /// `Ok` with that code; `Err` means the script's outcome is unknown.
    async fn run(
        &self,
        target: &ExecTarget,
        request: &ExecRequest,
        sink: &dyn OutputSink,
    ) -> Result<ExecOutput, ExecError>;

    /// Whether scripts can reach `target` now, changing nothing on it
    /// (`kubesurge check`). The default runs a no-op (`true`), which for
    /// SSH is a connection, the host key, the login and sudo; a transport
    /// with a read-only way to ask (SSM's agent status) says so instead.
    async fn reach(&self, target: &ExecTarget) -> Result<(), ExecError> {
        let request = ExecRequest {
            script: "true\n".into(),
            description: "reachability check (a no-op)".into(),
            timeout: REACH_TIMEOUT,
        };
        let output = self.run(target, &request, &()).await?;
        if output.success() {
            Ok(())
        } else {
            Err(ExecError::Transport {
                node: target.node.clone(),
                message: format!("a no-op exited {}: {}", output.exit_code, output.tail(3)),
            })
        }
    }
}

/// How long [`NodeExec::reach`]'s no-op may take: a connection and a login.
pub const REACH_TIMEOUT: Duration = Duration::from_secs(30);
