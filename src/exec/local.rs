//! `controlPlane.exec: local`: kubesurge runs on the control-plane node
//! itself and runs the scripts there with `bash -s`.

use std::path::PathBuf;

use async_trait::async_trait;
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
use tokio::process::Command;

use super::{Finished, run_process, wrap_script};

/// Runs scripts on this machine, whatever the target node, as the user
/// kubesurge runs as (no `sudo`: the upgrade scripts need root, so
/// kubesurge itself runs as root here). Only meaningful when the target is
/// this machine, i.e. a cluster with one control-plane node on which
/// kubesurge runs; callers check that.
#[derive(Clone, Debug)]
pub struct LocalExec {
    bash: PathBuf,
}

impl LocalExec {
    /// `bash` from `PATH`.
    pub fn new() -> Self {
        LocalExec {
            bash: PathBuf::from("bash"),
        }
    }

    /// A specific bash binary.
    pub fn with_bash(bash: impl Into<PathBuf>) -> Self {
        LocalExec { bash: bash.into() }
    }
}

impl Default for LocalExec {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl NodeExec for LocalExec {
    /// `bash -s` with the script on stdin, in its own process group: on
    /// timeout the whole group (the script and everything it started) is
    /// killed and the result is [`ExecError::Timeout`].
    async fn run(
        &self,
        target: &ExecTarget,
        request: &ExecRequest,
        sink: &dyn OutputSink,
    ) -> Result<ExecOutput, ExecError> {
        let mut command = Command::new(&self.bash);
        command.arg("-s");
        let finished = run_process(
            command,
            wrap_script(&request.script),
            request.timeout,
            &target.node,
            sink,
            None,
        )
        .await
        .map_err(|e| ExecError::Transport {
            node: target.node.clone(),
            message: format!("cannot run {}: {e}", self.bash.display()),
        })?;
        match finished {
            Finished::Exited { output, .. } => Ok(output),
            Finished::TimedOut => Err(ExecError::Timeout {
                node: target.node.clone(),
                after: request.timeout,
            }),
        }
    }
}
