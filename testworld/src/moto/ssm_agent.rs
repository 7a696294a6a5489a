//! The SSM agent of the moto world's simulated machines. moto records a
//! `SendCommand` and answers its invocations with `Success` at once,
//! running nothing; an EC2 instance that is a simulated machine (one the
//! world put behind it, [`SsmAgent::install`]) runs the command instead,
//! as the agent on a real node does: the `AWS-RunShellScript` document's
//! `commands` as one shell script, with the machine's bash, stand-ins and
//! filesystem (the sim cloud's `Exec`), killed at `executionTimeout`.
//!
//! The fault proxy in front of moto hands this agent every `SendCommand`
//! moto accepted ([`SsmAgent::accepted`]), and lets it answer, for its
//! instances only, `GetCommandInvocation` (from the real execution),
//! `CancelCommand` (which stops it) and `DescribeInstanceInformation`
//! (`Online`) ([`SsmAgent::answer`]). Every other instance keeps moto's
//! behaviour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kubesurge_provider::InstanceState;
use kubesurge_sim::api::{ExecEvent, ExecRequest};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::proxy::Canned;
use crate::cloud::SimCloud;

/// The document whose commands the agent runs as a shell script.
pub const SHELL_DOCUMENT: &str = "AWS-RunShellScript";
/// The plugin of that document, as invocations name it.
const SHELL_PLUGIN: &str = "aws:runShellScript";
/// "StandardOutputContent: The first 24,000 characters written by the
/// plugin to stdout. If the command hasn't finished running [...] this
/// string is empty" (GetCommandInvocation,
/// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html).
pub const STDOUT_LIMIT: usize = 24_000;
/// "StandardErrorContent: The first 8,000 characters written by the plugin
/// to stderr. If the command hasn't finished running, then this string is
/// empty" (the same page).
pub const STDERR_LIMIT: usize = 8_000;
/// `executionTimeout` of AWS-RunShellScript when the command names none:
/// "Default is 3600 (1 hour)" (the document's parameter,
/// https://docs.aws.amazon.com/systems-manager/latest/userguide/documents-command-ssm-plugin-reference.html#aws-runShellScript).
const DEFAULT_EXECUTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where an invocation is, in GetCommandInvocation's terms (`Status`,
/// `StatusDetails`, `ResponseCode`; "Understanding command statuses",
/// https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvocationStatus {
    /// Accepted, not yet running on the machine.
    Pending,
    InProgress,
    /// Ran to its end with exit code 0.
    Success,
    /// Ran to its end with this non-zero exit code.
    Failed(i32),
    /// Killed at `executionTimeout`.
    ExecutionTimedOut,
    /// Stopped by `CancelCommand`.
    Cancelled,
    /// Never reached the machine (not running, or it runs no scripts).
    Undeliverable,
}

impl InvocationStatus {
    /// `Status`, `StatusDetails` and `ResponseCode`: -1 until the script
    /// ended with a code ("If the response code is -1, then the command
    /// hasn't started running on the managed node, or it wasn't received
    /// by the node", GetCommandInvocation).
    pub fn fields(self) -> (&'static str, &'static str, i32) {
        match self {
            InvocationStatus::Pending => ("Pending", "Pending", -1),
            InvocationStatus::InProgress => ("InProgress", "InProgress", -1),
            InvocationStatus::Success => ("Success", "Success", 0),
            InvocationStatus::Failed(code) => ("Failed", "Failed", code),
            InvocationStatus::ExecutionTimedOut => ("TimedOut", "ExecutionTimedOut", -1),
            InvocationStatus::Cancelled => ("Cancelled", "Cancelled", -1),
            InvocationStatus::Undeliverable => ("Failed", "Undeliverable", -1),
        }
    }

    fn is_terminal(self) -> bool {
        !matches!(
            self,
            InvocationStatus::Pending | InvocationStatus::InProgress
        )
    }
}

/// One command on one instance.
#[derive(Clone, Debug)]
struct Invocation {
    comment: String,
    status: InvocationStatus,
    stdout: String,
    stderr: String,
    stop: CancellationToken,
}

impl Invocation {
    /// Take one event of the running script.
    fn record(&mut self, event: ExecEvent) {
        if self.status.is_terminal() {
            return;
        }
        match event {
            ExecEvent::Stdout(line) => push_line(&mut self.stdout, &line, STDOUT_LIMIT),
            ExecEvent::Stderr(line) => push_line(&mut self.stderr, &line, STDERR_LIMIT),
            ExecEvent::ExitCode(0) => self.status = InvocationStatus::Success,
            ExecEvent::ExitCode(code) => self.status = InvocationStatus::Failed(code),
            ExecEvent::TimedOut => self.status = InvocationStatus::ExecutionTimedOut,
            ExecEvent::Failed(why) => {
                push_line(&mut self.stderr, &why, STDERR_LIMIT);
                self.status = InvocationStatus::Undeliverable;
            }
        }
    }
}

/// Output as SSM keeps it: the first `limit` characters.
fn push_line(output: &mut String, line: &str, limit: usize) {
    let room = limit.saturating_sub(output.chars().count());
    output.extend(line.chars().chain(std::iter::once('\n')).take(room));
}

/// What a `SendCommand` asked for, once moto accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCommand {
    pub command_id: String,
    pub document: String,
    pub instance_ids: Vec<String>,
    /// The document's `commands`, one shell script.
    pub script: String,
    pub timeout: Duration,
    pub comment: String,
}

/// The command of a `SendCommand` request and moto's answer to it.
pub fn sent_command(request: &Value, answer: &Value) -> Option<SentCommand> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let parameters = &request["Parameters"];
    // "The time in seconds for a command to complete before it is
    // considered to have failed" (AWS-RunShellScript's executionTimeout).
    let timeout = strings(&parameters["executionTimeout"])
        .first()
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_EXECUTION_TIMEOUT, Duration::from_secs);
    Some(SentCommand {
        command_id: answer["Command"]["CommandId"].as_str()?.to_string(),
        document: request["DocumentName"].as_str()?.to_string(),
        instance_ids: strings(&request["InstanceIds"]),
        // The agent writes the commands, one per line, into a script it
        // runs with the shell (aws:runShellScript).
        script: strings(&parameters["commands"]).join("\n"),
        timeout,
        comment: request["Comment"].as_str().unwrap_or_default().to_string(),
    })
}

/// The instance ids a `DescribeInstanceInformation` filters on, `None`
/// without such a filter (`Filters` with key `InstanceIds`, or the older
/// `InstanceInformationFilterList` with key `InstanceIds`,
/// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html).
fn filtered_instances(request: &Value) -> Option<Vec<String>> {
    let mut ids: Option<Vec<String>> = None;
    for (list, key, values) in [
        ("Filters", "Key", "Values"),
        ("InstanceInformationFilterList", "key", "valueSet"),
    ] {
        for filter in request[list].as_array().into_iter().flatten() {
            if filter[key] == "InstanceIds" {
                ids.get_or_insert_with(Vec::new).extend(
                    filter[values]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string),
                );
            }
        }
    }
    ids
}

#[derive(Default)]
struct AgentState {
    /// The simulated machine (its id in the sim cloud) behind each EC2
    /// instance that runs the agent.
    machines: HashMap<String, String>,
    /// By command id and instance id.
    invocations: HashMap<(String, String), Invocation>,
}

/// The agent on every simulated machine of a moto world.
pub struct SsmAgent {
    cloud: SimCloud,
    state: Mutex<AgentState>,
}

impl SsmAgent {
    /// The agent of the machines of `cloud`; none runs it until
    /// [`SsmAgent::install`].
    pub fn new(cloud: SimCloud) -> Arc<SsmAgent> {
        Arc::new(SsmAgent {
            cloud,
            state: Mutex::new(AgentState::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// EC2 instance `instance` is machine `machine` of the cloud, and its
    /// agent is registered with SSM.
    pub fn install(&self, instance: &str, machine: &str) {
        self.lock()
            .machines
            .insert(instance.to_string(), machine.to_string());
    }

    /// The EC2 instances that run the agent.
    pub fn instances(&self) -> Vec<String> {
        self.lock().machines.keys().cloned().collect()
    }

    /// moto accepted `action` with this request and answer: a
    /// `SendCommand` of the shell document starts on each of its instances
    /// that runs the agent.
    pub fn accepted(self: &Arc<Self>, action: &str, request: &[u8], answer: &[u8]) {
        if action != "SendCommand" {
            return;
        }
        let (Ok(request), Ok(answer)) = (
            serde_json::from_slice::<Value>(request),
            serde_json::from_slice::<Value>(answer),
        ) else {
            return;
        };
        let Some(command) = sent_command(&request, &answer) else {
            return;
        };
        if command.document != SHELL_DOCUMENT {
            return;
        }
        for instance in &command.instance_ids {
            let machine = self.lock().machines.get(instance).cloned();
            if let Some(machine) = machine {
                self.start(&command, instance, &machine);
            }
        }
    }

    /// Run `command` on `machine`, recording what it does as the
    /// invocation on `instance`.
    fn start(self: &Arc<Self>, command: &SentCommand, instance: &str, machine: &str) {
        let key = (command.command_id.clone(), instance.to_string());
        let stop = CancellationToken::new();
        self.lock().invocations.insert(
            key.clone(),
            Invocation {
                comment: command.comment.clone(),
                status: InvocationStatus::Pending,
                stdout: String::new(),
                stderr: String::new(),
                stop: stop.clone(),
            },
        );
        let request = ExecRequest {
            instance_id: Some(machine.to_string()),
            node: String::new(),
            script: command.script.clone(),
            timeout_ms: u64::try_from(command.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        match self.cloud.exec(request, stop) {
            Ok(mut events) => {
                if let Some(i) = self.lock().invocations.get_mut(&key)
                    && i.status == InvocationStatus::Pending
                {
                    i.status = InvocationStatus::InProgress;
                }
                let agent = self.clone();
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        if let Some(i) = agent.lock().invocations.get_mut(&key) {
                            i.record(event);
                        }
                    }
                });
            }
            Err(why) => {
                if let Some(i) = self.lock().invocations.get_mut(&key) {
                    push_line(&mut i.stderr, &why, STDERR_LIMIT);
                    i.status = InvocationStatus::Undeliverable;
                }
            }
        }
    }

    /// The agent's answer to `action` with this request, when it concerns
    /// its instances; `None` leaves the call to moto.
    pub fn answer(&self, action: &str, request: &[u8]) -> Option<Canned> {
        let request: Value = serde_json::from_slice(request).ok()?;
        match action {
            "GetCommandInvocation" => self.invocation(&request),
            "CancelCommand" => self.cancel(&request),
            "DescribeInstanceInformation" => self.information(&request),
            _ => None,
        }
    }

    /// GetCommandInvocation of a command on one of the agent's instances
    /// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html).
    fn invocation(&self, request: &Value) -> Option<Canned> {
        let key = (
            request["CommandId"].as_str()?.to_string(),
            request["InstanceId"].as_str()?.to_string(),
        );
        let state = self.lock();
        let invocation = state.invocations.get(&key)?;
        let (status, details, code) = invocation.status.fields();
        // The output shows once the command finished (see STDOUT_LIMIT).
        let finished = invocation.status.is_terminal();
        let output = |text: &String| {
            if finished {
                text.clone()
            } else {
                String::new()
            }
        };
        let answer = json!({
            "CommandId": key.0,
            "InstanceId": key.1,
            "Comment": invocation.comment,
            "DocumentName": SHELL_DOCUMENT,
            "DocumentVersion": "$DEFAULT",
            "PluginName": SHELL_PLUGIN,
            "ResponseCode": code,
            "Status": status,
            "StatusDetails": details,
            "StandardOutputContent": output(&invocation.stdout),
            "StandardOutputUrl": "",
            "StandardErrorContent": output(&invocation.stderr),
            "StandardErrorUrl": "",
        });
        Some(Canned::json(200, &answer.to_string()))
    }

    /// CancelCommand of a command running on the agent's instances (all
    /// of them, or those it names): each stops and reads `Cancelled`; the
    /// answer is empty
    /// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CancelCommand.html).
    fn cancel(&self, request: &Value) -> Option<Canned> {
        let command = request["CommandId"].as_str()?;
        let named: Option<Vec<&str>> = request["InstanceIds"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect());
        let mut state = self.lock();
        let mut found = false;
        for ((id, instance), invocation) in state.invocations.iter_mut() {
            if id != command
                || named
                    .as_ref()
                    .is_some_and(|n| !n.contains(&instance.as_str()))
            {
                continue;
            }
            found = true;
            if !invocation.status.is_terminal() {
                invocation.status = InvocationStatus::Cancelled;
                invocation.stop.cancel();
            }
        }
        found.then(|| Canned::json(200, "{}"))
    }

    /// DescribeInstanceInformation: the agent's instances asked about,
    /// `Online` while their machine runs, `ConnectionLost` once it does
    /// not (PingStatus,
    /// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_InstanceInformation.html).
    fn information(&self, request: &Value) -> Option<Canned> {
        let machines = self.lock().machines.clone();
        let asked = filtered_instances(request);
        let listed: Vec<(&String, &String)> = machines
            .iter()
            .filter(|(instance, _)| asked.as_ref().is_none_or(|ids| ids.contains(instance)))
            .collect();
        if listed.is_empty() {
            return None;
        }
        let now = jiff::Timestamp::now().as_second();
        let list: Vec<Value> = listed
            .into_iter()
            .map(|(instance, machine)| {
                let running = self
                    .cloud
                    .instance(machine)
                    .is_some_and(|i| i.state == InstanceState::Running);
                json!({
                    "InstanceId": instance,
                    "PingStatus": if running { "Online" } else { "ConnectionLost" },
                    "LastPingDateTime": now,
                    "PlatformType": "Linux",
                    "ResourceType": "EC2Instance",
                })
            })
            .collect();
        Some(Canned::json(
            200,
            &json!({ "InstanceInformationList": list }).to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sent_command_is_read_from_the_request_and_motos_answer() {
        let request = json!({
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": ["i-0a"],
            "Parameters": {"commands": ["echo one", "echo two"], "executionTimeout": ["90"]},
            "Comment": "kubeadm upgrade apply",
        });
        let answer = json!({"Command": {"CommandId": "c-1"}});
        let command = sent_command(&request, &answer).expect("a command");
        assert_eq!(command.command_id, "c-1");
        assert_eq!(command.instance_ids, ["i-0a"]);
        assert_eq!(command.script, "echo one\necho two");
        assert_eq!(command.timeout, Duration::from_secs(90));
        assert_eq!(command.comment, "kubeadm upgrade apply");

        let without_timeout = json!({
            "DocumentName": "AWS-RunShellScript",
            "InstanceIds": ["i-0a"],
            "Parameters": {"commands": ["true"]},
        });
        assert_eq!(
            sent_command(&without_timeout, &answer).map(|c| c.timeout),
            Some(DEFAULT_EXECUTION_TIMEOUT)
        );
        assert_eq!(sent_command(&request, &json!({})), None);
    }

    #[test]
    fn output_keeps_the_first_characters_of_each_stream() {
        let line = "é".repeat(999);
        let mut invocation = Invocation {
            comment: String::new(),
            status: InvocationStatus::InProgress,
            stdout: String::new(),
            stderr: String::new(),
            stop: CancellationToken::new(),
        };
        for _ in 0..30 {
            invocation.record(ExecEvent::Stdout(line.clone()));
            invocation.record(ExecEvent::Stderr(line.clone()));
        }
        assert_eq!(invocation.stdout.chars().count(), STDOUT_LIMIT);
        assert_eq!(invocation.stderr.chars().count(), STDERR_LIMIT);
        assert!(invocation.stdout.starts_with(&format!("{line}\n{line}\n")));
    }

    #[test]
    fn the_exit_code_decides_the_status() {
        let invocation = || Invocation {
            comment: String::new(),
            status: InvocationStatus::InProgress,
            stdout: String::new(),
            stderr: String::new(),
            stop: CancellationToken::new(),
        };
        let mut ok = invocation();
        ok.record(ExecEvent::Stdout("hello".into()));
        ok.record(ExecEvent::ExitCode(0));
        assert_eq!(ok.status.fields(), ("Success", "Success", 0));
        assert_eq!(ok.stdout, "hello\n");

        let mut failed = invocation();
        failed.record(ExecEvent::Stderr("no".into()));
        failed.record(ExecEvent::ExitCode(3));
        assert_eq!(failed.status.fields(), ("Failed", "Failed", 3));
        assert_eq!(failed.stderr, "no\n");

        let mut slow = invocation();
        slow.record(ExecEvent::TimedOut);
        assert_eq!(slow.status.fields().1, "ExecutionTimedOut");

        // A cancelled invocation stays cancelled whatever its script's
        // last word.
        let mut cancelled = invocation();
        cancelled.status = InvocationStatus::Cancelled;
        cancelled.record(ExecEvent::Failed("stopped".into()));
        assert_eq!(cancelled.status.fields().0, "Cancelled");
        assert_eq!(
            InvocationStatus::Pending.fields(),
            ("Pending", "Pending", -1)
        );
    }

    #[test]
    fn information_filters_are_read_in_both_forms() {
        assert_eq!(
            filtered_instances(&json!({"Filters": [{"Key": "InstanceIds", "Values": ["i-0a"]}]})),
            Some(vec!["i-0a".to_string()])
        );
        assert_eq!(
            filtered_instances(
                &json!({"InstanceInformationFilterList": [{"key": "InstanceIds", "valueSet": ["i-0b"]}]})
            ),
            Some(vec!["i-0b".to_string()])
        );
        assert_eq!(filtered_instances(&json!({})), None);
    }
}
