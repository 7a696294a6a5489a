//! [`SsmExec`]: `NodeExec` over AWS Systems Manager.
//!
//! `SendCommand` runs the document `AWS-RunShellScript` on one instance;
//! `GetCommandInvocation` is then asked until the invocation reaches a
//! terminal status, within the request's timeout plus a delivery grace.
//! SSM has no output stream: output lines reach the sink as polls reveal
//! them. SSM keeps the first 24,000 characters of stdout and 8,000 of
//! stderr, and may show them only once the command finished
//! (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubesurge_provider::{ExecError, ExecOutput, ExecRequest, ExecTarget, NodeExec, OutputSink};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::client::load_sdk_config;
use crate::config::ClientOptions;

/// The SSM document that runs shell commands on Linux.
pub const DOCUMENT: &str = "AWS-RunShellScript";
/// Time SSM may take to deliver the command to the agent, on top of the
/// script's own timeout.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(60);
/// Pause between two `GetCommandInvocation` calls.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// What an invocation's status means for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not finished: ask again.
    Running,
    /// The script ran to its end with this exit code.
    Exited(i32),
    /// The script was stopped by its execution timeout.
    TimedOut,
    /// The command never reached the agent.
    Undelivered(String),
    /// Cancelled, or failed without an exit code: the outcome is unknown.
    Unknown(String),
}

/// Decide on one `GetCommandInvocation` answer.
pub fn verdict(
    status: Option<&CommandInvocationStatus>,
    details: Option<&str>,
    response_code: i32,
) -> Verdict {
    let details = details.unwrap_or_default();
    match status {
        Some(CommandInvocationStatus::Success) => Verdict::Exited(response_code),
        Some(CommandInvocationStatus::Failed) => match details {
            "Undeliverable" | "DeliveryTimedOut" | "InvalidPlatform" => {
                Verdict::Undelivered(details.to_string())
            }
            "ExecutionTimedOut" => Verdict::TimedOut,
            _ if response_code >= 0 => Verdict::Exited(response_code),
            _ => Verdict::Unknown(format!("failed ({details}) without an exit code")),
        },
        Some(CommandInvocationStatus::TimedOut) => match details {
            "DeliveryTimedOut" => Verdict::Undelivered(details.to_string()),
            _ => Verdict::TimedOut,
        },
        Some(CommandInvocationStatus::Cancelled) => {
            Verdict::Unknown(format!("cancelled ({details})"))
        }
        // Pending, InProgress, Delayed, Cancelling, and states added later.
        _ => Verdict::Running,
    }
}

/// The command line that runs `script` with bash: the script travels
/// base64-encoded, so no quoting of it can go wrong.
pub fn command_line(script: &str) -> String {
    format!(
        "f=\"$(mktemp)\" && echo '{}' | base64 -d > \"$f\" && bash \"$f\"; rc=$?; rm -f \"$f\"; exit $rc",
        BASE64.encode(script)
    )
}

/// `NodeExec` over SSM.
pub struct SsmExec {
    region: Option<String>,
    options: ClientOptions,
    client: OnceCell<Client>,
    poll: Duration,
    delivery_grace: Duration,
}

impl SsmExec {
    /// SSM in `region` (or the environment's), configured from the standard
    /// chain on first use.
    pub fn new(region: Option<&str>, options: ClientOptions) -> SsmExec {
        SsmExec {
            region: region.map(str::to_string),
            options,
            client: OnceCell::new(),
            poll: DEFAULT_POLL,
            delivery_grace: DELIVERY_GRACE,
        }
    }

    /// Over a client configured elsewhere.
    pub fn with_client(client: Client) -> SsmExec {
        let exec = SsmExec::new(None, ClientOptions::default());
        let _ = exec.client.set(client);
        exec
    }

    /// Poll every `poll`, and allow `grace` for delivery beyond a script's
    /// timeout.
    pub fn with_timing(mut self, poll: Duration, grace: Duration) -> SsmExec {
        self.poll = poll;
        self.delivery_grace = grace;
        self
    }

    pub(crate) async fn ssm(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let config = load_sdk_config(self.region.as_deref(), &self.options).await;
                Client::new(&config)
            })
            .await
    }
}

fn transport<E: ProvideErrorMetadata + std::error::Error + 'static>(
    node: &str,
    what: &str,
    e: &SdkError<E>,
) -> ExecError {
    ExecError::Transport {
        node: node.to_string(),
        message: format!("ssm:{what}: {}", DisplayErrorContext(e)),
    }
}

/// Hands new complete output lines to the sink as polls reveal them.
struct Lines<'a> {
    node: &'a str,
    sink: &'a dyn OutputSink,
    emitted: [usize; 2],
}

impl Lines<'_> {
    fn feed(&mut self, stream: usize, text: &str, last: bool) {
        let done = self.emitted[stream];
        // SSM's partial output grows; anything else starts over.
        let Some(new) = text.get(done..) else {
            return;
        };
        let upto = if last {
            new.len()
        } else {
            new.rfind('\n').map_or(0, |i| i + 1)
        };
        for line in new[..upto].lines() {
            self.sink.line(self.node, line);
        }
        self.emitted[stream] = done + upto;
    }

    fn take(&mut self, out: &GetCommandInvocationOutput, last: bool) {
        self.feed(0, out.standard_output_content().unwrap_or_default(), last);
        self.feed(1, out.standard_error_content().unwrap_or_default(), last);
    }
}

#[async_trait]
impl NodeExec for SsmExec {
    async fn reach(&self, target: &ExecTarget) -> Result<(), ExecError> {
        crate::check::ssm_reach(self.ssm().await, target).await
    }

    async fn run(
        &self,
        target: &ExecTarget,
        request: &ExecRequest,
        sink: &dyn OutputSink,
    ) -> Result<ExecOutput, ExecError> {
        let node = target.node.as_str();
        let instance = target
            .instance
            .as_ref()
            .ok_or_else(|| ExecError::Unreachable {
                node: node.to_string(),
                message: "SSM needs the node's instance id, and none is known".into(),
            })?;
        let client = self.ssm().await;
        let timeout_secs = request.timeout.as_secs().max(1);
        let comment: String = request.description.chars().take(100).collect();
        let sent = client
            .send_command()
            .document_name(DOCUMENT)
            .instance_ids(instance.0.clone())
            .parameters("commands", vec![command_line(&request.script)])
            .parameters("executionTimeout", vec![timeout_secs.to_string()])
            .comment(comment)
            .send()
            .await
            .map_err(|e| match e.code() {
                Some("InvalidInstanceId") => ExecError::Unreachable {
                    node: node.to_string(),
                    message: format!(
                        "instance {instance} is not a managed node SSM can reach (agent offline, no instance profile, or not running)"
                    ),
                },
                _ => transport(node, "SendCommand", &e),
            })?;
        let command_id = sent
            .command()
            .and_then(|c| c.command_id())
            .ok_or_else(|| ExecError::Transport {
                node: node.to_string(),
                message: "ssm:SendCommand answered without a command id".into(),
            })?
            .to_string();
        tracing::debug!(node, command_id, what = %request.description, "sent SSM command");

        let deadline = Instant::now() + request.timeout + self.delivery_grace;
        let mut lines = Lines {
            node,
            sink,
            emitted: [0, 0],
        };
        loop {
            tokio::time::sleep(self.poll).await;
            let answer = client
                .get_command_invocation()
                .command_id(&command_id)
                .instance_id(instance.0.clone())
                .send()
                .await;
            match answer {
                Ok(out) => {
                    let v = verdict(out.status(), out.status_details(), out.response_code());
                    if v != Verdict::Running {
                        lines.take(&out, true);
                    }
                    match v {
                        Verdict::Running => lines.take(&out, false),
                        Verdict::Exited(exit_code) => {
                            return Ok(ExecOutput {
                                exit_code,
                                stdout: out.standard_output_content().unwrap_or_default().into(),
                                stderr: out.standard_error_content().unwrap_or_default().into(),
                            });
                        }
                        Verdict::TimedOut => {
                            return Err(ExecError::Timeout {
                                node: node.to_string(),
                                after: request.timeout,
                            });
                        }
                        Verdict::Undelivered(details) => {
                            return Err(ExecError::Unreachable {
                                node: node.to_string(),
                                message: format!("command {command_id} not delivered: {details}"),
                            });
                        }
                        Verdict::Unknown(message) => {
                            return Err(ExecError::Transport {
                                node: node.to_string(),
                                message: format!("command {command_id} {message}"),
                            });
                        }
                    }
                }
                // Right after SendCommand the invocation may not exist yet.
                Err(e) if e.code() == Some("InvocationDoesNotExist") => {}
                // The SDK retried throttling and 5xx already; keep asking
                // until the deadline rather than lose a running script.
                Err(SdkError::ServiceError(s)) if s.raw().status().is_server_error() => {}
                Err(SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => {}
                Err(e) => return Err(transport(node, "GetCommandInvocation", &e)),
            }
            if Instant::now() >= deadline {
                // Best effort: the command may still be queued.
                let _ = client
                    .cancel_command()
                    .command_id(&command_id)
                    .instance_ids(instance.0.clone())
                    .send()
                    .await;
                return Err(ExecError::Timeout {
                    node: node.to_string(),
                    after: request.timeout,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_the_outcome() {
        use CommandInvocationStatus as S;
        assert_eq!(verdict(Some(&S::InProgress), None, -1), Verdict::Running);
        assert_eq!(verdict(Some(&S::Pending), None, -1), Verdict::Running);
        assert_eq!(verdict(Some(&S::Delayed), None, -1), Verdict::Running);
        assert_eq!(
            verdict(Some(&S::Success), Some("Success"), 0),
            Verdict::Exited(0)
        );
        assert_eq!(
            verdict(Some(&S::Failed), Some("Failed"), 3),
            Verdict::Exited(3)
        );
        assert_eq!(
            verdict(Some(&S::Failed), Some("ExecutionTimedOut"), 1),
            Verdict::TimedOut
        );
        assert!(matches!(
            verdict(Some(&S::Failed), Some("Undeliverable"), -1),
            Verdict::Undelivered(_)
        ));
        assert!(matches!(
            verdict(Some(&S::TimedOut), Some("DeliveryTimedOut"), -1),
            Verdict::Undelivered(_)
        ));
        assert!(matches!(
            verdict(Some(&S::Cancelled), Some("Cancelled"), -1),
            Verdict::Unknown(_)
        ));
        assert!(matches!(
            verdict(Some(&S::Failed), Some("Failed"), -1),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn the_script_travels_intact() {
        let script = "#!/bin/bash\necho 'it''s' \"$HOME\" | tr a-z A-Z\n";
        let line = command_line(script);
        assert!(!line.contains("$HOME\""), "the script is not spliced in");
        let encoded = line.split('\'').nth(1).unwrap();
        assert_eq!(BASE64.decode(encoded).unwrap(), script.as_bytes());
    }
}
